"""Region decoding, Darknet's NMS, printed lines and JSON against the reference detections; box IoU."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.boxes import box_iou, convert_boxes, cxcywh_to_xyxy, pairwise_iou, xyxy_to_cxcywh
from pydarknet.detections import Detection, detections_to_json, do_nms_sort, format_detections
from pydarknet.heads.region.detections import get_region_detections

VOC_CFGS = {
    "mini-yolov2-voc": "mini/mini-yolov2-voc.cfg",
    "mini-yolov2-tiny-voc": "mini/mini-yolov2-tiny-voc.cfg",
    "yolov2-voc": "darknet/cfg/yolov2-voc.cfg",
    "yolov2-tiny-voc": "darknet/cfg/yolov2-tiny-voc.cfg",
}
IMAGES = ("dog", "horses", "person")
THRESHOLDS = ("0.10", "0.25", "0.50")
TOL = 1e-4   # README §9: bbox and probs abs 1e-4; probs within 1e-4 of thresh may (dis)appear


def cfg_anchors(cfg: Path) -> list[float]:
    """The ``anchors`` line of a cfg's [region] section."""
    line = re.search(r"^\s*anchors\s*=(.*)$", cfg.read_text(), re.MULTILINE)
    assert line, f"{cfg}: no anchors line"
    return [float(v) for v in line.group(1).split(",")]


def detect(region, anchors, ref: dict, thresh: str, classes: int, net_size: int, tree=None) -> list[Detection]:
    dets = get_region_detections(region, anchors, net_size, net_size, ref["image_w"], ref["image_h"],
                                 float(thresh), ref["hier_thresh"], tree)
    assert len(dets) == ref["nboxes"]
    return do_nms_sort(dets, classes, ref["nms"])


def _borderline(probs: dict, thresh: float) -> bool:
    return all(abs(p - thresh) <= TOL for p in probs.values())


def _probs_close(actual: dict, expected: dict, thresh: float) -> bool:
    keys = set(actual) | set(expected)
    return all(abs(actual.get(k, 0) - expected.get(k, 0)) <= TOL
               or abs(actual.get(k, expected.get(k)) - thresh) <= TOL for k in keys)


def assert_detections_match(actual: list[dict], expected: list[dict], thresh: float) -> None:
    """Order-independent match (README §9): every reference box has one of ours with bbox,
    objectness and probs within 1e-4; unmatched boxes on either side must be borderline."""
    unmatched = [dict(d, probs={str(k): v for k, v in d["probs"].items()}) for d in actual]
    for ref in expected:
        match = next((d for d in unmatched
                      if np.allclose(d["bbox"], ref["bbox"], rtol=0, atol=TOL)
                      and abs(d["objectness"] - ref["objectness"]) <= TOL
                      and _probs_close(d["probs"], ref["probs"], thresh)), None)
        if match is None:
            assert _borderline(ref["probs"], thresh), f"no detection matches reference box {ref}"
        else:
            unmatched.remove(match)
    assert all(_borderline(d["probs"], thresh) for d in unmatched), f"extra detections: {unmatched}"


def assert_same_output(dets: list[Detection], ref: dict, names: list[str]) -> None:
    thresh = ref["thresh"]
    records = detections_to_json(dets, names, thresh)
    assert_detections_match(records, ref["detections"], thresh)
    printed = format_detections(dets, names, thresh)
    assert Counter(printed) == Counter(ref["printed"])
    # glibc's stable qsort makes the order fully determined: check it too
    assert printed == ref["printed"]
    assert [d["array_index"] for d in records] == [d["array_index"] for d in ref["detections"]]
    assert [(d["best_class"], d["best_name"]) for d in records] == \
        [(d["best_class"], d["best_name"]) for d in ref["detections"]]


@pytest.mark.parametrize("thresh", THRESHOLDS)
@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("net", VOC_CFGS)
def test_voc_detections_match_reference(reference, net, image, thresh):
    case = reference / "forward" / net / image
    ref = json.loads((case / f"dets_t{thresh}.json").read_text())
    names = (reference / "darknet" / "data" / "voc.names").read_text().splitlines()
    dets = detect(np.load(case / "region.npy"), cfg_anchors(reference / VOC_CFGS[net]), ref, thresh, 20, 416)
    assert_same_output(dets, ref, names)


