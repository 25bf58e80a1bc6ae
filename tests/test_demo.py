"""`make demo`'s pipeline end to end, at a toy size (the mAP target itself needs the full run)."""
from __future__ import annotations

import pytest

import re

import cv2

from pydarknet.demo import DEMOS, run_demo


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
