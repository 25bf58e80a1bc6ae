"""`detector valid / recall / map / demo` against Darknet's printing rules and the reference pack.

Expected result-file lines are rebuilt here box by box, in scalar Python, from the C printing code's
arithmetic (double corners stored as float, one-sided clipping) on the reference `region.npy`, so they
do not share code with pydarknet's vectorised writers. Inputs are lossless PNGs of Darknet's own
decodes, so the network sees exactly Darknet's input.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from video_clip import read_frames

from pydarknet.boxes import pairwise_iou
from pydarknet.cli import main
from pydarknet.data.files import read_data_file
from pydarknet.data.synth import make_synth
from pydarknet.detections import Detection, do_nms_obj, do_nms_sort
from pydarknet.heads.region.detections import get_region_detections
from pydarknet.evaluate import coco_ap, evaluate_detections
from pydarknet.image import image_to_chw, letterbox_size, resize_image
from pydarknet.network import Darknet, load_network
from pydarknet.tree import read_map
from pydarknet.data.coco import COCO_IDS
from pydarknet.evaluate import (
    ImageDetections, MissingLabelWarning, ValidSetup, annotate_video, coco_lines, collect_map_inputs,
    compute_map, imagenet_lines, valid_paths, validate_detector, voc_lines,
)

REPO = Path(__file__).resolve().parent.parent
IMAGES = ("dog", "horses", "person")
COCO_NAMES = {"dog": "COCO_val2014_000000000042", "horses": "COCO_val2014_000000000073", "person": "p_1001"}
VALID_THRESH = np.float32(0.005)


# ---------------------------------------------------------------- fixtures and helpers

@pytest.fixture(scope="module")
def pngs(reference, tmp_path_factory) -> dict[str, Path]:
    """Darknet's decode of each image as a PNG under images/, named like COCO files (ids 42, 73, 1001)."""
    folder = tmp_path_factory.mktemp("valid") / "images"
    folder.mkdir()
    paths = {}
    for image in IMAGES:
        decoded = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
        paths[image] = folder / f"{COCO_NAMES[image]}.png"
        cv2.imwrite(str(paths[image]), decoded[:, :, ::-1])
    return paths


def mini(reference: Path, name: str) -> tuple[Path, Path]:
    return reference / "mini" / f"{name}.cfg", reference / "mini" / f"{name}.weights"


def write_data(folder: Path, images: list[Path], **options: str) -> Path:
    """A .data file with a valid list of `images` and results under `folder`."""
    (folder / "valid.txt").write_text("".join(f"{path}\n" for path in images))
    lines = {"classes": "20", "valid": folder / "valid.txt", "names": REPO / "data" / "voc.names",
             "results": folder / "results", **options}
    (folder / "test.data").write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
    return folder / "test.data"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def darknet_corner_lines(det: Detection, width: int, height: int, one_based: bool) -> list[tuple[int, tuple]]:
    """print_detector_detections (one_based) / print_imagenet_detections for ONE pixel-box detection:
    (class, (prob, xmin, ymin, xmax, ymax)) per nonzero prob, computed as the C code does it."""
    x, y, w, h = (float(v) for v in det.bbox)           # float -> double, as C promotes
    offset = 1 if one_based else 0
    xmin, xmax = np.float32(x - w / 2. + offset), np.float32(x + w / 2. + offset)
    ymin, ymax = np.float32(y - h / 2. + offset), np.float32(y + h / 2. + offset)
    if xmin < offset:
        xmin = np.float32(offset)
    if ymin < offset:
        ymin = np.float32(offset)
    if xmax > width:
        xmax = np.float32(width)
    if ymax > height:
        ymax = np.float32(height)
    return [(j, (det.probs[j], xmin, ymin, xmax, ymax)) for j in range(len(det.probs)) if det.probs[j]]


def reference_detections(reference: Path, net_name: str, image: str,
                         relative: bool = False) -> tuple[list[Detection], int, int]:
    """Darknet's get_network_boxes(thresh .005) + do_nms_sort(.45) on the pack's region.npy."""
    folder = reference / "forward" / net_name / image
    meta = json.loads((folder / "dets_t0.25.json").read_text())
    net = load_network(reference / "mini" / f"{net_name}.cfg", None, "cpu")
    dets = get_region_detections(np.load(folder / "region.npy"), net.region.options.anchors, net.width, net.height,
                                 meta["image_w"], meta["image_h"], VALID_THRESH, relative=relative)
    return do_nms_sort(dets, 20, 0.45), meta["image_w"], meta["image_h"]


