"""The [yolo] head's box coder, detections and AlexeyAB's NMS kinds, against ../shared/reference-yolo
(AlexeyAB's Darknet, README §5-§6, §9) and against independent formulas on hand-made values."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.boxes import box_diou, box_iou
from pydarknet.cfg import read_cfg
from pydarknet.detections import (Detection, correct_boxes, correct_yolo_boxes, detections_to_json,
                                  do_nms_sort)
from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.heads.yolo.coder import decode_boxes, encode_boxes
from pydarknet.heads.yolo.detections import YoloDecode, get_yolo_detections, nms_kind_name, yolo_detections

# forward/<net>/dog/ folders of the pack that hold a yolo.npz
PACK_NETS = ("mini-yolov3-tiny", "mini-yolov4-tiny", "mini-yolov4", "mini-yolov7-tiny", "yolov3-tiny", "yolov4-tiny",
             "mini-yolov4-tiny.letter_box")
THRESHOLDS = ("0.25", "0.10")
NMS = 0.45          # detector test's nms (README §6)
TOL = 1e-4          # README §9: bbox and probs abs


def _decodes(sections) -> list[YoloDecode]:
    return [YoloDecode.from_options(s.get_floats("anchors", []), s.get_ints("mask", None), s.get_int("new_coords", 0),
                                    s.get_str("nms_kind", "default"), s.get_float("beta_nms", 0.6))
            for s in sections if s.kind == "yolo"]


def _pack_case(reference_yolo: Path, net: str) -> dict:
    folder = reference_yolo / "forward" / net / "dog"
    meta = json.loads((folder / "meta.json").read_text())
    yolo = np.load(folder / "yolo.npz")
    im_h, im_w = np.load(reference_yolo / "decoded" / "dog.npy").shape[:2]
    return {"folder": folder, "meta": meta, "outputs": [yolo[f"yolo_{i:03d}"] for i in meta["yolo_layers"]],
            "decodes": _decodes(read_cfg(str(reference_yolo / meta["cfg"]))), "im_w": im_w, "im_h": im_h,
            "names": (reference_yolo / "darknet" / "data" / "coco.names").read_text().splitlines()}


def _run(case: dict, thresh: float, dialect=ALEXEYAB, decodes=None) -> list[Detection]:
    meta = case["meta"]
    return yolo_detections(decodes or case["decodes"], case["outputs"], meta["net_w"], meta["net_h"], case["im_w"],
                           case["im_h"], thresh, NMS, bool(meta["letter_box"]), dialect)


def _unmatched(mine: list[dict], ref: list[dict]) -> list[dict]:
    """The reference detections without a detection of ours (each used once) of the same bbox and probs."""
    free = list(mine)
    missing = []
    for want in ref:
        probs = {int(k): v for k, v in want["probs"].items()}
        match = next((got for got in free if np.allclose(got["bbox"], want["bbox"], rtol=0, atol=TOL)
                      and set(got["probs"]) == set(probs)
                      and all(abs(got["probs"][k] - v) <= TOL for k, v in probs.items())
                      and abs(got["objectness"] - want["objectness"]) <= TOL), None)
        if match is None:
            missing.append(want)
        else:
            free.remove(match)
    return missing


@pytest.mark.parametrize("thresh", THRESHOLDS)
@pytest.mark.parametrize("net", PACK_NETS)
def test_yolo_detections_match_alexeyab(reference_yolo, net, thresh):
    case = _pack_case(reference_yolo, net)
    ref = json.loads((case["folder"] / f"dets_t{thresh}.json").read_text())
    assert ref["letter_box"] == int(case["meta"]["letter_box"])
    dets = _run(case, float(thresh))
    assert len(dets) == ref["nboxes"]                      # candidates: objectness > thresh
    mine = detections_to_json(dets, case["names"], float(thresh))
    assert len(mine) == len(ref["detections"])
    # README §9 would allow threshold/NMS boundary cases here; none occur in the pack
    assert _unmatched(mine, ref["detections"]) == []


@pytest.mark.parametrize("thresh", THRESHOLDS)
@pytest.mark.parametrize("net", PACK_NETS)
def test_yolo_detections_array_order(reference_yolo, net, thresh):
    """Stronger than README §9 asks: Darknet's array after its NMS, in order and to the last bit (glibc's
    qsort met no ties the stable sort would order differently)."""
    case = _pack_case(reference_yolo, net)
    ref = json.loads((case["folder"] / f"dets_t{thresh}.json").read_text())["detections"]
    mine = detections_to_json(_run(case, float(thresh)), case["names"], float(thresh))
    assert [d["array_index"] for d in mine] == [d["array_index"] for d in ref]
    assert [np.float32(d["bbox"]).tolist() for d in mine] == [np.float32(d["bbox"]).tolist() for d in ref]


@pytest.mark.parametrize("thresh", THRESHOLDS)
@pytest.mark.parametrize("net", PACK_NETS)
def test_yolo_printed_lines_match_alexeyab(reference_yolo, net, thresh):
    case = _pack_case(reference_yolo, net)
    dets = _run(case, float(thresh))
    lines = ALEXEYAB.printed_lines(dets, case["names"], float(thresh), case["im_w"], case["im_h"], ext_output=True)
    assert lines == (case["folder"] / f"printed_t{thresh}.txt").read_text().splitlines()


def test_pack_nms_kind_is_honoured(reference_yolo):
    """mini-yolov4 (greedynms) at .1 is the pack's case where the IoU NMS keeps a box the DIoU one suppresses."""
    case = _pack_case(reference_yolo, "mini-yolov4")
    assert case["decodes"][-1].nms_kind == "greedynms"
    ref = json.loads((case["folder"] / "dets_t0.10.json").read_text())["detections"]
    plain = [dataclasses.replace(d, nms_kind="default") for d in case["decodes"]]
    assert _unmatched(detections_to_json(_run(case, 0.1, decodes=plain), case["names"], 0.1), ref) != []
    # pjreddie's Darknet has no nms_kind: its NMS is the IoU one whatever the cfg says
    pjreddie = _run(case, 0.1, dialect=dataclasses.replace(PJREDDIE, correct_yolo=ALEXEYAB.correct_yolo))
    assert [d.probs.tolist() for d in pjreddie] == [d.probs.tolist() for d in _run(case, 0.1, decodes=plain)]


