"""The Darknet-shaped CLI against Darknet's own printed output (inputs: lossless PNGs of the pack's decodes)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from pydarknet.cli import main
from reference import decompressed_weights, read_json

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pngs(reference, tmp_path_factory) -> dict[str, Path]:
    """Darknet's stb_image decode of each image, saved losslessly (OpenCV's JPEG decoder differs)."""
    folder = tmp_path_factory.mktemp("png")
    paths = {}
    for image in ("dog", "horses", "person", "eagle"):
        decoded = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
        paths[image] = folder / f"{image}.png"
        cv2.imwrite(str(paths[image]), decoded[:, :, ::-1])
    return paths


def _invoke(args: list[str], cwd: Path):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def _printed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Predicted in" not in line]


@pytest.mark.parametrize("thresh", ["0.10", "0.25", "0.50"])
@pytest.mark.parametrize("image", ["dog", "horses", "person"])
def test_detector_test_prints_darknet_lines(reference, pngs, tmp_path, image, thresh):
    net = "mini-yolov2-voc"
    expected = read_json(reference / "forward" / net / image / f"dets_t{thresh}.json")
    result = _invoke(["detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
                      reference / "mini" / f"{net}.weights", pngs[image], "-thresh", thresh,
                      "-out", tmp_path / "pred", "--json", tmp_path / "dets.json"], tmp_path)
    assert result.exit_code == 0
    assert _printed_lines(result.output) == expected["printed"]
    assert cv2.imread(str(tmp_path / "pred.jpg")).shape == (expected["image_h"], expected["image_w"], 3)
    written = json.loads((tmp_path / "dets.json").read_text())["detections"]
    assert len(written) == len(expected["detections"])
    for ours, theirs in zip(sorted(written, key=lambda d: d["bbox"]), sorted(expected["detections"],
                                                                             key=lambda d: d["bbox"])):
        # abs 1e-4 (README §9) plus rel 1e-4: w, h = exp(raw)*anchor carry the raw output's relative error
        np.testing.assert_allclose(ours["bbox"], theirs["bbox"], atol=1e-4, rtol=1e-4)
        assert ours["best_name"] == theirs["best_name"]


@pytest.mark.parametrize("net, data", [("yolov2-voc", "voc.data"), ("yolov2-tiny-voc", "voc.data"),
                                       ("yolo9000", "combine9k.data")])
def test_full_size_cli_output_is_darknets(reference, pngs, tmp_path, net, data):
    weights = decompressed_weights(reference, net, tmp_path)
    result = _invoke(["detector", "test", REPO / "cfg" / data, REPO / "cfg" / f"{net}.cfg", weights, pngs["dog"],
                      "-thresh", ".25", "-out", tmp_path / "pred"], tmp_path)
    expected = (reference / "forward" / net / "dog" / "cli_stdout.txt").read_text().splitlines()[1:]
    assert _printed_lines(result.output) == expected


@pytest.mark.parametrize("net", ["mini-darknet19", "darknet19"])
def test_classifier_predict_prints_darknet_top5(reference, pngs, tmp_path, net):
    folder = "mini" if net.startswith("mini") else None
    weights = reference / "mini" / f"{net}.weights" if folder else decompressed_weights(reference, net, tmp_path)
    cfg = reference / "mini" / f"{net}.cfg" if folder else REPO / "cfg" / f"{net}.cfg"
    for image in ("dog", "eagle"):
        result = _invoke(["classifier", "predict", REPO / "cfg" / "imagenet1k.data", cfg, weights, pngs[image]],
                         tmp_path)
        expected = (reference / "forward" / net / image / "printed.txt").read_text().splitlines()
        assert _printed_lines(result.output) == expected


def test_partial_writes_darknet_prefix_with_seen_0(reference, tmp_path):
    result = _invoke(["partial", reference / "mini" / "mini-darknet19.cfg",
                      reference / "mini" / "mini-darknet19.weights", tmp_path / "c23.weights", "23"], tmp_path)
    assert result.exit_code == 0
    # the pack's conv.23 is save_weights_upto of the loaded net (seen 5000000064); `darknet partial` clears seen
    prefix = (reference / "mini" / "mini-darknet19.conv.23.weights").read_bytes()
    assert int.from_bytes(prefix[12:20], "little") == 5000000064
    assert (tmp_path / "c23.weights").read_bytes() == prefix[:12] + bytes(8) + prefix[20:]


def test_image_paths_from_stdin(reference, pngs, tmp_path):
    net = "mini-yolov2-tiny-voc"
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(reference / "mini" / f"{net}.cfg"), str(reference / "mini" / f"{net}.weights"),
                                       "-thresh", ".25", "-out", str(tmp_path / "p")],
                                input=f"{pngs['dog']}\n{pngs['horses']}\n")
    assert result.exit_code == 0
    assert result.output.count("Enter Image Path:") == 3
    expected = (read_json(reference / "forward" / net / "dog" / "dets_t0.25.json")["printed"]
                + read_json(reference / "forward" / net / "horses" / "dets_t0.25.json")["printed"])
    lines = [line.replace("Enter Image Path: ", "") for line in _printed_lines(result.output)]
    assert [line for line in lines if line.strip()] == expected


def test_missing_image_is_a_clear_error(reference, tmp_path):
    net = "mini-yolov2-tiny-voc"
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(reference / "mini" / f"{net}.cfg"), str(reference / "mini" / f"{net}.weights"),
                                       str(tmp_path / "nope.jpg")])
    # one line naming the file, exit code 1, no traceback (the CLI reports DarknetError / OSError itself)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "nope.jpg" in error_lines[0]
    assert "Traceback" not in result.output
