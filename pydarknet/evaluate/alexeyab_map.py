"""AlexeyAB's `detector map` (detector.c:validate_detector_map): its matching of detections and its report.

The `ALEXEYAB` dialect's map evaluator (`dialect.py`); numpy only. It matches unclipped boxes as it finds
them, image by image, and reports its own "average IoU": the summed IoU of the true positives over TP + FP.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..cfloat import running_sum
from ..boxes import pairwise_iou, xyxy_to_cxcywh
from .metrics import ALL_POINTS, Detections, GroundTruth


@dataclass(frozen=True)
class AlexeyABMap:
    """What AlexeyAB's validate_detector_map prints.

    ap: (K,) per class; tp, fp: (K,) detections above conf_thresh; truths: (K,) labelled objects;
    iou_sum: float32 sum of the IoU of those true positives; ranked: detections in the ranking.
    """
    ap: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    truths: np.ndarray
    iou_sum: np.float32
    ranked: int
    iou_thresh: float
    conf_thresh: float
    points: int

    @property
    def mean_ap(self) -> float:
        # DARKNET(AlexeyAB detector.c:validate_detector_map): over all classes, those without objects too
        return float(self.ap.sum() / len(self.ap))


def evaluate_map(detections: Detections, ground_truths: Sequence[GroundTruth], num_classes: int,
                 iou_thresh: float = 0.5, points: int = ALL_POINTS, conf_thresh: float = 0.25) -> AlexeyABMap:
    """AlexeyAB's `detector map` on detections listed image by image, each image's in Darknet's array
    order (box, then class), with unclipped boxes. Difficult objects play the part of its `difficult=` list.

    Each detection takes the same-class object of its image with the highest IoU > iou_thresh when it
    is found (taken or not); a detection that only hits a difficult object leaves the ranking.
    In the ranking (by score, stable) an object's first detection is a TP, the others FPs.
    Above conf_thresh, a detection is a TP when no earlier detection of its image took its object.
    """
    truth_index, truth_iou, dropped = _match_as_found(detections, ground_truths, iou_thresh)
    above = detections.scores > np.float32(conf_thresh)
    # its `found` loop: an earlier detection of the image took the object (indices are global, so
    # the first taker in list order is the first of its image)
    counted_tp = above & _first_takers(truth_index)
    counted_fp = above & ~counted_tp
    kept = ~dropped
    # DARKNET(AlexeyAB detector.c:detections_comparator): glibc's qsort is a stable merge sort
    order = np.argsort(-detections.scores[kept], kind="stable")
    ranked_tp = _first_takers(truth_index[kept][order])
    classes = detections.classes[kept][order]
    normal = [t.classes[~t.difficult] for t in ground_truths]
    truths = np.bincount(np.concatenate([np.zeros(0, np.int64), *normal]), minlength=num_classes)
    ap = np.array([_class_ap(ranked_tp[classes == c], truths[c], points) for c in range(num_classes)])
    return AlexeyABMap(ap=ap, tp=np.bincount(detections.classes[counted_tp], minlength=num_classes),
                       fp=np.bincount(detections.classes[counted_fp], minlength=num_classes), truths=truths,
                       iou_sum=running_sum(truth_iou[counted_tp]),
                       ranked=int(kept.sum()), iou_thresh=iou_thresh, conf_thresh=conf_thresh, points=points)


def _match_as_found(detections: Detections, ground_truths: Sequence[GroundTruth], iou_thresh: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per detection: global index of the object it takes (-1: none), float32 IoU with it, and whether
    it hits only a difficult object (then it is not ranked)."""
    truth_index = np.full(len(detections), -1)
    truth_iou = np.zeros(len(detections), np.float32)
    dropped = np.zeros(len(detections), bool)
    offset = 0
    for image, truth in enumerate(ground_truths):
        mine = np.flatnonzero(detections.image_ids == image)
        normal = ~truth.difficult
        if len(mine):
            iou = _iou(detections.boxes_xyxy[mine], truth.boxes_xyxy)                    # [n, G]
            hit = (iou > np.float32(iou_thresh)) & (detections.classes[mine, None] == truth.classes[None])
            normal_iou = np.where(hit & normal, iou, -1)[:, normal]                       # [n, G normal]
            if normal_iou.shape[1]:
                best = normal_iou.argmax(axis=1)   # the first of equal IoUs, as its strict >
                found = normal_iou[np.arange(len(mine)), best] > -1
                truth_index[mine[found]] = offset + best[found]
                truth_iou[mine[found]] = normal_iou[np.arange(len(mine)), best][found]
            dropped[mine] = (truth_index[mine] < 0) & (hit & truth.difficult).any(axis=1)
        offset += int(normal.sum())
    return truth_index, truth_iou, dropped


