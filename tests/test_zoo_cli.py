"""`pydarknet detector test -ab` on AlexeyAB's nets prints what AlexeyAB's `darknet detector test` printed.

Ground truth: ../shared/reference-yolo/forward/<net>/<image>/cli_stdout.txt, the stdout of
`darknet detector test coco.data <cfg> <weights> <image> -dont_show -ext_output -thresh .25 [-letter_box]`
(its meta.json has the command). The detection lines follow its `Predicted in` line.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reference import decompressed_weights, lines_after_prediction, read_json
from video_clip import read_frames

from pydarknet.cli import main

MINI = ("mini-yolov3-tiny", "mini-yolov4-tiny", "mini-yolov4", "mini-yolov7-tiny", "mini-yolov4-tiny.letter_box")
FULL = ("yolov3-tiny", "yolov4-tiny")
IMAGES = ("dog", "horses")


@pytest.fixture(scope="module")
def coco_data(reference_yolo, tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("zoo") / "coco.data"
    data.write_text(f"classes=80\nnames={reference_yolo / 'darknet' / 'data' / 'coco.names'}\n")
    return data


def _detector_test(reference_yolo: Path, coco_data: Path, folder: Path, cfg: Path, weights: Path,
                   out: Path) -> list[str]:
    meta = read_json(folder / "meta.json")
    image = reference_yolo / meta["image"]
    options = ["-letter_box"] if meta["letter_box"] else []
    result = CliRunner().invoke(main, [str(a) for a in ["-q", "detector", "test", coco_data, cfg, weights, image,
                                                         "-ab", "-dont_show", "-ext_output", "-thresh", ".25",
                                                         "-out", f"{out}/", *options]])
    assert result.exit_code == 0, result.output
    return lines_after_prediction(result.stdout)


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("net", MINI)
def test_mini_nets_print_alexeyabs_lines(reference_yolo, coco_data, tmp_path, net, image):
    folder = reference_yolo / "forward" / net / image
    meta = read_json(folder / "meta.json")
    got = _detector_test(reference_yolo, coco_data, folder, reference_yolo / meta["cfg"],
                         reference_yolo / meta["weights"], tmp_path / "p")
    assert got == lines_after_prediction((folder / "cli_stdout.txt").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("net", FULL)
def test_full_size_nets_print_alexeyabs_lines(reference_yolo, coco_data, tmp_path_factory, tmp_path, net, image):
    folder = reference_yolo / "forward" / net / image
    weights = decompressed_weights(reference_yolo, net, tmp_path_factory.getbasetemp())
    got = _detector_test(reference_yolo, coco_data, folder, reference_yolo / "darknet" / "cfg" / f"{net}.cfg",
                         weights, tmp_path / "p")
    assert got == lines_after_prediction((folder / "cli_stdout.txt").read_text())


def _mini_files(reference_yolo: Path, net: str) -> tuple[Path, Path]:
    return reference_yolo / "mini" / f"{net}.cfg", reference_yolo / "mini" / f"{net}.weights"


def test_demo_draws_boxes_of_every_yolo_layer(reference_yolo, coco_data, video, tmp_path):
    """A net with two [yolo] layers: each layer's output is averaged over the frames (demo.c:avg_predictions)."""
    cfg, weights = _mini_files(reference_yolo, "mini-yolov4-tiny")
    source = read_frames(video)
    change = {}
    for thresh in ("1.0", "0.001"):   # 1.0: nothing passes, the frames are only re-encoded
        out = tmp_path / f"t{thresh}.avi"
        result = CliRunner().invoke(main, [str(a) for a in ["-q", "detector", "demo", coco_data, cfg, weights, video,
                                                             "-thresh", thresh, "-out_filename", out]])
        assert result.exit_code == 0, result.output
        frames = read_frames(out)
        assert len(frames) == len(source)
        change[thresh] = np.mean([np.abs(a - b).mean() for a, b in zip(frames, source)])
    assert change["0.001"] > 3 * change["1.0"] + 1


@pytest.mark.slow
def test_map_ab_and_valid_run_on_a_yolo_net(reference_yolo, tmp_path):
    """`detector map -ab` and `detector valid -ab` over a labelled list: dog.jpg with its three objects."""
    image = tmp_path / "dog.jpg"
    image.write_bytes((reference_yolo / "darknet" / "data" / "dog.jpg").read_bytes())
    # DARKNET(AlexeyAB utils.c:replace_image_to_label): the labels lie beside the image; bicycle, dog, truck
    image.with_suffix(".txt").write_text("1 0.4503 0.4829 0.5795 0.5417\n16 0.2930 0.6632 0.2409 0.5729\n"
                                         "7 0.7513 0.2135 0.2930 0.1649\n")
    listing = tmp_path / "valid.txt"
    listing.write_text(f"{image}\n")
    data = tmp_path / "coco.data"
    data.write_text(f"classes=80\nvalid={listing}\nnames={reference_yolo / 'darknet' / 'data' / 'coco.names'}\n"
                    f"results={tmp_path / 'results'}\n")
    cfg, weights = _mini_files(reference_yolo, "mini-yolov7-tiny")
    result = CliRunner().invoke(main, [str(a) for a in ["-q", "detector", "map", data, cfg, weights, "-ab"]])
    assert result.exit_code == 0, result.output
    assert "unique_truth_count = 3" in result.stdout and "mean average precision (mAP@0.50)" in result.stdout
    result = CliRunner().invoke(main, [str(a) for a in ["-q", "detector", "valid", data, cfg, weights, "-ab"]])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "results").glob("comp4_det_test_*.txt"))) == 80