def test_yolo_decode_of_built_layers(reference_yolo):
    """`YoloDecode.of` reads a built net's [yolo] layers as the cfg says (once the layer carries its options)."""
    from pydarknet.heads.yolo.layer import YoloLayer
    from pydarknet.network import Darknet
    path = reference_yolo / "mini" / "mini-yolov7-tiny.cfg"
    net = Darknet(read_cfg(str(path)), cfg_path=str(path))
    layers = [layer for layer in net.layers if isinstance(layer, YoloLayer)]
    if not all(hasattr(layer, "options") for layer in layers):
        pytest.skip("YoloLayer has no options (new_coords, nms_kind, beta_nms) yet")
    expected = _decodes(read_cfg(str(path)))
    for layer, want in zip(layers, expected, strict=True):
        got = YoloDecode.of(layer)
        assert torch.equal(got.anchors_wh, want.anchors_wh)
        assert (got.new_coords, got.nms_kind, got.beta_nms) == (want.new_coords, want.nms_kind, want.beta_nms)


# ----------------------------------------------------------------------------------------- the coder
def _random_output(seed: int, anchors: int = 3, classes: int = 2, h: int = 3, w: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = torch.rand(1, anchors, 5 + classes, h, w, generator=g)
    out[:, :, 2:4] = torch.randn(1, anchors, 2, h, w, generator=g) * 2   # raw tw, th for new_coords=0
    return out


ANCHORS_WH = torch.tensor([[10., 14.], [23., 27.], [37., 58.]])


@pytest.mark.parametrize("new_coords", [False, True])
def test_decode_boxes_matches_get_yolo_box(new_coords):
    """Against README §5's formulas, cell by cell in double precision."""
    out = _random_output(0)
    net_w, net_h = 416, 320
    boxes = decode_boxes(out, ANCHORS_WH, net_w, net_h, new_coords, exact=True)
    assert boxes.shape == (1, 3, 3, 4, 4) and boxes.dtype == torch.float32
    for n in range(3):
        for j in range(3):
            for i in range(4):
                x, y, tw, th = (float(v) for v in out[0, n, :4, j, i])
                aw, ah = (float(v) for v in ANCHORS_WH[n])
                size = (lambda t: 4 * t * t) if new_coords else math.exp
                want = [(i + x) / 4, (j + y) / 3, size(tw) * aw / net_w, size(th) * ah / net_h]
                np.testing.assert_allclose(boxes[0, n, j, i].double().numpy(), want, rtol=1e-6, atol=1e-7)


def test_decode_boxes_exact_is_float32_of_double():
    """DARKNET(yolo_layer.c:get_yolo_box): exp() of a float is a double; the fast form is within an ulp."""
    out = _random_output(1)
    exact = decode_boxes(out, ANCHORS_WH, 416, 416, exact=True)
    want_w = (torch.exp(out[:, :, 2].double()) * ANCHORS_WH[:, 0].double().view(3, 1, 1) / 416).float()
    assert torch.equal(exact[..., 2], want_w)
    fast = decode_boxes(out, ANCHORS_WH, 416, 416, exact=False)
    assert torch.allclose(fast, exact, rtol=2 ** -22, atol=0)
    # new_coords=1 is float32 arithmetic in C as well: both forms agree bit for bit
    assert torch.equal(decode_boxes(out, ANCHORS_WH, 416, 416, True, exact=True),
                       decode_boxes(out, ANCHORS_WH, 416, 416, True, exact=False))


@pytest.mark.parametrize("new_coords", [False, True])
def test_encode_boxes_inverts_decode(new_coords):
    out = _random_output(2).double()
    out[:, :, 2:4] = out[:, :, 2:4].abs() + 0.1   # new_coords needs t >= 0 to invert its square
    boxes = decode_boxes(out, ANCHORS_WH.double(), 416, 320, new_coords)                 # [1, A, H, W, 4]
    cols = torch.arange(4, dtype=torch.float64)
    rows = torch.arange(3, dtype=torch.float64).view(3, 1)
    targets = encode_boxes(boxes, cols, rows, ANCHORS_WH.double().view(3, 1, 1, 2), 4, 3, 416, 320, new_coords)
    torch.testing.assert_close(targets, out[:, :, :4].permute(0, 1, 3, 4, 2))


def test_decode_boxes_checks_anchors():
    with pytest.raises(ValueError, match="anchors_wh must be"):
        decode_boxes(_random_output(0), ANCHORS_WH[:2], 416, 416)


# ------------------------------------------------------------------- candidates and box correction
def test_get_yolo_detections_order_and_thresholds():
    """Cells major, anchors minor, layers in order; prob = obj*cls where > thresh, else 0."""
    out = torch.zeros(2, 5 + 2, 2, 2)
    out[:, :2] = 0.5                                   # centres of the cells
    out[0, 4, 1, 0] = 0.9                              # anchor 0 at cell (y=1, x=0): index 2
    out[1, 4, 0, 1] = 0.6                              # anchor 1 at cell (y=0, x=1): index 1
    out[1, 4, 1, 0] = 0.7                              # anchor 1 at cell (y=1, x=0): index 2, after anchor 0
    out[0, 4, 0, 0] = 0.25                             # not > .25: no candidate
    out[:, 5] = 0.5
    out[:, 6] = 0.2
    second = torch.zeros(1, 5 + 2, 1, 1)
    second[0, 4] = 0.3
    second[0, 5:] = 1.0
    decodes = [YoloDecode(torch.tensor([[8., 8.], [16., 16.]])), YoloDecode(torch.tensor([[32., 32.]]))]
    dets = get_yolo_detections([out, second], decodes, 32, 32, 32, 32, 0.25, letterbox=True, dialect=ALEXEYAB)
    assert [d.objectness for d in dets] == pytest.approx([0.6, 0.9, 0.7, 0.3])
    np.testing.assert_allclose(dets[1].bbox[:2], [0.25, 0.75])
    np.testing.assert_array_equal(dets[1].probs, np.float32([np.float32(0.9) * np.float32(0.5), 0]))
    np.testing.assert_array_equal(dets[0].probs, np.float32([np.float32(0.6) * np.float32(0.5), 0]))
    np.testing.assert_array_equal(dets[3].probs, np.float32([0.3, 0.3]))


def test_correct_yolo_boxes_ofast_reciprocal():
    """DARKNET(AlexeyAB yolo_layer.c:correct_yolo_boxes): sizes times the -Ofast 1/ratio, 0.99999994 for 1/1."""
    boxes = np.float32([[0.5, 0.25, 0.75, 0.125], [0.1, 0.9, 1.5, 0.3]])
    stretched = correct_yolo_boxes(boxes, 768, 576, 416, 416, letterbox=False)
    np.testing.assert_array_equal(stretched[:, :2], boxes[:, :2])
    np.testing.assert_array_equal(stretched[:, 2:], boxes[:, 2:] * np.float32(0.99999994))
    letterboxed = correct_yolo_boxes(boxes, 768, 576, 416, 416, letterbox=True)   # new_w, new_h = 416, 312
    np.testing.assert_array_equal(letterboxed[:, 0], boxes[:, 0])
    np.testing.assert_array_equal(letterboxed[:, 2], boxes[:, 2] * np.float32(0.99999994))
    # README §5: y = (y - (neth - new_h)/2/neth) / (new_h/neth), h /= new_h/neth
    np.testing.assert_allclose(letterboxed[:, 1], (boxes[:, 1] - (416 - 312) / 2 / 416) / (312 / 416), rtol=1e-6)
    np.testing.assert_allclose(letterboxed[:, 3], boxes[:, 3] / (312 / 416), rtol=1e-6)
    np.testing.assert_allclose(correct_yolo_boxes(boxes, 768, 576, 416, 416, True, relative=False),
                               letterboxed * np.float32([768, 576, 768, 576]), rtol=1e-6)


def test_pjreddie_yolo_boxes_are_region_corrected():
    """DARKNET(pjreddie yolo_layer.c:correct_yolo_boxes): the letterbox correction of the [region] head."""
    boxes = np.float32([[0.5, 0.25, 0.75, 0.125]])
    np.testing.assert_array_equal(PJREDDIE.correct_yolo(boxes, 768, 576, 416, 416, True),
                                  correct_boxes(boxes, 768, 576, 416, 416))
    np.testing.assert_array_equal(PJREDDIE.correct_yolo(boxes, 768, 576, 416, 416, False), boxes)


# ------------------------------------------------------------------------------------ NMS kinds
def _diou_reference(a, b, beta):
    """README §6 in Python floats: IoU - (d²/c²)^beta, c the diagonal of the enclosing box."""
    iou = float(box_iou(np.float64(a), np.float64(b)))
    left = min(a[0] - a[2] / 2, b[0] - b[2] / 2)
    right = max(a[0] + a[2] / 2, b[0] + b[2] / 2)
    top = min(a[1] - a[3] / 2, b[1] - b[3] / 2)
    bottom = max(a[1] + a[3] / 2, b[1] + b[3] / 2)
    c2 = (right - left) ** 2 + (bottom - top) ** 2
    d2 = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    return iou - (d2 / c2) ** beta


def test_box_diou_matches_formula():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.1, 1, (50, 4)).astype(np.float32)
    b = rng.uniform(0.1, 1, (50, 4)).astype(np.float32)
    for beta in (0.6, 1.0, 0.3):
        want = [_diou_reference(x.tolist(), y.tolist(), beta) for x, y in zip(a, b)]
        np.testing.assert_allclose(box_diou(a, b, beta), want, atol=2e-6)
        np.testing.assert_allclose(box_diou(torch.from_numpy(a), torch.from_numpy(b), beta).numpy(), want, atol=2e-6)
    point = np.float32([0.5, 0.5, 0, 0])
    with np.errstate(invalid="ignore"):   # 0/0: an empty enclosing box gives the plain IoU, NaN here as in pjreddie's
        np.testing.assert_array_equal(box_diou(point, point), box_iou(point, point))