def parse_voc_files(results: Path, names: list[str]) -> dict[tuple[str, int], np.ndarray]:
    """{(image id, class): (n, 5) prob, xmin, ymin, xmax, ymax} from comp4_det_test_<name>.txt files."""
    rows = defaultdict(list)
    for k, name in enumerate(names):
        for line in (results / f"comp4_det_test_{name}.txt").read_text().splitlines():
            image, *values = line.split()
            rows[image, k].append([float(v) for v in values])
    return {key: np.array(value) for key, value in rows.items()}


def assert_rows_match(ours: np.ndarray, expected: np.ndarray, size: int, what: str) -> None:
    """Every row of each side has a partner on the other within README §9's tolerance (prob abs 1e-4,
    box 1e-4 of the image size + 1e-4 relative); only probs within 1e-4 of the .005 threshold may
    legitimately lack one."""
    for a, b, side in ((expected, ours, "expected"), (ours, expected, "written")):
        tolerance = np.concatenate([[1e-4], 1e-4 * size + 1e-4 * np.abs(a[:, 1:]).max(axis=0)])
        if len(b) == 0:
            partnered = np.zeros(len(a), bool)
        else:
            partnered = (np.abs(a[:, None] - b[None]) <= tolerance).all(-1).any(-1)
        unmatched = a[~partnered]
        assert (np.abs(unmatched[:, 0] - 0.005) < 1e-4).all(), f"{what}: {side} rows without partner {unmatched[:3]}"


class FixedOutputs:
    """A stand-in for a Darknet whose forward returns prepared region outputs, one per image in order."""

    def __init__(self, net, outputs: list[torch.Tensor]):
        self.region, self.width, self.height, self.cfg_path = net.region, net.width, net.height, "fixed"
        self.layers = net.layers
        self.device = torch.device("cpu")
        self._outputs = iter(outputs)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([next(self._outputs) for _ in range(len(x))])


def label_rows(label: Path) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in label.read_text().splitlines()]).reshape(-1, 5)


def oracle_output(net, truths: np.ndarray, im_w: int, im_h: int, rng: np.random.Generator) -> torch.Tensor:
    """A region output (A, 5+C, H, W) that detects every truth (class, x, y, w, h) with a random
    confidence and jitter (a fifth of them badly placed), plus a few confident false positives."""
    anchors = np.array(net.region.options.anchors).reshape(-1, 2)
    num, classes, side = len(anchors), net.region.options.classes, net.output_shape.h
    out = torch.zeros(num, 5 + classes, side, side)
    new_w, new_h = letterbox_size(im_w, im_h, net.width, net.height)
    fakes = np.column_stack([rng.integers(0, 5, 3), rng.uniform(.2, .8, (3, 2)), rng.uniform(.1, .4, (3, 2))])
    for n, (cls, x, y, w, h) in enumerate(np.concatenate([truths, fakes])):
        bad = n >= len(truths) or rng.random() < .2
        x, y = x + rng.normal(0, .4 if bad else .03) * w, y + rng.normal(0, .4 if bad else .03) * h
        # undo region_layer.c:correct_region_boxes: image-relative -> network-relative
        x_net = (x * new_w + (net.width - new_w) / 2) / net.width
        y_net = (y * new_h + (net.height - new_h) / 2) / net.height
        col, row = min(max(int(x_net * side), 0), side - 1), min(max(int(y_net * side), 0), side - 1)
        a = n % num
        out[a, 0, row, col], out[a, 1, row, col] = x_net * side - col, y_net * side - row
        out[a, 2, row, col] = np.log(w * new_w / net.width * side / anchors[a, 0])
        out[a, 3, row, col] = np.log(h * new_h / net.height * side / anchors[a, 1])
        out[a, 4, row, col] = rng.uniform(.3, .99)
        out[a, 5 + int(cls), row, col] = rng.uniform(.5, 1.)
    return out


# ---------------------------------------------------------------- detector valid: VOC files

