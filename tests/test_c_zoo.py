"""`pydarknet detector test` prints what the C programs printed on the mini YOLOv3 / YOLOv1 nets (issue 18).

pjreddie's CPU build (compared with `-darknet_build cpu`) and AlexeyAB's (compared with `-ab -dont_show
-ext_output`) on five photos at two thresholds: tests/fixtures/c_zoo/README.md says how they were recorded.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import yolov1_reference
from c_zoo_reference import FIXTURES, IMAGES, MINI_NETS, REPO, mini_cfg, mini_cfg_text, write_mini_weights

from pydarknet.cli import main

WEIGHTS_SHA256 = {
    "mini-yolov3": "5627441a9bbd110aeddcc56d999b4b529f9292aee15d1fe5e0b21e6c18f6338b",
    "mini-yolov3-tiny": "5a2053ea25e33b2fec82e11b73fac552ae9de44d526037d3e34caa432731aeac",
    "mini-yolov1": "095fa8a3cf34b76f0829aa78be38414cd5fb4d8bf4abba8d7426a14e4610740a",
}
# program -> pydarknet's options for the same command
PROGRAMS = {"pjreddie": ["-darknet_build", "cpu"], "alexeyab": ["-ab", "-dont_show", "-ext_output"]}
RECORDINGS = sorted(path.stem for path in FIXTURES.glob("*_t0.*.txt"))   # <program>_<net>_t<thresh>
# DARKNET(AlexeyAB network.c:make_network_boxes): a [detection] layer's boxes keep classes = 0, so
# draw_detections_v3 selects none and `detector test` prints no box for YOLOv1; pydarknet -ab prints them
YOLOV1_UNPRINTED = "AlexeyAB's detector test prints no [detection] box (dets[].classes is never set); pydarknet does"
# a printed probability on a threshold: the C program 0.1 or below, pydarknet's prepacked net 0.10000017 (carrot:
# 10%), its one-image net (folded weights, NCHW) on the C program's side: either may print it (xfail, not strict)
ON_THRESHOLD = {("alexeyab_mini-yolov3_t0.1", "dog")}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("c_zoo")
    paths = {f"mini-{name}": write_mini_weights(name, folder / f"mini-{name}.weights") for name in MINI_NETS}
    paths["mini-yolov1"] = yolov1_reference.write_mini_weights(folder / "mini-yolov1.weights")
    return paths


@pytest.fixture(scope="module")
def data_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("c_zoo_data")
    files = {}
    for name, classes in (("coco", 80), ("voc", 20)):
        files[name] = folder / f"{name}.data"
        files[name].write_text(f"classes={classes}\nnames={REPO / 'data' / f'{name}.names'}\n")
    return files


def _recorded_blocks(recording: str) -> dict[str, list[str]]:
    """A recording's lines per photo: each block starts with `data/<image>.jpg:`."""
    blocks: dict[str, list[str]] = {}
    for line in (FIXTURES / f"{recording}.txt").read_text().splitlines():
        if line.startswith("data/") and line.endswith(":"):
            current = blocks.setdefault(Path(line[:-1]).stem, [])
        else:
            current.append(line)
    return blocks


@pytest.mark.parametrize("name", MINI_NETS)
def test_mini_cfgs_derive_from_the_shipped_ones(name):
    assert mini_cfg(name).read_text() == mini_cfg_text((REPO / "cfg" / f"{name}.cfg").read_text())


def test_the_weights_are_the_recorded_ones(weights):
    assert {net: hashlib.sha256(path.read_bytes()).hexdigest() for net, path in weights.items()} == WEIGHTS_SHA256


def test_every_recording_covers_five_photos():
    assert len(RECORDINGS) == 10
    for recording in RECORDINGS:
        assert sorted(_recorded_blocks(recording)) == sorted(IMAGES)


def _cases():
    for recording in RECORDINGS:
        marks = [pytest.mark.xfail(strict=True, reason=YOLOV1_UNPRINTED)] if "yolov1" in recording else []
        for image in IMAGES:
            on_threshold = (recording, image) in ON_THRESHOLD
            yield pytest.param(recording, image, marks=marks + ([pytest.mark.xfail(
                strict=False, reason="a probability on the threshold, within float rounding")] if on_threshold else []))


@pytest.mark.parametrize("recording, image", _cases())
def test_detector_test_prints_the_c_programs_lines(weights, data_files, tmp_path, recording, image):
    program, net, thresh = recording.split("_")
    cfg = yolov1_reference.MINI_CFG if net == "mini-yolov1" else FIXTURES / f"{net}.cfg"
    data = data_files["voc" if net == "mini-yolov1" else "coco"]
    result = CliRunner().invoke(main, [str(a) for a in [
        "-q", "detector", "test", data, cfg, weights[net], REPO / "data" / f"{image}.jpg", "-thresh", thresh[1:],
        "-out", f"{tmp_path}/p/", *PROGRAMS[program]]])   # a folder: under -ab, -out X names the JSON file
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Predicted in" in line)
    assert [line for line in lines[start + 1:] if line] == _recorded_blocks(recording)[image]