def _nms_reference(boxes, probs, nms, overlap):
    """AlexeyAB's diounms_sort / do_nms_sort for one class, all objectness non-zero, written as the loops."""
    probs = list(probs)
    order = sorted(range(len(boxes)), key=lambda i: -probs[i])
    for pos, i in enumerate(order):
        if probs[i] == 0:
            continue
        for j in order[pos + 1:]:
            if overlap(boxes[i], boxes[j]) > nms:
                probs[j] = 0
    return probs


# IoU(0, 1) = .5 > .45, but the centre penalty (.1²/.32)^.6 = .125 brings the DIoU to .375; box 2 is apart
NMS_BOXES = [[0.5, 0.5, 0.4, 0.4], [0.5, 0.4, 0.4, 0.2], [0.9, 0.9, 0.1, 0.1]]
NMS_PROBS = [0.8, 0.7, 0.9]


def _nms_probs(kind: str, beta: float = 0.6, nms: float = NMS) -> list[float]:
    """Each box's prob after `do_nms_sort`, in NMS_BOXES order (its objectness tells which box it is)."""
    dets = [Detection(np.float32(b), i + 1.0, np.float32([p])) for i, (b, p) in enumerate(zip(NMS_BOXES, NMS_PROBS))]
    out = do_nms_sort(dets, 1, nms, kind, beta)
    return [float(d.probs[0]) for d in sorted(out, key=lambda d: d.objectness)]