def test_print_detector_detections_clips_one_sided_hand_computed():
    # 80x40 image. Box 1: centre (5, 20) px, 20x20 -> xmin 5-10+1 = -4 clipped to 1, xmax 16,
    # ymin 11, ymax 31. Box 2: centre (75, 20), 20x60 -> xmin 66, xmax 86 clipped to 80 (w, not w-1),
    # ymin -9 clipped to 1, ymax 51 clipped to 40. The id is the name cut at its first dot.
    dets = [Detection(np.array([0.0625, 0.5, 0.25, 0.5], np.float32), 0.5, np.array([0, 0.5], np.float32)),
            Detection(np.array([0.9375, 0.5, 0.25, 1.5], np.float32), 0.3, np.array([0.25, 0.125], np.float32))]
    image = ImageDetections(0, "/d/COCO_val2014_000000000042.v2.png", 80, 40, dets)
    assert voc_lines(image) == [
        (1, "COCO_val2014_000000000042 0.500000 1.000000 11.000000 16.000000 31.000000\n"),
        (0, "COCO_val2014_000000000042 0.250000 66.000000 1.000000 80.000000 40.000000\n"),
        (1, "COCO_val2014_000000000042 0.125000 66.000000 1.000000 80.000000 40.000000\n")]
    # print_cocos: no +1, clipped at 0; bbox x, y, w, h; id 42 after the last '_'; class 1 -> COCO id 2
    assert coco_lines(image)[0] == '{"image_id":42, "category_id":2, "bbox":[0.000000, 10.000000, 15.000000, ' \
                                   '20.000000], "score":0.500000}'
    assert coco_lines(image)[1] == '{"image_id":42, "category_id":1, "bbox":[65.000000, 0.000000, 15.000000, ' \
                                   '40.000000], "score":0.250000}'
    # print_imagenet_detections: 1-based image index and class
    assert imagenet_lines(image)[0] == "1 2 0.500000 0.000000 10.000000 15.000000 30.000000\n"


@pytest.mark.parametrize("image", IMAGES)
def test_voc_lines_equal_print_detector_detections_on_reference_region(reference, image):
    dets, width, height = reference_detections(reference, "mini-yolov2-voc", image, relative=True)
    pixel_dets, _, _ = reference_detections(reference, "mini-yolov2-voc", image, relative=False)
    expected = [(k, "x %f %f %f %f %f\n" % tuple(float(v) for v in row))
                for det in pixel_dets for k, row in darknet_corner_lines(det, width, height, one_based=True)]
    written = voc_lines(ImageDetections(0, "x.png", width, height, dets))
    assert written == expected
    corners = np.array([[float(v) for v in line.split()[2:]] for _, line in written])
    # the clipping is exercised on both sides
    assert (corners[:, 0] == 1).any() and (corners[:, 2] == width).any() and (corners[:, 3] == height).any()


def test_detector_valid_writes_darknet_voc_files(reference, pngs, tmp_path):
    data = write_data(tmp_path, [pngs[image] for image in IMAGES])
    result = invoke("detector", "valid", data, *mini(reference, "mini-yolov2-voc"))
    assert result.exit_code == 0, result.output
    names = (REPO / "data" / "voc.names").read_text().split()
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(f"comp4_det_test_{n}.txt" for n in names)
    written = parse_voc_files(tmp_path / "results", names)
    for image in IMAGES:
        dets, width, height = reference_detections(reference, "mini-yolov2-voc", image)
        expected = defaultdict(list)
        for det in dets:
            for k, row in darknet_corner_lines(det, width, height, one_based=True):
                expected[k].append(row)
        for k in range(20):
            assert_rows_match(written.get((COCO_NAMES[image], k), np.zeros((0, 5))),
                              np.array(expected[k], dtype=np.float64).reshape(-1, 5), width, f"{image} class {k}")


def test_detector_valid_out_prefix_and_results_key(reference, pngs, tmp_path):
    data = write_data(tmp_path, [pngs["dog"]], results=tmp_path / "elsewhere")
    result = invoke("detector", "valid", data, *mini(reference, "mini-yolov2-tiny-voc"), "-out", "mine_")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "elsewhere" / "mine_dog.txt").is_file() and len(list((tmp_path / "elsewhere").iterdir())) == 20


# ---------------------------------------------------------------- detector valid: COCO and ImageNet