def test_voc_detections_from_fixture(fixtures):
    """The same check on a copy of mini-yolov2-voc/dog (t=0.25) that runs without the pack."""
    folder = fixtures / "detect"
    ref = json.loads((folder / "mini-yolov2-voc_dog_dets_t0.25.json").read_text())
    names = (folder / "voc.names").read_text().splitlines()
    anchors = [1.3221, 1.73145, 3.19275, 4.00944, 5.05587, 8.09892, 9.47112, 4.84053, 11.2364, 10.0071]
    region = torch.from_numpy(np.load(folder / "mini-yolov2-voc_dog_region.npy"))   # tensors are accepted
    dets = detect(region, anchors, ref, "0.25", 20, 416)
    assert len(ref["printed"]) == 28
    assert_same_output(dets, ref, names)


@pytest.fixture(scope="module")
def tree_and_names(reference):
    tree_module = pytest.importorskip("pydarknet.tree")
    data = reference / "darknet" / "data"
    return tree_module.WordTree.read(data / "9k.tree"), (data / "9k.names").read_text().splitlines()


@pytest.mark.parametrize("thresh", THRESHOLDS)
@pytest.mark.parametrize("image", IMAGES)
def test_tree_detections_match_reference(reference, tree_and_names, image, thresh):
    tree, names = tree_and_names
    case = reference / "forward" / "mini-yolo9000" / image
    ref = json.loads((case / f"dets_t{thresh}.json").read_text())
    anchors = cfg_anchors(reference / "mini" / "mini-yolo9000.cfg")
    dets = detect(np.load(case / "region.npy"), anchors, ref, thresh, tree.n, 224, tree)
    # DARKNET: with a tree and no map the printed probability is the objectness
    for record in detections_to_json(dets, names, ref["thresh"]):
        assert list(record["probs"].values()) == [record["objectness"]]
    assert_same_output(dets, ref, names)


