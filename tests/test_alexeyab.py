"""AlexeyAB habits (-ab, -ext_output, -dont_show, -letter_box) against AlexeyAB's own printed output.

Fixtures (tests/fixtures/alexeyab, README.md there): a small net trained by pydarknet on the synthetic
shapes, 10 validation images as PNG (the stb_image decode of the JPEG beside it, so every program sees
the same pixels) and what the CPU builds of AlexeyAB's and pjreddie's Darknet printed for them.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.detections import Detection
from pydarknet.dialect import ALEXEYAB, PJREDDIE, ext_output_box
from pydarknet.evaluate import alexeyab_map
from pydarknet.evaluate import Detections, GroundTruth, evaluate_detections

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alexeyab"
CFG = FIXTURES / "micro.cfg"
WEIGHTS = FIXTURES / "micro.weights"
IMAGES = sorted((FIXTURES / "png").glob("*.png"))


def _run(args: list) -> str:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def png_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("alexeyab")
    listing = folder / "valid.txt"
    listing.write_text("".join(f"{path}\n" for path in IMAGES))
    data = folder / "png.data"
    data.write_text(f"classes=5\nvalid={listing}\nnames={FIXTURES / 'synth.names'}\n")
    return data


@pytest.fixture(scope="module")
def letter_box_cfg(tmp_path_factory) -> Path:
    cfg = tmp_path_factory.mktemp("cfg") / "micro-letterbox.cfg"
    cfg.write_text(CFG.read_text().replace("channels=3\n", "channels=3\nletter_box=1\n", 1))
    return cfg


def _recorded_blocks(name: str) -> list[list[str]]:
    """One list of printed lines per image, in IMAGES order (the recording separates images by '=')."""
    text = (FIXTURES / name).read_text()
    blocks = [block.splitlines() for block in text.split("=\n")][:-1]
    assert len(blocks) == len(IMAGES)
    return blocks


def _recorded_report(name: str) -> list[str]:
    """AlexeyAB's stdout from the blank line before `detections_count`, its progress (`\\r`) removed."""
    return (FIXTURES / name).read_text().rstrip("\n").split("\n")


def _report(args: list) -> list[str]:
    return _run(args).rstrip("\n").split("\n")


def _per_image(args: list, images: list[Path] = IMAGES) -> list[list[str]]:
    """The printed lines of `detector test` for each image, typed at its `Enter Image Path:` prompt."""
    result = CliRunner().invoke(main, [str(a) for a in args], input="".join(f"{path}\n" for path in images))
    assert result.exit_code == 0, result.output
    blocks: list[list[str]] = []
    for line in result.stdout.replace("Enter Image Path: ", "").splitlines():
        if "Predicted in" in line:
            blocks.append([])
        elif line:
            blocks[-1].append(line)
    return blocks


def _printed(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "Predicted in" not in line]


# ---------------------------------------------------------------------------- detector map -ab

@pytest.mark.parametrize("recording, options", [
    ("ab_map.txt", []),
    ("ab_map_points11.txt", ["-points", "11"]),
    ("ab_map_points101.txt", ["-points", "101"]),
    ("ab_map_iou75.txt", ["-iou_thresh", "0.75"]),
    ("ab_map_thresh10.txt", ["-thresh", "0.1"]),
])
def test_map_ab_prints_alexeyabs_report(png_data, recording, options):
    assert _report(["detector", "map", png_data, CFG, WEIGHTS, "-ab", *options]) == _recorded_report(recording)


def test_map_ab_letter_box_from_the_cfg(png_data, letter_box_cfg):
    expected = _recorded_report("ab_map_letter_box.txt")
    assert _report(["detector", "map", png_data, letter_box_cfg, WEIGHTS, "-ab"]) == expected
    # the -letter_box switch asks for the same
    assert _report(["detector", "map", png_data, CFG, WEIGHTS, "-ab", "-letter_box"]) == expected


def test_map_default_stays_pjreddies(png_data):
    default = _run(["detector", "map", png_data, CFG, WEIGHTS])
    assert default.splitlines()[0].startswith("detections_count = ")   # not AlexeyAB's layout
    assert default != _run(["detector", "map", png_data, CFG, WEIGHTS, "-ab"])


