"""`make demo`'s pipeline end to end, at a toy size (the mAP target itself needs the full run)."""
from __future__ import annotations

import pytest

import re

import cv2

from pydarknet.demo import run_demo


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
