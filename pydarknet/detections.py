"""Detections of any head: Darknet's `detection` struct, the letterbox correction, its NMS, printed lines, JSON.

Each head package (`heads/region`, ...) turns its layer's output into these `Detection`s; everything
after that (NMS, printing, drawing, result files, mAP) is shared and lives here or in `evaluate/`.

Every comparison with a threshold is done in float32 against ``float32(thresh)``, because
Darknet passes thresholds as C ``float``; products are float32 in Darknet's order, so the
probabilities (and the printed percentages) equal Darknet's up to its own float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Sequence

import numpy as np

from .boxes import box_diou, box_iou, intersecting_pairs
from .image import letterbox_size, pixel_box


@dataclass
class Detection:
    """One anchor at one grid cell, as Darknet's `detection` struct.

    bbox: (4,) float32 cxcywh relative to the original image (not clipped; may exceed [0, 1]),
        or in pixels when decoded with ``relative=False``.
    objectness: the objectness if it is > thresh, else 0.
    probs: (classes,) float32 class probabilities, 0 where not above thresh or suppressed.
    """
    bbox: np.ndarray
    objectness: float
    probs: np.ndarray


def correct_boxes(boxes_cxcywh: np.ndarray, im_w: int, im_h: int, net_w: int, net_h: int, letterbox: bool = True,
                  relative: bool = True) -> np.ndarray:
    """Undo the letterbox: (N, 4) float32 cxcywh relative to the network input -> to the original image
    (relative, or in pixels with ``relative=False``). An image stretched to the net (``letterbox=False``) has
    no letterbox to undo: it is corrected as one of the network's size, which changes nothing."""
    new = np.array(letterbox_size(im_w, im_h, net_w, net_h) if letterbox else (net_w, net_h), dtype=np.float32)
    net = np.array([net_w, net_h], dtype=np.float32)
    # DARKNET(region_layer.c:correct_region_boxes): sizes times the float32 netw/new_w
    return _undo_letterbox(boxes_cxcywh, net, new, net / new, im_w, im_h, relative)


def correct_yolo_boxes(boxes_cxcywh: np.ndarray, im_w: int, im_h: int, net_w: int, net_h: int, letterbox: bool,
                       relative: bool = True) -> np.ndarray:
    """AlexeyAB's correction of [yolo] boxes: (N, 4) float32 cxcywh relative to the network input -> to the
    original image (relative, or in pixels with ``relative=False``); for a stretched image (letterbox=False)
    only the sizes change, by the last bit (see below)."""
    new = np.array(letterbox_size(im_w, im_h, net_w, net_h) if letterbox else (net_w, net_h), dtype=np.float32)
    net = np.array([net_w, net_h], dtype=np.float32)
    ratio = new / net
    # DARKNET(AlexeyAB yolo_layer.c:correct_yolo_boxes): sizes times the float 1/ratiow, even unletterboxed; built
    # -Ofast, gcc computes it with RCPSS and one Newton step, which makes 1/1 0.99999994 (as the pack shows)
    size_scale = np.where(ratio == 1, np.float32(1 - 2 ** -24), np.float32(1) / ratio).astype(np.float32)
    # DIVERGES: for a ratio != 1, the correctly rounded 1/ratio (the Newton step's last bit is the CPU's)
    return _undo_letterbox(boxes_cxcywh, net, new, size_scale, im_w, im_h, relative)


def _undo_letterbox(boxes_cxcywh: np.ndarray, net: np.ndarray, new: np.ndarray, size_scale: np.ndarray,
                    im_w: int, im_h: int, relative: bool) -> np.ndarray:
    """(N, 4) boxes in the (2,) float32 net size, image placed at (2,) float32 size ``new`` in its centre ->
    relative to the image (or in its pixels); w, h are multiplied by the (2,) float32 `size_scale`."""
    # DARKNET(region_layer.c:correct_region_boxes): the centre shift is computed in double precision
    offset = (net.astype(np.float64) - new) / 2. / net
    xy = ((boxes_cxcywh[:, :2] - offset) / (new / net).astype(np.float64)).astype(np.float32)
    wh = boxes_cxcywh[:, 2:] * size_scale
    boxes = np.concatenate([xy, wh], axis=1)
    if not relative:
        boxes *= np.array([im_w, im_h, im_w, im_h], dtype=np.float32)
    return boxes


NMS_KINDS = ("default", "greedynms", "diounms")   # DARKNET(AlexeyAB darknet.h:NMS_KIND): [yolo] nms_kind values


