"""AlexeyAB's `detector train` additions: -map (schedule, report, _best.weights, the chart's mAP curve),
<cfg>_log.csv, the hours left, the closing summary, -mjpeg_port, -gpus without CUDA and Ctrl-C."""
from __future__ import annotations

import dataclasses

import csv
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import interruptible_by_ctrl_c
from pydarknet.cli import main
from pydarknet.data.dataset import BadSampleWarning
from pydarknet.data.synth import make_synth
from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.engine import training_map
from pydarknet.engine.train import TrainingExtras, train_detector
from pydarknet.engine.training_map import MapDuringTraining, MapSchedule
from pydarknet.errors import DataError
from pydarknet.evaluate.alexeyab_map import evaluate_map
from pydarknet.evaluate.scoring import collect_map_inputs
from pydarknet.network import Darknet, load_network
from pydarknet.weights import WeightsHeader
from test_train_loop import TINY_CFG

MAP_LINE = re.compile(r"^ mean_average_precision \(mAP@0\.50\) = (\d+\.\d{6}) $")
# DARKNET(AlexeyAB detector.c:train_detector): "\n %d: %f, %f avg loss, %f rate, %lf seconds, %d images, %f hours left"
AB_LINE = re.compile(r"^ (\d+): \d+\.\d{6}, \d+\.\d{6} avg loss, \d+\.\d{6} rate, \d+\.\d{6} seconds, (\d+) images, "
                     r"(-?\d+\.\d{6}) hours left$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    """The synthetic set in both label layouts (labels/ for pjreddie, beside the images for AlexeyAB)."""
    root = tmp_path_factory.mktemp("synth_map")
    return {layout: make_synth(root / layout, train=12, valid=4, size=64, seed=3, layout=layout)
            for layout in ("darknet", "alexeyab")}


def _run_files(synth_data: Path, tmp_path: Path, valid: str | None = None) -> tuple[Path, Path]:
    """A .data file whose backup folder is this test's, and the tiny cfg."""
    text = synth_data.read_text().replace(f"backup={synth_data.parent / 'backup'}", f"backup={tmp_path / 'backup'}")
    if valid is not None:
        text = re.sub(r"valid=.*", f"valid={valid}", text)
    data = tmp_path / "run.data"
    data.write_text(text)
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG.format(lr=0.001, burn_in=0))
    return data, cfg


def _train(data: Path, cfg: Path, weights=None, **kwargs):
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        result = train_detector(data, cfg, weights, workers=0, show_progress=False, verbose=False, log=lines.append,
                                **kwargs)
    return result, lines


def _log_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _red_pixels(png: Path) -> int:
    """Pixels of the chart drawn in pure red (the mAP curve and its labels)."""
    image = cv2.imread(str(png))   # BGR
    return int(((image[..., 2] > 200) & (image[..., 1] < 60) & (image[..., 0] < 60)).sum())


@pytest.mark.parametrize("epochs, images, per_update, burn_in, every, first", [
    (4, 12, 4, 0, 100, 100),          # 4 epochs are 12 iterations: never more often than every 100
    (4, 10000, 64, 0, 625, 625),      # 4 * 10000 / 64 = 625 iterations
    (1, 1000, 3, 0, 333, 333),        # an int division
    (4, 10000, 64, 1000, 625, 1000),  # not before burn_in
])
def test_map_schedule_is_alexeyabs(epochs, images, per_update, burn_in, every, first):
    schedule = MapSchedule.of(epochs, images, per_update, burn_in, max_batches=5000)
    assert schedule.every == every
    assert schedule.next_at(0) == first
    assert schedule.next_at(first) == max(first + every, burn_in)
    assert not schedule.due(first - 1, 0)
    assert schedule.due(first, 0)
    assert schedule.due(5000, 4999)   # and always at the last iteration