def test_alexeyab_average_iou_and_duplicates():
    # two objects of class 0; a duplicate on A between the hits on A and B (IoUs chosen by construction)
    truth = GroundTruth([0, 0], [[0, 0, 10, 10], [20, 0, 30, 10]])
    boxes = [[0, 0, 10, 8], [0, 0, 10, 6], [20, 0, 30, 7]]          # IoU .8 and .6 with A, .7 with B
    detections = Detections([0, 0, 0], [0, 0, 0], [0.9, 0.8, 0.7], boxes)
    result = alexeyab_map.evaluate_map(detections, [truth], 1)
    assert (result.tp[0], result.fp[0], result.ranked) == (2, 1, 3)
    # ranking: TP, FP (A taken), TP: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1
    assert result.ap[0] == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert float(result.iou_sum) == pytest.approx(0.8 + 0.7, rel=1e-6)
    report = alexeyab_map.format_map_report(result, ["a"])
    assert " for conf_thresh = 0.25, TP = 2, FP = 1, FN = 0, average IoU = 50.00 % " in report   # (.8+.7)/3
    pjreddie = evaluate_detections(detections, [truth], 1)
    assert pjreddie.average_iou == pytest.approx(0.75)   # mean over the TPs


def test_alexeyab_map_drops_detections_of_difficult_objects():
    truth = GroundTruth([0, 0], [[0, 0, 10, 10], [20, 0, 30, 10]], difficult=[False, True])
    detections = Detections([0, 0], [0, 0], [0.9, 0.8], [[0, 0, 10, 10], [20, 0, 30, 10]])
    result = alexeyab_map.evaluate_map(detections, [truth], 1)
    assert (result.ranked, result.truths[0], result.ap[0]) == (1, 1, 1.0)
    assert (result.tp[0], result.fp[0]) == (1, 1)   # DARKNET(AlexeyAB): above conf_thresh it still counts as FP


def test_alexeyab_label_path():
    assert ALEXEYAB.label_path("/data/obj/img 1.jpg") == "/data/obj/img 1.txt"
    assert ALEXEYAB.label_path("/VOC2007/JPEGImages/000001.jpg") == "/VOC2007/labels/000001.txt"
    assert ALEXEYAB.label_path("/coco/images/val2014/x.png") == "/coco/labels/val2014/x.txt"
    assert ALEXEYAB.label_path("/data/images/x.jpeg") == "/data/images/x.txt"   # no plain images/ rule


# ---------------------------------------------------------------------------- detector test -ab

@pytest.mark.parametrize("recording, cfg_kind, options", [
    ("ab_test_png.txt", "plain", []),
    ("ab_test_t1_png.txt", "plain", ["-thresh", ".1"]),
    ("ab_test_letter_box_png.txt", "letter_box", ["-thresh", ".1"]),
])
def test_detector_test_ab_prints_alexeyabs_lines(tmp_path, letter_box_cfg, recording, cfg_kind, options):
    cfg = letter_box_cfg if cfg_kind == "letter_box" else CFG
    blocks = _per_image(["detector", "test", FIXTURES / "png.data", cfg, WEIGHTS, "-ab", "-dont_show", "-ext_output",
                         "-out", f"{tmp_path}/p/", *options])   # -ab: a folder takes the images (-out X: JSON)
    assert blocks == _recorded_blocks(recording)


@pytest.mark.parametrize("recording, thresh", [("pj_test_t1_png.txt", ".1"), ("pj_test_t25_png.txt", ".25")])
def test_detector_test_prints_pjreddies_lines(tmp_path, recording, thresh):
    blocks = _per_image(["detector", "test", FIXTURES / "png.data", CFG, WEIGHTS, "-thresh", thresh,
                         "-out", tmp_path / "p"])
    assert blocks == _recorded_blocks(recording)


@pytest.mark.parametrize("recording, options", [("pj_test_t1_jpg.txt", ["-thresh", ".1"]),
                                                ("ab_test_t1_jpg.txt", ["-ab", "-ext_output", "-thresh", ".1"])])
def test_jpeg_inputs_print_the_c_lines(tmp_path, recording, options):
    jpegs = sorted((FIXTURES / "jpg").glob("*.jpg"))
    blocks = _per_image(["detector", "test", FIXTURES / "png.data", CFG, WEIGHTS, "-out", f"{tmp_path}/p/", *options],
                        jpegs)
    assert blocks == _recorded_blocks(recording)