def test_detector_valid_coco_json(reference, pngs, tmp_path):
    data = write_data(tmp_path, [pngs[image] for image in IMAGES], eval="coco")
    result = invoke("detector", "valid", data, *mini(reference, "mini-yolov2-voc"))
    assert result.exit_code == 0, result.output
    text = (tmp_path / "results" / "coco_results.json").read_text()
    assert text.startswith("[\n{") and text.endswith("}\n]\n") and "},\n{" in text
    records = json.loads(text)
    assert {r["image_id"] for r in records} == {42, 73, 1001}
    assert {r["category_id"] for r in records} <= set(COCO_IDS[:20]) and 13 in {r["category_id"] for r in records}
    # the same detections as the VOC files: as many records as expected lines, and boxes inside the image
    for image in IMAGES:
        dets, width, height = reference_detections(reference, "mini-yolov2-voc", image)
        mine = np.array([r["bbox"] for r in records if r["image_id"] == int(COCO_NAMES[image].split("_")[-1])])
        expected = sum(len(darknet_corner_lines(det, width, height, one_based=False)) for det in dets)
        assert abs(len(mine) - expected) <= 2
        assert (mine[:, :2] >= 0).all() and (mine[:, 0] + mine[:, 2] <= width + 1e-3).all()
        assert (mine[:, 1] + mine[:, 3] <= height + 1e-3).all()


def test_detector_valid_imagenet_maps_yolo9000_classes(reference, pngs, tmp_path):
    data = write_data(tmp_path, [pngs[image] for image in IMAGES], eval="imagenet", classes="9418",
                      names=REPO / "data" / "9k.names", map=REPO / "data" / "inet9k.map")
    cfg, weights = mini(reference, "mini-yolo9000")
    result = invoke("detector", "valid", data, cfg, weights, "--batch", "1")
    assert result.exit_code == 0, result.output
    written = [line.split() for line in (tmp_path / "results" / "imagenet-detection.txt").read_text().splitlines()]
    # expected: class k of a box = objectness * P(tree node inet9k.map[k]) > .005, then NMS over 200 classes
    net = load_network(cfg, None, "cpu")
    class_map = torch.from_numpy(read_map(REPO / "data" / "inet9k.map"))
    expected = []
    for index, image in enumerate(IMAGES, start=1):
        folder = reference / "forward" / "mini-yolo9000" / image
        region = torch.from_numpy(np.load(folder / "region.npy"))
        meta = json.loads((folder / "dets_t0.25.json").read_text())
        probs = region[:, 4:5] * net.region.tree.hierarchy_predictions(region[:, 5:], dim=1)[:, class_map]
        probs = torch.where(probs > VALID_THRESH, probs, 0).permute(0, 2, 3, 1).reshape(-1, 200).numpy()
        boxes = get_region_detections(region, net.region.options.anchors, net.width, net.height, meta["image_w"],
                                      meta["image_h"], VALID_THRESH, tree=net.region.tree, relative=False)
        dets = do_nms_sort([Detection(d.bbox, d.objectness, p) for d, p in zip(boxes, probs)], 200, 0.45)
        expected += [[index, k + 1, *row] for det in dets
                     for k, row in darknet_corner_lines(det, meta["image_w"], meta["image_h"], one_based=False)]
    assert len(expected) > 0 and len(written) == len(expected)
    written = np.array(written, dtype=np.float64)
    expected = np.array(expected, dtype=np.float64)
    order_w, order_e = np.lexsort(written.T[::-1]), np.lexsort(expected.T[::-1])
    np.testing.assert_array_equal(written[order_w, :2], expected[order_e, :2])
    np.testing.assert_allclose(written[order_w, 2:], expected[order_e, 2:], atol=0.15, rtol=1e-4)


def test_detector_valid_without_detections_writes_empty_files(reference, pngs, tmp_path):
    net = load_network(*mini(reference, "mini-yolov2-tiny-voc"), "cpu")
    for kind in ("voc", "coco"):
        setup = ValidSetup.from_data(write_data(tmp_path, [pngs["dog"], pngs["horses"]], eval=kind))
        written = validate_detector(FixedOutputs(net, [torch.zeros(5, 25, 13, 13)] * 2), setup, workers=0)
        assert len(written) == (1 if kind == "coco" else 20)
        assert all(path.read_text() == ("[\n]\n" if kind == "coco" else "") for path in written)
    assert json.loads((tmp_path / "results" / "coco_results.json").read_text()) == []


