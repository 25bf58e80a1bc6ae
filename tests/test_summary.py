"""The layer table and weights messages against the C Darknet's own stderr (tests/fixtures/layer_tables/).

Each fixture is pjreddie's `darknet detector test` stderr for that cfg, cut to the table; the
mini nets' cfgs come from the reference pack, connected-dropout.cfg sits beside its table, the
others are the shipped cfg/ files.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES, reference_dir
from pydarknet import read_cfg
from pydarknet.network import Darknet
from pydarknet.summary import layer_table, loading_weights_line, saving_weights_line

REPO = Path(__file__).resolve().parent.parent
TABLES = sorted((FIXTURES / "layer_tables").glob("*.txt"))


def _cfg_for(name: str) -> Path:
    own = FIXTURES / "layer_tables" / f"{name}.cfg"
    if own.exists():
        return own
    if not name.startswith("mini-"):
        return REPO / "cfg" / f"{name}.cfg"
    reference = reference_dir()
    if reference is None:
        pytest.skip("the mini nets' cfgs are in the reference pack, which is absent")
    return reference / "mini" / f"{name}.cfg"


@pytest.mark.parametrize("table", TABLES, ids=[t.stem for t in TABLES])
def test_layer_table_is_darknets(table):
    cfg = _cfg_for(table.stem)
    with warnings.catch_warnings(), torch.device("meta"):   # shapes only: no memory for yolov3's weights
        warnings.simplefilter("ignore", UserWarning)
        net = Darknet(read_cfg(cfg), cfg_path=cfg)
    assert layer_table(net) == table.read_text().splitlines()


def test_every_layer_kind_of_the_shipped_cfgs_is_covered():
    kinds = {line.split()[1] for table in TABLES for line in table.read_text().splitlines()[1:]}
    assert kinds >= {"conv", "max", "avg", "route", "reorg", "res", "upsample", "softmax", "cost",
                     "detection", "yolo", "connected", "dropout"}


def test_weights_messages_are_darknets():
    assert loading_weights_line("w/yolo.weights") == "Loading weights from w/yolo.weights...Done!"
    assert saving_weights_line("backup/yolo_final.weights") == "Saving weights to backup/yolo_final.weights"