def test_map_during_training_writes_best_weights_log_and_chart(synth, tmp_path):
    data, cfg = _run_files(synth["alexeyab"], tmp_path)
    modes: list[bool] = []
    result, lines = _train(data, cfg, max_batches=3, on_iteration=lambda net, entry: modes.append(net.training),
                           extras=TrainingExtras(calc_map=True, dialect=ALEXEYAB))
    backup = tmp_path / "backup"
    assert modes == [True, True, True]   # evaluated in eval mode, then back in training mode
    # measured once, at the last iteration (next_map_calc is 100)
    printed = [float(MAP_LINE.match(line).group(1)) for line in lines if MAP_LINE.match(line)]
    assert printed == [round(result.last_map, 6)]
    assert lines[lines.index(next(line for line in lines if MAP_LINE.match(line))) + 1] == "New best mAP!"
    assert " (next mAP calculation at 100 iterations) " in lines
    assert result.best_weights == backup / "tiny_best.weights"
    header = WeightsHeader.unpack(result.best_weights.read_bytes()[:20], str(result.best_weights))
    assert header.seen == 3 * 4
    # the mAP printed is AlexeyAB's `detector map` of the weights written as the best
    net = load_network(cfg, result.best_weights, "cpu")
    valid = (synth["alexeyab"].parent / "valid.txt").read_text().split()
    inputs = collect_map_inputs(net, valid, workers=0, dialect=ALEXEYAB,
                                letterbox=ALEXEYAB.letterbox(net))
    assert evaluate_map(inputs.detections, inputs.ground_truths, 5).mean_ap == result.last_map
    rows = _log_rows(backup / "tiny_log.csv")
    assert [row["iteration"] for row in rows] == ["1", "2", "3"]
    assert [row["map"] for row in rows[:2]] == ["", ""]
    assert float(rows[2]["map"]) == float(rows[2]["best_map"]) == result.last_map
    for row, entry in zip(rows, result.history):
        assert float(row["loss"]) == entry.loss and float(row["avg_loss"]) == entry.avg_loss
        assert int(row["images"]) == entry.images and float(row["rate"]) == pytest.approx(0.001)
    assert float(rows[0]["hours_left"]) == -1   # DARKNET(AlexeyAB detector.c:train_detector): avg_time starts at -1
    assert float(rows[1]["hours_left"]) > 0
    assert _red_pixels(backup / "chart.png") > 20   # the mAP curve


def test_chart_has_no_map_curve_without_map(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path)
    _train(data, cfg, max_batches=2)
    assert _red_pixels(tmp_path / "backup" / "chart.png") == 0
    assert [row["map"] for row in _log_rows(tmp_path / "backup" / "tiny_log.csv")] == ["", ""]