def test_recorded_jpeg_lines_equal_the_png_ones():
    # the PNGs are stb_image's decode of the JPEGs: both C programs print the same for either
    for name in ("ab_test", "ab_test_t1", "pj_test_t1", "pj_test_t25"):
        assert _recorded_blocks(f"{name}_jpg.txt") == _recorded_blocks(f"{name}_png.txt"), name


def test_ext_output_box_format():
    det = np.array([0.5, 0.5, 0.25, 0.5], np.float32)
    assert ext_output_box(det, 100, 40) == \
        "\t(left_x:   38   top_y:   10   width:   25   height:   20)"   # 37.5 rounds away from zero
    near_edge = np.array([0.01, 0.5, 0.1, 1.5], np.float32)
    assert ext_output_box(near_edge, 100, 10) == \
        "\t(left_x:   -4   top_y:   -3   width:   10   height:   15)"   # -2.5 rounds to -3: unclipped


def test_alexeyab_order_best_class_first_left_to_right():
    names = ["a", "b", "dont_show_c"]
    right = Detection(np.array([0.8, 0.5, 0.2, 0.2], np.float32), 1.0, np.array([0.3, 0.6, 0.0], np.float32))
    left = Detection(np.array([0.2, 0.5, 0.2, 0.2], np.float32), 1.0, np.array([0.4, 0.0, 0.9], np.float32))
    lines = ALEXEYAB.printed_lines([right, left], names, 0.25, 10, 10)
    # left box first; a dont_show name is never the best class, but is printed after it
    assert lines == ["a: 40%", "dont_show_c: 90%", "b: 60%", "a: 30%"]
    pjreddie = PJREDDIE.printed_lines([right, left], names, 0.25, 10, 10)
    assert pjreddie == ["a: 30%", "b: 60%", "a: 40%", "dont_show_c: 90%"]


# ---------------------------------------------------------------------------- options

@pytest.mark.parametrize("command", [
    ["detector", "test", FIXTURES / "png.data", CFG, WEIGHTS],
    ["detector", "map", FIXTURES / "png.data", CFG, WEIGHTS],
    ["detect", CFG, WEIGHTS],
    ["partial", CFG, WEIGHTS, "out.weights", "2"],
])
def test_unknown_single_dash_option_is_named_whole(command):
    result = CliRunner().invoke(main, [str(a) for a in command] + ["-dont_showx"])
    assert result.exit_code == 2
    assert "No such option '-dont_showx'" in result.output
    assert "'-d'" not in result.output


def test_close_option_is_suggested():
    result = CliRunner().invoke(main, ["detector", "test", str(FIXTURES / "png.data"), str(CFG), str(WEIGHTS),
                                       "-threshh", ".3"])
    assert result.exit_code == 2 and "No such option '-threshh'. Did you mean '-thresh'?" in result.output


def test_negative_values_and_option_values_are_not_options(tmp_path):
    stdout = _run(["detector", "test", FIXTURES / "png.data", CFG, WEIGHTS, IMAGES[0], "-thresh", "-1",
                   "-out", tmp_path / "p", "-hier", ".5"])
    assert len(_printed(stdout)) > 0   # thresh -1: every class of every box is printed


def test_dont_show_is_accepted_and_changes_nothing(tmp_path):
    base = ["detector", "test", FIXTURES / "png.data", CFG, WEIGHTS, IMAGES[1], "-out", tmp_path / "p"]
    assert _printed(_run(base + ["-dont_show"])) == _printed(_run(base))


# ---------------------------------------------------------------------------- C-written weights

@pytest.mark.parametrize("name, version", [("pj_partial4.weights", (0, 2, 0)), ("ab_partial4.weights", (0, 2, 5))])
def test_c_written_weights_round_trip(tmp_path, name, version):
    from pydarknet.network import Darknet
    from pydarknet.weights import PartialWeightsWarning, load_weights, save_weights

    data = (FIXTURES / name).read_bytes()
    assert struct.unpack_from("<3iQ", data) == (*version, 0)   # `darknet partial` clears seen in both
    net = Darknet.from_cfg(CFG)
    with pytest.warns(PartialWeightsWarning):
        load_weights(net, FIXTURES / name)
    save_weights(net, tmp_path / "again.weights", cutoff=4)
    assert (tmp_path / "again.weights").read_bytes() == data
    _run(["partial", CFG, WEIGHTS, tmp_path / "ours.weights", "4"])
    assert (tmp_path / "ours.weights").read_bytes()[20:] == data[20:]   # the same layers as C's partial
