"""weights/README.md's table: floats and sizes recomputed from the cfgs, and checked against the pack."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pydarknet import read_cfg
from pydarknet.network import Darknet
from reference import read_json

REPO = Path(__file__).resolve().parent.parent
HEADER_BYTES = {"0.2": 20, "0.1": 16}   # major, minor, revision + 64-bit (0.2) or 32-bit (0.1) seen


def table_rows() -> list[dict[str, str]]:
    text = (REPO / "weights" / "README.md").read_text()
    lines = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[1:]]
    assert rows and all(len(row) == len(header) for row in rows)
    return rows


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def weight_floats(cfg: Path, layers: int | None) -> int:
    """Floats a weights file holds for the first `layers` layers of `cfg` (all by default)."""
    with warnings.catch_warnings(), torch.device("meta"):   # shapes only: no memory for the weights
        warnings.simplefilter("ignore", UserWarning)
        net = Darknet(read_cfg(cfg), cfg_path=cfg)
    return sum(tensor.numel() for layer in net.layers[:layers] if hasattr(layer, "darknet_tensors")
               for tensor in layer.darknet_tensors())


@pytest.mark.parametrize("row", table_rows(), ids=lambda row: row["file"])
def test_weights_table_row_is_computed_from_its_cfg(row):
    layers = None if row["layers"] == "all" else int(row["layers"])
    floats = weight_floats(REPO / row["cfg"], layers)
    assert _number(row["floats"]) == floats
    for version, header in HEADER_BYTES.items():
        assert _number(row[f"bytes ({version} header)"]) == header + 4 * floats


def test_weights_table_matches_the_packs_files(reference):
    packed = read_json(reference / "weights.json")
    rows = {row["file"]: row for row in table_rows()}
    checked = [name for name in ("yolov2-voc", "yolov2-tiny-voc", "yolo9000", "darknet19") if name in packed]
    assert checked
    for name in checked:
        row = rows[f"{name}.weights"]
        assert _number(row["bytes (0.2 header)"]) == packed[name]["size_uncompressed"]
        assert _number(row["floats"]) == packed[name]["body_floats"]