def test_detector_valid_bad_inputs_name_the_file(reference, pngs, tmp_path):
    cfg, weights = mini(reference, "mini-yolov2-tiny-voc")
    missing_list = write_data(tmp_path, [], valid=tmp_path / "no_such_list.txt")
    result = invoke("detector", "valid", missing_list, cfg, weights)
    assert result.exit_code == 1 and "no_such_list.txt" in result.output
    missing_image = write_data(tmp_path, [pngs["dog"], tmp_path / "gone.png"])
    result = invoke("detector", "valid", missing_image, cfg, weights)
    assert result.exit_code == 1 and "gone.png" in result.output
    unknown_eval = write_data(tmp_path, [pngs["dog"]], eval="pascal")
    result = invoke("detector", "valid", unknown_eval, cfg, weights)
    assert result.exit_code == 1 and "eval=pascal" in result.output


# ---------------------------------------------------------------- detector recall

def test_detector_recall_prints_darknet_running_totals(reference, pngs, tmp_path):
    cfg, weights = mini(reference, "mini-yolov2-voc")
    net = load_network(cfg, weights, "cpu")
    expected = []
    correct = total = proposals = 0
    iou_sum = np.float32(0)
    for count, image in enumerate(("dog", "person"), start=1):
        decoded = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
        # validate_detector_recall stretches the image (resize_image, no letterbox)
        x = torch.from_numpy(resize_image(image_to_chw(decoded), net.width, net.height))[None]
        with torch.no_grad():
            dets = get_region_detections(net(x)[0], net.region.options.anchors, net.width, net.height,
                                         net.width, net.height, 0.001)
        boxes = np.array([d.bbox for d in dets], np.float32)
        kept = boxes[greedy_objectness_nms(boxes, np.array([d.objectness for d in dets], np.float32), 0.4)]
        # truth 1 is the best proposal itself (IoU ~1), truth 2 a speck in a corner (IoU ~0)
        truths = np.array([kept[0], [0.001, 0.001, 0.0001, 0.0001]], np.float32)
        label = pngs[image].parent.parent / "labels" / f"{pngs[image].stem}.txt"
        label.parent.mkdir(exist_ok=True)
        label.write_text("".join("%d %.9g %.9g %.9g %.9g\n" % (k, *box) for k, box in zip((0, 3), truths)))
        best = np.maximum(pairwise_iou(kept, truths).max(axis=0), 0)
        correct, total, proposals = correct + int((best > 0.5).sum()), total + 2, proposals + len(kept)
        for value in best:
            iou_sum = np.float32(iou_sum + value)
        expected.append(f"{count - 1:5d} {correct:5d} {total:5d}\tRPs/Img: {np.float32(proposals) / count:.2f}"
                        f"\tIOU: {iou_sum * np.float32(100) / np.float32(total):.2f}%"
                        f"\tRecall:{100. * correct / total:.2f}%")
    assert correct == 2
    data = write_data(tmp_path, [pngs["dog"], pngs["person"]])
    result = invoke("-q", "detector", "recall", data, cfg, weights, "--batch", "1")   # -q: no layer table
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == expected


def greedy_objectness_nms(boxes: np.ndarray, objectness: np.ndarray, nms: float) -> list[int]:
    """Indices kept by box.c:do_nms_obj among the boxes with objectness > .001, best first."""
    order = [i for i in np.argsort(-objectness, kind="stable") if objectness[i] > np.float32(0.001)]
    iou = pairwise_iou(boxes[order], boxes[order])
    kept: list[int] = []            # ranks in `order`
    for rank in range(len(order)):
        if not (iou[rank, kept] > np.float32(nms)).any():
            kept.append(rank)
    return [order[rank] for rank in kept]


def test_do_nms_obj_zeroes_objectness_and_probs_of_suppressed_boxes():
    probs = np.array([0.4, 0.2], np.float32)
    dets = [Detection(np.array([.5, .5, .2, .2], np.float32), 0.6, probs),
            Detection(np.array([.51, .5, .2, .2], np.float32), 0.9, probs),     # IoU .9 with the first
            Detection(np.array([.1, .1, .1, .1], np.float32), 0.0, probs * 0),
            Detection(np.array([.8, .8, .1, .1], np.float32), 0.3, probs)]
    kept = do_nms_obj(dets, 0.4)
    assert [d.objectness for d in kept] == [pytest.approx(0.9), 0.0, pytest.approx(0.3), 0.0]
    assert kept[0].bbox[0] == np.float32(.51) and kept[1].bbox[0] == np.float32(.5)
    assert not kept[1].probs.any() and kept[2].probs.tolist() == probs.tolist()
    assert dets[0].objectness == 0.6     # the input is left untouched


