"""`make demo`'s pipeline end to end, at a toy size (the mAP target itself needs the full run)."""
from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from pydarknet.data.anchors import calc_anchors, mean_best_iou, read_box_sizes
from pydarknet.data.synth import make_synth
from pydarknet.demo import DEMO_CFG, DEMOS, run_demo
from pydarknet.network import Darknet


@pytest.mark.slow
def test_demo_pipeline_writes_every_output(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mean_ap = run_demo(tmp_path / "demo", train=8, valid=4, seed=0, max_batches=2, workers=0)
    printed = capsys.readouterr().out
    assert 0.0 <= mean_ap <= 1.0
    assert re.search(r"^2: \d+\.\d{6}, \d+\.\d{6} avg, ", printed, re.M)               # Darknet's training line
    assert re.search(r"mean average precision \(mAP@0\.50\) = ", printed)            # detector map report
    assert f"demo: mAP@0.5 = {mean_ap:.4f} on 4 validation images" in printed
    assert cv2.imread(str(tmp_path / "demo" / "predictions.jpg")) is not None
    assert (tmp_path / "demo" / "data" / "backup" / "synth-tiny_final.weights").stat().st_size > 0
    assert (tmp_path / "demo" / "data" / "backup" / "chart.png").exists()


@pytest.mark.slow
def test_demo_v4_pipeline_trains_with_map_and_keeps_the_best(tmp_path, capsys, monkeypatch):
    """`make demo-v4` at a toy size: AlexeyAB's lines and -map (forced at the last iteration), the best weights
    evaluated, AlexeyAB's map report."""
    monkeypatch.chdir(tmp_path)
    mean_ap = run_demo(tmp_path / "demo", train=8, valid=4, seed=0, max_batches=2, workers=0, demo=DEMOS["v4"])
    printed = capsys.readouterr().out
    assert 0.0 <= mean_ap <= 1.0
    assert re.search(r"^ 2: \d+\.\d{6}, \d+\.\d{6} avg loss, .* hours left$", printed, re.M)   # AlexeyAB's line
    assert "New best mAP!" in printed and "synth-v4-tiny_best.weights -ab" in printed
    assert re.search(r"^ mean average precision \(mAP@0\.50\) = [0-9.]+, or [0-9.]+ % $", printed, re.M)
    backup = tmp_path / "demo" / "data" / "backup"
    assert (backup / "synth-v4-tiny_best.weights").stat().st_size > 0 and (backup / "chart.png").exists()
    assert (tmp_path / "demo" / "data" / "images" / "valid_00000.txt").is_file()   # AlexeyAB's label layout


def test_demo_anchors_are_in_cells_of_its_grid(tmp_path):
    """cfg/synth-tiny.cfg's [region] anchors, read in cells of its own 8x8 grid, fit the synthetic boxes as well as
    k-means anchors do (mean best IoU within 2 points of theirs, 0.78); anchors left in the units of another grid
    (the former 4x4 net's: half these) would fit them far worse (about 0.51)."""
    net = Darknet.from_cfg(DEMO_CFG)
    grid = net.shapes[-1]
    assert (grid.w, grid.h) == (8, 8)
    data = make_synth(tmp_path / "synth", train=300, valid=1, size=256, seed=0)
    sizes, _ = read_box_sizes(data)
    anchors = np.array(net.layers[-1].options.anchors).reshape(-1, 2) / (grid.w, grid.h)   # relative w, h
    kmeans = calc_anchors(data, len(anchors), grid.w, grid.h)
    assert mean_best_iou(sizes, anchors) >= kmeans.mean_iou - 0.02
    assert mean_best_iou(sizes, anchors / 2) < kmeans.mean_iou - 0.2