def _iou(boxes1_xyxy: np.ndarray, boxes2_xyxy: np.ndarray) -> np.ndarray:
    # DARKNET(box.c:box_iou): float32; a 0/0 of empty boxes is no overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = pairwise_iou(xyxy_to_cxcywh(boxes1_xyxy).astype(np.float32), xyxy_to_cxcywh(boxes2_xyxy).astype(np.float32))
    return np.nan_to_num(iou.astype(np.float32))


def _first_takers(truth_index: np.ndarray) -> np.ndarray:
    """(D,) bool: True at the first position of each object index (>= 0) in this order."""
    first = np.zeros(len(truth_index), bool)
    taken = np.flatnonzero(truth_index >= 0)
    _, first_positions = np.unique(truth_index[taken], return_index=True)
    first[taken[first_positions]] = True
    return first


def _class_ap(is_tp: np.ndarray, truths: int, points: int) -> float:
    """One class's AP from its detections' TP flags in ranking order, as validate_detector_map sums it."""
    if len(is_tp) == 0:
        return 0.0
    tp = np.cumsum(is_tp)
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / truths if truths else np.zeros(len(tp))
    envelope = np.maximum.accumulate(precision[::-1])[::-1]   # max precision at this rank or later
    if points == ALL_POINTS:
        return float(np.sum(np.diff(recall) * envelope[:-1]) + recall[0] * envelope[0])
    # DARKNET(AlexeyAB Makefile): -Ofast's reciprocal math makes point / (points - 1) a product
    # point * (1 / (points - 1)): 3 * 0.1 = 0.30000000000000004, which a recall of 3/10 does not reach
    thresholds = np.arange(points) * (1.0 / (points - 1))
    reached = recall[None, :] >= thresholds[:, None]                                  # [points, D]
    return float(np.where(reached, precision[None, :], 0).max(axis=1).sum() / points)


def format_map_report(result: AlexeyABMap, names: Sequence[str]) -> list[str]:
    """The lines AlexeyAB's `detector map` prints on stdout from `detections_count` on, progress left out."""
    lines = ["", f" detections_count = {result.ranked}, unique_truth_count = {result.truths.sum()}  "]
    lines += [f"class_id = {c}, name = {names[c]}, ap = {100 * ap:2.2f}%   \t (TP = {tp}, FP = {fp}) "
              for c, (ap, tp, fp) in enumerate(zip(result.ap, result.tp, result.fp))]
    tp, fp, truths = (np.float32(v) for v in (result.tp.sum(), result.fp.sum(), result.truths.sum()))
    precision, recall = _c_div(tp, tp + fp), _c_div(tp, tp + (truths - tp))
    f1 = _c_div(np.float32(2) * precision * recall, precision + recall)
    average_iou = result.iou_sum / (tp + fp) if tp + fp > 0 else result.iou_sum
    conf = result.conf_thresh
    method = f"used {result.points} Recall-points" if result.points else "used Area-Under-Curve for each unique Recall"
    lines += ["", f" for conf_thresh = {conf:1.2f}, precision = {_c_float(precision, '1.2f')}, "
                  f"recall = {_c_float(recall, '1.2f')}, F1-score = {_c_float(f1, '1.2f')} ",
              f" for conf_thresh = {conf:0.2f}, TP = {int(tp)}, FP = {int(fp)}, FN = {int(truths - tp)}, "
              f"average IoU = {float(average_iou * np.float32(100)):2.2f} % ",
              "", f" IoU threshold = {result.iou_thresh * 100:2.0f} %, {method} ",
              f" mean average precision (mAP@{result.iou_thresh:0.2f}) = {result.mean_ap:f}, "
              f"or {result.mean_ap * 100:2.2f} % ",
              "", "Set -points flag:", " `-points 101` for MS COCO ",
              " `-points 11` for PascalVOC 2007 (uncomment `difficult` in voc.data) ",
              " `-points 0` (AUC) for ImageNet, PascalVOC 2010-2012, your custom dataset"]
    return lines


def _c_div(numerator: np.float32, denominator: np.float32) -> np.float32:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.float32(numerator) / np.float32(denominator)


def _c_float(value: np.float32, spec: str) -> str:
    # DARKNET(AlexeyAB detector.c): 0.f/0.f is the x86 default NaN, which glibc prints as -nan
    return "-nan" if math.isnan(value) else format(float(value), spec)