# ---------------------------------------------------------------- mAP

@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth") / "out", train=1, valid=12, size=200, seed=3)


def oracle(reference: Path, synth: Path) -> tuple[list[str], Darknet, list[torch.Tensor]]:
    """The synthetic valid list, a net, and region outputs that find the labelled objects (oracle_output)."""
    net = load_network(*mini(reference, "mini-yolov2-tiny-voc"), "cpu")
    paths = valid_paths(read_data_file(synth))
    rng = np.random.default_rng(0)
    outputs = [oracle_output(net, label_rows(synth_label(path)), *cv2.imread(path).shape[1::-1], rng)
               for path in paths]
    return paths, net, outputs


def synth_label(image: str) -> Path:
    return Path(image.replace("/images/", "/labels/").replace(".jpg", ".txt"))


def test_map_wiring_matches_pycocotools_ap50_on_synthetic_set(reference, synth):
    paths, net, outputs = oracle(reference, synth)
    inputs = collect_map_inputs(FixedOutputs(net, outputs), paths, workers=2, batch=3)
    # ground truth: the label files, in pixels of each image
    for path, truth, (width, height) in zip(paths, inputs.ground_truths, inputs.image_sizes):
        rows = label_rows(synth_label(path))
        scale = np.array([width, height, width, height])
        expected = np.column_stack([rows[:, 1:3] - rows[:, 3:] / 2, rows[:, 1:3] + rows[:, 3:] / 2]) * scale
        np.testing.assert_allclose(truth.boxes_xyxy, expected, atol=1e-4)   # labels are read as float32
        assert truth.classes.tolist() == rows[:, 0].astype(int).tolist() and not truth.difficult.any()
    coco = coco_ap(inputs.detections, inputs.ground_truths, 20, inputs.image_sizes)
    ap101 = evaluate_detections(inputs.detections, inputs.ground_truths, 20, points=101).mean_ap
    ap_all = evaluate_detections(inputs.detections, inputs.ground_truths, 20, points=0).mean_ap
    assert 0.3 < coco.ap50 < 0.95      # a non-trivial curve: misses, misplaced boxes and false positives
    assert ap101 == pytest.approx(coco.ap50, abs=0.005)
    assert ap_all == pytest.approx(coco.ap50, abs=0.02)


def test_difficult_objects_are_neither_positives_nor_false_positives(reference, synth):
    paths, net, outputs = oracle(reference, synth)
    base = collect_map_inputs(FixedOutputs(net, outputs), paths, workers=0)
    # move image 0's first object into <label>.difficult; the same outputs still detect it
    label = synth_label(paths[0])
    original = label.read_text()
    first, *rest = original.splitlines(keepends=True)
    try:
        label.write_text("".join(rest))
        label.with_suffix(".difficult").write_text(first)
        inputs = collect_map_inputs(FixedOutputs(net, outputs), paths, workers=0)
    finally:
        label.write_text(original)
        label.with_suffix(".difficult").unlink()
    assert inputs.ground_truths[0].difficult.tolist() == [False] * len(rest) + [True]
    before, after = (evaluate_detections(i.detections, i.ground_truths, 20, conf_thresh=0) for i in (base, inputs))
    assert after.num_positives.sum() == before.num_positives.sum() - 1
    assert after.fp.sum() == before.fp.sum()          # its detection is ignored, not a false positive
    assert after.tp.sum() == before.tp.sum() - 1


def test_compute_map_skips_unlabelled_files_and_restores_training_mode(reference, synth, tmp_path):
    net = load_network(*mini(reference, "mini-yolov2-tiny-voc"), "cpu")
    paths = valid_paths(read_data_file(synth))[:3]
    unlabelled = tmp_path / "images" / "stray.png"
    unlabelled.parent.mkdir()
    cv2.imwrite(str(unlabelled), np.zeros((40, 60, 3), np.uint8))
    net.train()
    with pytest.warns(MissingLabelWarning, match=re.escape(str(tmp_path / "labels" / "stray.txt"))):
        result = compute_map(net, [paths[0], str(unlabelled), *paths[1:]], points=11)
    assert net.training
    truths = sum(len(label_rows(synth_label(p))) for p in paths)
    assert result.num_positives.sum() == truths and result.points == 11 and 0 <= result.mean_ap <= 1