@pytest.mark.parametrize("kind, beta, overlap", [
    ("default", 0.6, lambda a, b: float(box_iou(np.float64(a), np.float64(b)))),
    ("greedynms", 0.6, lambda a, b: _diou_reference(a, b, 0.6)),
    ("greedynms", 5.0, lambda a, b: _diou_reference(a, b, 0.6)),      # beta_nms ignored
    ("diounms", 0.6, lambda a, b: _diou_reference(a, b, 0.6)),
    ("diounms", 5.0, lambda a, b: _diou_reference(a, b, 5.0)),
])
def test_nms_kinds_match_reference_loops(kind, beta, overlap):
    boxes = [np.float32(b).tolist() for b in NMS_BOXES]
    want = _nms_reference(boxes, np.float32(NMS_PROBS).tolist(), NMS, overlap)
    assert _nms_probs(kind, beta) == want


def test_nms_kinds_differ_on_the_hand_made_boxes():
    """The IoU NMS suppresses box 1; greedynms (exponent .6) keeps it; diounms with a large beta suppresses it."""
    assert _nms_probs("default")[1] == 0
    assert _nms_probs("greedynms")[1] != 0
    assert _nms_probs("diounms", beta=5.0)[1] == 0


def test_greedynms_hardcoded_exponent_vs_diounms_float_beta():
    """DARKNET(box.c:box_diou / box_diounms): greedynms' 0.6 is a double, diounms' beta_nms a C float (0.6f);
    pow of the same float32 ratio then differs, and after the float32 rounding the two DIoUs may too."""
    ratios = np.float32(np.linspace(0.01, 0.99, 2000))
    double_06 = (ratios.astype(np.float64) ** 0.6).astype(np.float32)
    float_06 = (ratios.astype(np.float64) ** float(np.float32(0.6))).astype(np.float32)
    assert (double_06 != float_06).any()
    a = np.float32([[0.5, 0.5, 0.4, 0.4]])
    b = np.float32([[0.55, 0.52, 0.3, 0.35]])
    assert box_diou(a, b, 0.6) == pytest.approx(_diou_reference(a[0].tolist(), b[0].tolist(), 0.6), abs=1e-6)