def test_yolo9000_full_size_from_hier_top(reference, tree_and_names):
    """Full-size yolo9000 stores class vectors at 15 cells only; rebuild a region output whose
    class entries are 1 on the path of the reference `hier_top` node of every anchor/cell (the
    top prediction then is that node) and check decoding + NMS of all 867 boxes."""
    tree, names = tree_and_names
    case = reference / "forward" / "yolo9000" / "dog"
    coords_obj = np.load(case / "region_subset.npz")["coords_obj"]                    # (3, 5, 17, 17)
    top = np.array(json.loads((case / "hier_top.json").read_text())["top"])         # (3, 289)
    num, _, h, w = coords_obj.shape
    region = np.zeros((num, 5 + tree.n, h, w), np.float32)
    region[:, :5] = coords_obj
    for anchor, cell in np.ndindex(top.shape):
        region[anchor, [5 + node for node in tree.path(int(top[anchor, cell]))], cell // w, cell % w] = 1
    anchors = cfg_anchors(reference / "darknet" / "cfg" / "yolo9000.cfg")
    for thresh in THRESHOLDS:
        ref = json.loads((case / f"dets_t{thresh}.json").read_text())
        assert_same_output(detect(region, anchors, ref, thresh, tree.n, 544, tree), ref, names)


def _region(num: int, h: int, w: int, classes: int) -> np.ndarray:
    return np.zeros((num, 5 + classes, h, w), np.float32)


def test_decoded_box_hand_computed():
    region = _region(1, 1, 1, 2)
    region[0, :, 0, 0] = [0.5, 0.5, 0.0, np.log(0.5), 0.8, 0.25, 0.75]
    # 200x100 image in a 416 letterbox: new size 416x208, so y and h are rescaled by 2
    (det,) = get_region_detections(region, [2.0, 1.0], 416, 416, 200, 100, thresh=0.3)
    np.testing.assert_allclose(det.bbox, [0.5, 0.5, 2.0, 1.0], rtol=1e-6)
    assert det.objectness == np.float32(0.8)
    np.testing.assert_array_equal(det.probs, [0, np.float32(0.8) * np.float32(0.75)])
    (pixels,) = get_region_detections(region, [2.0, 1.0], 416, 416, 200, 100, thresh=0.3, relative=False)
    np.testing.assert_allclose(pixels.bbox, [100, 50, 400, 100], rtol=1e-6)


def test_low_objectness_zeroes_all_probs():
    region = _region(1, 1, 1, 2)
    region[0, 4:, 0, 0] = [0.2, 0.0, 1.0]
    (det,) = get_region_detections(region, [1.0, 1.0], 32, 32, 32, 32, thresh=0.3)
    assert det.objectness == 0 and not det.probs.any()


def test_thresholds_compare_as_c_floats():
    # DARKNET: thresh is a C float; a prob equal to float32(0.3) is not > thresh (it is > the double 0.3)
    region = _region(1, 1, 1, 1)
    region[0, 4:, 0, 0] = [1.0, np.float32(0.3)]
    (det,) = get_region_detections(region, [1.0, 1.0], 32, 32, 32, 32, thresh=0.3)
    assert det.objectness == 1 and det.probs[0] == 0


def test_detection_array_order_is_anchor_major():
    region = _region(2, 1, 2, 1)
    region[:, 0] = [[[0.1, 0.2]], [[0.3, 0.4]]]            # x offset identifies anchor and cell
    dets = get_region_detections(region, [1, 1, 1, 1], 32, 32, 32, 32, thresh=0.5)
    np.testing.assert_allclose([d.bbox[0] for d in dets], [0.05, 0.6, 0.15, 0.7], rtol=1e-6)


def _det(x: float, objectness: float, probs: list[float], w: float = 1.0) -> Detection:
    return Detection(np.array([x, 0, w, 1], np.float32), objectness, np.array(probs, np.float32))


def test_nms_moves_zero_objectness_boxes_like_darknet():
    # worked by hand through box.c's swap-with-last loop
    flags = [0, 1, 0, 1, 1, 0, 1, 0]
    dets = [_det(i, flag, [0]) for i, flag in enumerate(flags)]
    out = do_nms_sort(dets, 1)
    assert [int(d.bbox[0]) for d in out] == [6, 1, 4, 3, 5, 2, 7, 0]


def test_nms_suppresses_greedily_per_class():
    a = _det(0.0, 0.9, [0.9, 0.0])
    b = _det(0.2, 0.9, [0.8, 0.5])   # IoU(a, b) = .8/1.2 > .45
    c = _det(0.5, 0.9, [0.7, 0.0])   # IoU(a, c) = .5/1.5, IoU(b, c) = .7/1.3 > .45 but b is suppressed
    out = do_nms_sort([c, b, a], 2, 0.45)
    # sorted by class 0, then (stably) by class 1, the last class
    assert [float(d.bbox[0]) for d in out] == [np.float32(0.2), 0.0, 0.5]
    np.testing.assert_array_equal([d.probs for d in out], np.array([[0, 0.5], [0.9, 0], [0.7, 0]], np.float32))
    assert b.probs[0] == np.float32(0.8), "the input detections must not be modified"


def test_nms_keeps_order_of_equal_probs():
    first, second = _det(0.0, 0.5, [0.4]), _det(5.0, 0.5, [0.4])
    assert [float(d.bbox[0]) for d in do_nms_sort([first, second], 1)] == [0, 5]
    assert [float(d.bbox[0]) for d in do_nms_sort([second, first], 1)] == [5, 0]


def test_nms_rejects_wrong_prob_length():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        do_nms_sort([_det(0, 1, [0.5, 0.5])], 3)


def test_format_detections_lines():
    dets = [_det(0, 1, [0.125, 0.0, 0.5]), _det(0, 1, [0.05, 0.0, 0.0]), _det(0, 1, [0.0, 0.999, 0.0])]
    # 12.5 prints as 12 (printf rounds exact ties to even); classes by index within a box
    assert format_detections(dets, ["a", "b", "c"], 0.1) == ["a: 12%", "c: 50%", "b: 100%"]


def test_detections_to_json_fields():
    dets = [_det(0, 0.2, [0.0, 0.0]), _det(0.5, 0.9, [0.3, 0.6])]
    (record,) = detections_to_json(dets, ["a", "b"], 0.25)
    assert record["array_index"] == 1
    assert record["bbox"] == [0.5, 0, 1, 1]
    assert record["probs"] == {0: float(np.float32(0.3)), 1: float(np.float32(0.6))}
    assert (record["best_class"], record["best_name"], record["best_prob"]) == (1, "b", float(np.float32(0.6)))
    json.dumps(record)   # JSON-serialisable


def test_missing_class_name_is_reported():
    with pytest.raises(ValueError, match="class 2 has no name"):
        format_detections([_det(0, 1, [0, 0, 0.9])], ["a", "b"], 0.5)


def test_region_shape_and_anchor_errors():
    with pytest.raises(ValueError, match="num, 5\\+classes, H, W"):
        get_region_detections(np.zeros((25, 13, 13)), [1, 1], 416, 416, 10, 10, 0.5)
    with pytest.raises(ValueError, match="4 anchor values for num=1"):
        get_region_detections(_region(1, 2, 2, 3), [1, 1, 2, 2], 416, 416, 10, 10, 0.5)


def test_box_iou_darknet_semantics():
    a = np.array([0, 0, 2, 2], np.float32)
    assert box_iou(a, np.array([1, 0, 2, 2], np.float32)) == np.float32(2) / np.float32(6)
    assert box_iou(a, np.array([3, 0, 2, 2], np.float32)) == 0                  # disjoint
    assert box_iou(a, np.array([0, 5, 2, 2], np.float32)) == 0                  # overlaps in x only
    assert box_iou(a, np.array([0, 0, 1, 1], np.float32)) == np.float32(0.25)   # contained


def test_pairwise_iou_matches_elementwise_for_numpy_and_torch():
    rng = np.random.default_rng(1)
    a, b = rng.random((5, 4), dtype=np.float32), rng.random((3, 4), dtype=np.float32)
    expected = np.array([[box_iou(x, y) for y in b] for x in a])
    np.testing.assert_array_equal(pairwise_iou(a, b), expected)
    np.testing.assert_array_equal(pairwise_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy(), expected)


def test_box_format_conversion():
    cxcywh = np.array([[2, 3, 4, 2]], np.float32)
    xyxy = np.array([[0, 2, 4, 4]], np.float32)
    np.testing.assert_array_equal(cxcywh_to_xyxy(cxcywh), xyxy)
    np.testing.assert_array_equal(xyxy_to_cxcywh(torch.from_numpy(xyxy)).numpy(), cxcywh)
    np.testing.assert_array_equal(convert_boxes(cxcywh, "cxcywh", "cxcywh"), cxcywh)
    with pytest.raises(ValueError, match="'xywh'"):
        convert_boxes(cxcywh, "xywh", "xyxy")
    with pytest.raises(ValueError, match="last dimension of 4"):
        cxcywh_to_xyxy(np.zeros((2, 3)))


@pytest.mark.parametrize("nms_kind", ["default", "greedynms", "diounms"])
def test_nms_over_intersecting_pairs_equals_the_dense_greedy_loop(nms_kind):
    """do_nms_sort computes overlaps only for intersecting pairs; a plain O(M²) greedy loop agrees."""
    from pydarknet.boxes import box_diou, box_iou

    rng = np.random.default_rng(7)
    count, classes = 400, 3
    boxes = np.column_stack([rng.uniform(0, 1, (count, 2)), rng.uniform(0.01, 0.3, (count, 2))]).astype(np.float32)
    probs = np.where(rng.random((count, classes)) < 0.5, rng.random((count, classes)), 0).astype(np.float32)
    dets = [Detection(box, 1.0, prob) for box, prob in zip(boxes, probs)]
    overlap = {"default": box_iou, "greedynms": lambda a, b: box_diou(a, b, 0.6),
               "diounms": lambda a, b: box_diou(a, b, float(np.float32(0.8)))}[nms_kind]
    got = do_nms_sort(dets, classes, 0.45, nms_kind, beta_nms=0.8)
    want = probs.copy()
    order = np.arange(count)
    for k in range(classes):
        order = order[np.argsort(-want[order, k], kind="stable")]
        for a, i in enumerate(order):
            if want[i, k] == 0:
                continue
            later = order[a + 1:]
            with np.errstate(invalid="ignore", divide="ignore"):
                want[later[overlap(boxes[i][None], boxes[later]) > np.float32(0.45)], k] = 0
    assert np.array_equal(np.stack([d.probs for d in got]), want[order])