def test_detector_map_cli_report(reference, synth, tmp_path):
    paths = valid_paths(read_data_file(synth))[:3]
    stray = tmp_path / "stray.jpg"
    cv2.imwrite(str(stray), np.zeros((40, 60, 3), np.uint8))
    data = write_data(tmp_path, [*paths, stray], eval="coco")
    result = invoke("detector", "map", data, *mini(reference, "mini-yolov2-tiny-voc"), "-points", "101",
                    "-iou_thresh", "0.4")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # the dataset check, before the weights: the image without labels among its missing ones
    assert any(line.startswith(" labels (pjreddie's rule): 3 found") and f"1 missing (first: {stray})" in line
               for line in lines)
    assert "1 of 4 images skipped: no label file" in lines
    assert re.fullmatch(r"detections_count = \d+, unique_truth_count = \d+", lines[lines.index(
        "1 of 4 images skipped: no label file") + 1])
    assert "IoU threshold = 40 %, used 101 Recall-points" in lines
    assert any(re.fullmatch(r"mean average precision \(mAP@0.40\) = 0\.\d{6}, or \d+\.\d\d %", line) for line in lines)
    assert re.fullmatch(r"COCO AP@\[\.5:\.95\] = \d\.\d{4}, AP50 = \d\.\d{4}, AP75 = \d\.\d{4}", lines[-1])


# ---------------------------------------------------------------- detector demo

def test_detector_demo_writes_every_frame_annotated(reference, video, tmp_path):
    cfg, weights = mini(reference, "mini-yolov2-tiny-voc")
    source = read_frames(video)
    change = {}
    # thresh 1.0: no box passes, the frames are only re-encoded; .02: boxes are drawn
    for thresh, out in (("1.0", tmp_path / "plain.mp4"), ("0.02", tmp_path / "boxes.avi")):
        result = invoke("detector", "demo", REPO / "cfg" / "voc.data", cfg, weights, video, "-thresh", thresh,
                        "-out_filename", out)
        assert result.exit_code == 0, result.output
        assert re.search(r"10 frames in [\d.]+ s: FPS:[\d.]+", result.output)
        frames = read_frames(out)
        assert len(frames) == 10 and frames[0].shape == (120, 160, 3)
        change[thresh] = np.mean([np.abs(a - b).mean() for a, b in zip(frames, source)])
    assert change["0.02"] > 3 * change["1.0"] + 1


def test_demo_averages_region_outputs_over_three_frames_from_zeros(reference, tmp_path):
    # DARKNET(demo.c:avg_predictions): the drawn output is the mean of the last 3 region outputs, the
    # history starting at zero. One box with objectness .9 and class prob 1 then scores
    # (.9 k/3) * (k/3) = .1, .4, .9 after k = 1, 2, 3 frames: at thresh .5 only the third frame on shows it.
    net = load_network(*mini(reference, "mini-yolov2-tiny-voc"), "cpu")
    anchors = np.array(net.region.options.anchors).reshape(-1, 2)
    output = torch.zeros(5, 25, 13, 13)
    output[0, :5, 6, 6] = torch.tensor([.5, .5, np.log(.3 * 13 / anchors[0, 0]), np.log(.3 * 13 / anchors[0, 1]), .9])
    output[0, 5, 6, 6] = 1.
    grey = np.full((208, 208, 3), 128, np.uint8)
    video = tmp_path / "grey.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (208, 208))
    for _ in range(5):
        writer.write(grey)
    writer.release()
    names = (REPO / "data" / "voc.names").read_text().split()
    for frames, drawn in ((3, [False, False, True, True, True]), (1, [True] * 5)):
        out = tmp_path / f"avg{frames}.avi"
        annotate_video(FixedOutputs(net, [output] * 5), video, out, names, thresh=0.5, avg_frames=frames)
        assert [np.abs(frame - 128).max() > 60 for frame in read_frames(out)] == drawn