def do_nms_sort(dets: Sequence[Detection], classes: int, nms: float = 0.45, nms_kind: str = "default",
                beta_nms: float = 0.6) -> list[Detection]:
    """Darknet's per-class NMS; returns new detections in Darknet's final array order.

    Boxes with objectness 0 are first moved to the end; then, class by class, the others are
    sorted by that class's prob (descending) and each box zeroes the class prob of every later
    box overlapping it by more than nms. No box is removed. The input is left untouched.
    nms_kind (AlexeyAB's [yolo] `nms_kind`) says what "overlapping" measures: "default" the IoU
    (box.c:do_nms_sort), "greedynms" the DIoU with exponent 0.6, "diounms" the DIoU with exponent
    beta_nms (box.c:diounms_sort; see `boxes.box_diou`).
    """
    overlap = _overlap_measure(nms_kind, beta_nms)
    boxes, objectness, probs = _stack_detections(dets, classes)
    order = _objectness_partition(objectness != 0)
    total = int(np.count_nonzero(objectness))
    front = order[:total]
    nms32 = np.float32(nms)
    # DARKNET(box.c:do_nms_sort): glibc's qsort is a stable merge sort, so a class whose probs are
    # all 0 keeps the order, and equal probs keep the previous class's order
    for k in np.flatnonzero((probs[front] != 0).any(axis=0)):
        front = front[np.argsort(-probs[front, k], kind="stable")]
        ranked = front[probs[front, k] != 0]                   # a prefix of front: probs are >= 0
        probs[ranked[_suppressed(boxes[ranked], nms32, overlap)], k] = 0
    order[:total] = front
    return [Detection(boxes[i], float(objectness[i]), probs[i]) for i in order]


def _overlap_measure(nms_kind: str, beta_nms: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The elementwise (..., 4) x (..., 4) -> (...) overlap an NMS kind compares with its threshold."""
    if nms_kind == "default":
        return box_iou
    if nms_kind == "greedynms":
        # DARKNET(AlexeyAB box.c:box_diou): greedynms ignores beta_nms, the exponent is the double 0.6
        return partial(box_diou, beta=0.6)
    if nms_kind == "diounms":
        # DARKNET(AlexeyAB box.c:box_diounms): beta_nms is a C float promoted to double for pow
        return partial(box_diou, beta=float(np.float32(beta_nms)))
    raise ValueError(f"unknown nms_kind {nms_kind!r}; expected one of {', '.join(NMS_KINDS)}")


def do_nms_obj(dets: Sequence[Detection], nms: float) -> list[Detection]:
    """DARKNET(box.c:do_nms_obj): NMS on objectness alone; a suppressed box loses objectness and probs.

    Returns copies, best objectness first, then the boxes with objectness 0.
    DIVERGES: boxes with equal objectness keep list order (Darknet: the order of its swap loop).
    """
    objectness = np.array([det.objectness for det in dets], dtype=np.float32)
    ranked = np.argsort(-objectness, kind="stable")
    ranked = ranked[objectness[ranked] != 0]
    boxes = np.stack([dets[i].bbox for i in ranked]).astype(np.float32) if len(ranked) else np.zeros((0, 4))
    suppressed = set(ranked[_suppressed(boxes, np.float32(nms))].tolist())
    order = np.concatenate([ranked, np.flatnonzero(objectness == 0)]).astype(int)
    return [Detection(dets[i].bbox, 0.0, np.zeros_like(dets[i].probs)) if i in suppressed
            else Detection(dets[i].bbox, dets[i].objectness, dets[i].probs.copy()) for i in order]


def _stack_detections(dets: Sequence[Detection], classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, 4) float32 boxes, (N,) float32 objectness and an (N, classes) float32 copy of the probs."""
    if not dets:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, classes), np.float32)
    shapes = {d.probs.shape for d in dets}
    if shapes != {(classes,)}:
        raise ValueError(f"detections have probs of shape {sorted(shapes)}, expected ({classes},)")
    boxes = np.stack([d.bbox for d in dets]).astype(np.float32)
    objectness = np.array([d.objectness for d in dets], dtype=np.float32)
    return boxes, objectness, np.stack([d.probs for d in dets]).astype(np.float32)


def _objectness_partition(nonzero: np.ndarray) -> np.ndarray:
    """Permutation (N,) that moves the ``~nonzero`` items to the end as box.c:do_nms_sort does.

    DARKNET(box.c:do_nms_sort): the scan swaps each zero item with the current last slot, so
    the k-th zero among the first ``total`` slots receives the k-th nonzero item counted from
    the end, and the tail fills from the back with the zeros in the order they were swapped out.
    """
    n = nonzero.size
    total = int(np.count_nonzero(nonzero))
    order = np.arange(n)
    if total == n:
        return order
    holes = np.flatnonzero(~nonzero[:total])                   # zeros inside the front part
    movers = total + np.flatnonzero(nonzero[total:])[::-1]     # nonzeros in the tail, last first
    order[holes] = movers
    # each swap-out is a front hole or, after the holes, slot `total`; a tail item that is zero is
    # swapped out next, a nonzero one ends the run and the next front hole follows
    swapped_from = np.append(holes, total)
    scan = np.arange(n - 1, total, -1)                         # tail slots met from the end
    run_ends = np.cumsum(nonzero[scan])
    sequence = np.concatenate([swapped_from[:1], np.where(nonzero[scan], swapped_from[run_ends], scan)])
    order[total:] = sequence[::-1]
    return order