def test_nms_kind_names():
    assert [nms_kind_name(k) for k in ("default", "greedynms", "diounms", "cornersnms", "bogus")] == [
        "default", "greedynms", "diounms", "default", "default"]
    assert [nms_kind_name(k) for k in (0, 1, 2, 3)] == ["default", "greedynms", "diounms", "default"]
    with pytest.raises(ValueError, match="unknown nms_kind"):
        do_nms_sort([], 1, 0.45, "bogus")


def test_yolo_detections_nms_zero_and_empty():
    out = torch.zeros(1, 5 + 2, 2, 2)
    decodes = [YoloDecode(torch.tensor([[32., 32.]]), nms_kind="greedynms")]   # boxes the size of the net
    assert yolo_detections(decodes, [out], 32, 32, 64, 48, 0.25, NMS, dialect=ALEXEYAB) == []
    out[0, 4] = 0.5
    out[0, 5] = 0.9
    out[0, 0, :, 0] = 0.9                                        # x of column 0, y of row 0: every centre
    out[0, 1, 0, :] = 0.9                                        # within .05 of (.5, .5)
    dets = yolo_detections(decodes, [out], 32, 32, 64, 48, 0.25, 0, dialect=ALEXEYAB)
    assert len(dets) == 4 and all(d.probs[0] > 0 for d in dets)      # nms=0: no NMS at all
    assert sum(d.probs[0] > 0 for d in yolo_detections(decodes, [out], 32, 32, 64, 48, 0.25, NMS,
                                                        dialect=ALEXEYAB)) < 4