def test_cli_train_map_prints_alexeyabs_lines_and_a_summary(synth, tmp_path):
    data, cfg = _run_files(synth["alexeyab"], tmp_path)
    chart = tmp_path / "charts" / "run.png"
    chart.parent.mkdir()
    result = CliRunner().invoke(main, ["-q", "detector", "train", str(data), str(cfg), "-map", "-dont_show", "-ab",
                                       "-mAP_epochs", "1", "-chart", str(chart), "--max-batches", "2",
                                       "--workers", "0"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    iteration_lines = [AB_LINE.match(line) for line in lines if AB_LINE.match(line)]
    assert [(m.group(1), m.group(2)) for m in iteration_lines] == [("1", "4"), ("2", "8")]
    assert iteration_lines[0].group(3) == "-1.000000"
    # DARKNET(AlexeyAB detector.c:train_detector): "%d/%d: loss=%0.1f hours left=%0.1f" before each
    assert re.fullmatch(r"1/2: loss=\d+\.\d hours left=-1\.0", lines[lines.index(iteration_lines[0].group(0)) - 1])
    assert " detections_count = " in result.output and "New best mAP!" in lines
    assert chart.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "backup" / "chart.png").exists()
    assert re.search(r"^Trained 2 iterations \(to iteration 2\) in \d+\.\d\d hours", result.output, re.M)
    assert re.search(r"^mAP@0\.50: last \d+\.\d\d %, best \d+\.\d\d % in .*tiny_best\.weights$", result.output, re.M)
    assert f"Weights: {tmp_path / 'backup' / 'tiny_final.weights'}; log: " in result.output


def test_map_needs_a_readable_valid_list_before_the_weights(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path, valid=str(tmp_path / "missing.txt"))
    # the weights file does not exist either: the valid list is checked first
    with pytest.raises(DataError, match=r"missing\.txt.*-map measures the mAP on the list of valid="):
        _train(data, cfg, tmp_path / "none.weights", max_batches=2, extras=TrainingExtras(calc_map=True))


def test_best_weights_follow_alexeyabs_rule(synth, tmp_path, monkeypatch):
    """`mean_average_precision >= best_map`: an equal mAP is a new best too, a lower one or a NaN is not."""
    data, cfg = _run_files(synth["darknet"], tmp_path)
    from pydarknet.data.files import read_data_file

    monitor = MapDuringTraining(Darknet.from_cfg(cfg), read_data_file(data), PJREDDIE, epochs=4,
                                log=lambda line: None, workers=0)
    scripted = iter([0.5, 0.5, 0.4, math.nan, 0.6])

    class Scored:
        def __init__(self, *args):
            self.mean_ap = next(scripted)

    monkeypatch.setattr(training_map, "collect_map_inputs", lambda *args, **kwargs: type(
        "Inputs", (), {"detections": None, "ground_truths": []})())
    monitor.dialect = dataclasses.replace(monitor.dialect, map_evaluation=Scored, map_format=lambda result, names: [])
    assert [monitor.measure(i) for i in (100, 200, 300, 400, 500)] == [True, True, False, False, True]
    assert (monitor.best, monitor.last_measured) == (0.6, 500)


def test_resumed_run_keeps_the_earlier_log_rows(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path)
    first, _ = _train(data, cfg, max_batches=3)
    _train(data, cfg, max_batches=3)          # a second run from scratch starts the log again
    log = tmp_path / "backup" / "tiny_log.csv"
    assert [row["iteration"] for row in _log_rows(log)] == ["1", "2", "3"]
    _train(data, cfg, first.final_weights, max_batches=5)
    assert [row["iteration"] for row in _log_rows(log)] == ["1", "2", "3", "4", "5"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _first_jpeg(port: int) -> bytes:
    """The first frame of the MJPEG stream at 127.0.0.1:port (bounded in time)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=20) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        received = b""
        while b"\xff\xd9" not in received:
            chunk = response.read1(65536)
            assert chunk, "the stream ended before a whole frame"
            received += chunk
    return received[received.index(b"\xff\xd8"):received.index(b"\xff\xd9") + 2]


def test_mjpeg_port_serves_the_chart(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path)
    port = _free_port()
    frames: list[bytes] = []

    def fetch(net, entry) -> None:   # runs in the loop once the chart of iteration 10 is drawn and published
        if entry.batch == 10:
            frames.append(_first_jpeg(port))

    _train(data, cfg, max_batches=10, on_iteration=fetch, extras=TrainingExtras(mjpeg_port=port))
    frame = cv2.imdecode(np.frombuffer(frames[0], np.uint8), cv2.IMREAD_COLOR)
    chart = cv2.imread(str(tmp_path / "backup" / "chart.png"))
    assert frame.shape == chart.shape
    assert np.abs(frame.astype(int) - chart).mean() < 3   # JPEG quality 70 of the same chart
    with pytest.raises(OSError):   # the server ends with the run
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_gpus_without_cuda_warn_and_train_on_the_cpu(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path)
    result = CliRunner().invoke(main, ["detector", "train", str(data), str(cfg), "-gpus", "0,1", "--max-batches", "1",
                                       "--workers", "0"])
    assert result.exit_code == 0, result.output
    warnings_printed = [line for line in result.output.splitlines() if line.startswith("Warning: -gpus")]
    assert warnings_printed == ["Warning: -gpus 0,1: no CUDA GPU on this machine; running on the CPU, as a CPU build "
                                "of Darknet"]
    assert (tmp_path / "backup" / "tiny_final.weights").exists()


def _interrupt(data: Path, cfg: Path, tmp_path: Path, after_rows: int, timeout: float) -> subprocess.CompletedProcess:
    """Start `detector train`, send SIGINT once the log has `after_rows` rows, and wait (all bounded in time)."""
    log = tmp_path / "backup" / "tiny_log.csv"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "pydarknet.cli", "-q", "detector", "train", str(data), str(cfg),
                                "--workers", "1", "--max-batches", "100000"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=interruptible_by_ctrl_c)
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) > after_rows:
            break
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_ctrl_c_ends_with_one_line_and_code_130(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path)
    done = _interrupt(data, cfg, tmp_path, after_rows=1, timeout=120)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert re.fullmatch(r"Interrupted after iteration \d+: no weights were written", done.stderr.splitlines()[-1])


@pytest.mark.slow
def test_ctrl_c_names_the_last_backup(synth, tmp_path):
    data, cfg = _run_files(synth["darknet"], tmp_path)
    done = _interrupt(data, cfg, tmp_path, after_rows=101, timeout=300)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.splitlines()[-1]
    assert re.fullmatch(rf"Interrupted after iteration \d+: the last weights written are in "
                        rf"{re.escape(str(tmp_path / 'backup'))}/tiny(_100\.weights|\.backup)", last), last