def _suppressed(boxes_cxcywh: np.ndarray, nms: np.float32,
                overlap: Callable[[np.ndarray, np.ndarray], np.ndarray] = box_iou) -> np.ndarray:
    """Greedy NMS over (M, 4) boxes ranked best first -> (M,) bool, True where suppressed by a better box
    whose elementwise `overlap` with it is > nms.

    Only pairs that intersect can pass a threshold >= 0, so only theirs are computed (the same float
    operations per pair as a full matrix): a yolo net's thousands of candidates per class stay cheap.
    """
    count = len(boxes_cxcywh)
    firsts, seconds = intersecting_pairs(boxes_cxcywh) if nms >= 0 else np.triu_indices(count, 1)
    with np.errstate(invalid="ignore", divide="ignore"):   # 0/0 IoU of empty boxes is NaN in Darknet too
        hits = overlap(boxes_cxcywh[firsts], boxes_cxcywh[seconds]) > nms
    firsts, seconds = firsts[hits], seconds[hits]
    bounds = np.searchsorted(firsts, np.arange(count + 1))
    suppressed = np.zeros(count, dtype=bool)
    # sequential by nature: a suppressed box no longer suppresses others
    for i in np.unique(firsts):
        if not suppressed[i]:
            suppressed[seconds[bounds[i]:bounds[i + 1]]] = True
    return suppressed


@dataclass(frozen=True)
class DetectedObject:
    """One object as Darknet reports it: a class whose probability in one box is above the threshold.

    prob: objectness * P(class | object), the float32 value Darknet prints as a percentage.
    box_rel: (cx, cy, w, h) relative to the image (not clipped; may exceed [0, 1]).
    box_px: (left, top, right, bottom) in pixels, truncated and clamped as Darknet draws the box.
    """
    name: str
    class_id: int
    prob: float
    box_rel: tuple[float, float, float, float]
    box_px: tuple[int, int, int, int]

    def line(self) -> str:
        """The line image.c:draw_detections prints for it, ``"<name>: <prob>%"``."""
        return printed_line(self.name, self.prob)


def detected_objects(dets: Sequence[Detection], names: Sequence[str], thresh: float, im_w: int,
                     im_h: int) -> list[DetectedObject]:
    """The (box, class) pairs with prob > thresh, in Darknet's printing order (box by box in array
    order, by class index within a box), for an `im_w` x `im_h` image."""
    return [DetectedObject(names[j], j, float(det.probs[j]), tuple(float(v) for v in det.bbox),
                           pixel_box(det.bbox, im_w, im_h)) for det, j in box_by_box_pairs(dets, names, thresh)]


def box_by_box_pairs(dets: Sequence[Detection], names: Sequence[str], thresh: float) -> list[tuple[Detection, int]]:
    """DARKNET(image.c:draw_detections): the (box, class) pairs with prob > thresh, box by box in array order,
    classes by index within a box."""
    return [(det, int(j)) for det, classes in zip(dets, classes_above(dets, names, thresh)) for j in classes]


def format_detections(dets: Sequence[Detection], names: Sequence[str], thresh: float) -> list[str]:
    """The lines image.c:draw_detections prints: ``"<name>: <prob>%"`` for every class > thresh, in
    `box_by_box_pairs` order."""
    return [printed_line(names[j], det.probs[j]) for det, j in box_by_box_pairs(dets, names, thresh)]


def printed_line(name: str, prob: float) -> str:
    """``"<name>: <percent>%"``, the line every Darknet prints for a detected class."""
    # DARKNET(image.c:draw_detections): prob*100 is a float32 product, printed with %.0f
    return f"{name}: {float(np.float32(prob) * np.float32(100)):.0f}%"


def detections_to_json(dets: Sequence[Detection], names: Sequence[str], thresh: float) -> list[dict[str, Any]]:
    """JSON-ready dicts for the detections with a class prob > thresh, in array order.

    Keys: ``array_index`` (position in ``dets``), ``bbox`` [x, y, w, h] (cxcywh as in the
    detection), ``objectness``, ``probs`` {class index: prob} for probs > thresh,
    ``best_class``/``best_prob``/``best_name`` (highest prob, lowest index on ties).
    """
    records = []
    for index, (det, classes) in enumerate(zip(dets, classes_above(dets, names, thresh))):
        if classes.size == 0:
            continue
        best = int(np.argmax(det.probs))
        records.append({
            "array_index": index,
            "bbox": [float(v) for v in det.bbox],
            "objectness": float(det.objectness),
            "probs": {int(j): float(det.probs[j]) for j in classes},
            "best_class": best,
            "best_prob": float(det.probs[best]),
            "best_name": names[best],
        })
    return records


def classes_above(dets: Sequence[Detection], names: Sequence[str], thresh: float) -> list[np.ndarray]:
    """For each detection, the class indices with prob > thresh (Darknet's printing order within a
    box); each must have a name."""
    t = np.float32(thresh)
    classes = [np.flatnonzero(det.probs > t) for det in dets]
    unnamed = [int(c[-1]) for c in classes if c.size and c[-1] >= len(names)]
    if unnamed:
        raise ValueError(f"class {max(unnamed)} has no name: only {len(names)} names given")
    return classes
