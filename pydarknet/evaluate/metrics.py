"""Detection evaluation: VOC / AlexeyAB ``detector map`` metrics and a pycocotools cross-check.

Numpy arrays in and out, independent of the network: any detector's boxes can be scored.

Conventions used throughout:

- Boxes are ``xyxy`` (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, in any unit shared by ground
  truth and detections (pixels in practice).
- IoU treats coordinates as continuous: area = (x2 - x1) * (y2 - y1), no ``+1``. This is what
  Darknet's ``box_iou`` and pycocotools do.
  DIVERGES(VOC devkit voc_eval.py): the devkit adds 1 to widths because it reads inclusive
  integer pixel indices; on pixel boxes its IoU is slightly higher than ours.
- A detection matches an object when IoU >= ``iou_thresh`` (pycocotools' rule).
- A ground truth ``difficult`` flag follows VOC: such objects are not counted as positives, and a
  detection whose match is a difficult object is ignored (neither TP nor FP).
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from pydarknet.boxes import pairwise_iou, xyxy_to_cxcywh, xyxy_to_xywh

TRUE_POSITIVE, FALSE_POSITIVE, IGNORED = 1, 0, -1

ALL_POINTS = 0     # area under the interpolated PR curve (VOC2010+, AlexeyAB default)


@dataclass
class GroundTruth:
    """Labelled objects of one image.

    Attributes:
        classes: (N,) int64 class ids, >= 0.
        boxes_xyxy: (N, 4) float64 boxes.
        difficult: (N,) bool; None means no object is difficult.
    """

    classes: np.ndarray
    boxes_xyxy: np.ndarray
    difficult: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.classes = _class_ids(self.classes, "GroundTruth.classes")
        n = len(self.classes)
        self.boxes_xyxy = _boxes(self.boxes_xyxy, n, "GroundTruth.boxes_xyxy")
        if self.difficult is None:
            self.difficult = np.zeros(n, dtype=bool)
        else:
            self.difficult = np.asarray(self.difficult, dtype=bool)
            _check_length(self.difficult, n, "GroundTruth.difficult")

    @classmethod
    def from_rows(cls, rows: np.ndarray | Sequence, difficult: np.ndarray | None = None) -> GroundTruth:
        """Build from (N, 5) rows of (class, x1, y1, x2, y2)."""
        rows = _table(rows, 5, "ground-truth rows")
        return cls(rows[:, 0], rows[:, 1:], difficult)


@dataclass
class Detections:
    """Scored boxes of a whole data set, one row per detection.

    Attributes:
        image_ids: (D,) int64 index into the ground-truth sequence.
        classes: (D,) int64 class ids, >= 0.
        scores: (D,) float64 confidence (Darknet: objectness * class probability).
        boxes_xyxy: (D, 4) float64 boxes.
    """

    image_ids: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    boxes_xyxy: np.ndarray

    def __post_init__(self) -> None:
        self.image_ids = _class_ids(self.image_ids, "Detections.image_ids")
        n = len(self.image_ids)
        self.classes = _class_ids(self.classes, "Detections.classes")
        _check_length(self.classes, n, "Detections.classes")
        self.scores = np.asarray(self.scores, dtype=np.float64)
        _check_length(self.scores, n, "Detections.scores")
        if not np.isfinite(self.scores).all():
            raise ValueError("Detections.scores must be finite")
        self.boxes_xyxy = _boxes(self.boxes_xyxy, n, "Detections.boxes_xyxy")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def from_records(cls, records: np.ndarray | Iterable[Sequence[float]]) -> Detections:
        """Build from (D, 7) records of (image_id, class, score, x1, y1, x2, y2)."""
        if not isinstance(records, np.ndarray):
            records = list(records)  # numpy cannot size a generator
        rows = _table(records, 7, "detection records")
        return cls(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3:])


@dataclass(frozen=True)
class EvalResult:
    """Per-class AP plus the operating point at ``conf_thresh``.

    Attributes:
        ap: (K,) average precision in [0, 1]; NaN for classes without positives.
        num_positives: (K,) non-difficult objects per class.
        tp, fp: (K,) true / false positives among detections scoring >= conf_thresh.
        average_iou: mean IoU of those true positives with their objects (0 when there are none).
        num_detections: detections evaluated, ignored ones included.
    """

    ap: np.ndarray
    num_positives: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    average_iou: float
    num_detections: int
    iou_thresh: float
    conf_thresh: float
    points: int

    @property
    def mean_ap(self) -> float:
        """Mean AP over classes with at least one positive (VOC, AlexeyAB); NaN if none has."""
        present = self.num_positives > 0
        return float(self.ap[present].mean()) if present.any() else float("nan")

    @property
    def fn(self) -> np.ndarray:
        """(K,) positives not found at conf_thresh."""
        return self.num_positives - self.tp

    @property
    def precision(self) -> float:
        return _ratio(self.tp.sum(), self.tp.sum() + self.fp.sum())

    @property
    def recall(self) -> float:
        return _ratio(self.tp.sum(), self.num_positives.sum())

    @property
    def f1(self) -> float:
        return _ratio(2 * self.precision * self.recall, self.precision + self.recall)


@dataclass(frozen=True)
class CocoAP:
    """pycocotools' headline bbox numbers, all in [0, 1] (-1 when there is no ground truth)."""

    ap: float    # AP@[.5:.95]
    ap50: float
    ap75: float


def average_precision(recall: np.ndarray, precision: np.ndarray, points: int = ALL_POINTS) -> float:
    """Area under the interpolated precision-recall curve.

    Args:
        recall: (P,) non-decreasing recall of the curve's points (detections by falling score).
        precision: (P,) precision at the same points.
        points: 0 integrates the interpolated curve exactly (VOC2010+); N >= 2 averages it at
            N evenly spaced recalls 0, 1/(N-1), ..., 1 (11: VOC2007, 101: COCO).

    Interpolated precision at recall r is the best precision at any recall >= r, and 0 beyond
    the last point.
    """
    recall = np.asarray(recall, dtype=np.float64)
    precision = np.asarray(precision, dtype=np.float64)
    _check_points(points)
    if recall.ndim != 1 or recall.shape != precision.shape:
        raise ValueError(f"recall and precision must be 1-D of equal length, got shapes "
                         f"{recall.shape} and {precision.shape}")
    if (np.diff(recall) < 0).any():
        raise ValueError("recall must be non-decreasing")
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    if points == ALL_POINTS:
        return float((np.diff(recall, prepend=0.0) * envelope).sum())
    # i / (N-1) is correctly rounded, as is tp / npos, so a recall equal to a threshold as a
    # fraction compares equal. DIVERGES(pycocotools linspace, voc_eval arange): their
    # thresholds are products like 3 * 0.1 = 0.30000000000000004 and skip a recall of 0.3.
    thresholds = np.arange(points) / (points - 1)
    reached = np.searchsorted(recall, thresholds, side="left")
    return float(np.append(envelope, 0.0)[reached].mean())


def precision_recall_curve(scores: np.ndarray, is_tp: np.ndarray, num_positives: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision of one class as its score threshold falls.

    Args:
        scores: (D,) detection scores (ignored detections already removed).
        is_tp: (D,) bool, True where the detection is a true positive.
        num_positives: number of non-difficult objects, > 0.

    Returns:
        recall, precision: (P,) with one point per distinct score.
        DIVERGES(voc_eval, pycocotools): they give every detection a point, so AP over tied
        scores depends on the order the images were listed; a threshold cannot split a tie, so
        here a run of equal scores is one point.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    tp = np.cumsum(is_tp[order])
    count = np.arange(1, len(tp) + 1)
    last_of_tie = np.diff(sorted_scores, append=-np.inf) != 0
    tp, count = tp[last_of_tie], count[last_of_tie]
    return tp / num_positives, tp / count


def match_detections(detections: Detections, ground_truths: Sequence[GroundTruth],
                     iou_thresh: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Greedy VOC matching of detections to objects of their image and class.

    Within each (image, class), detections go by falling score (ties: input order) and take the
    not yet matched object with the highest IoU, if that IoU >= iou_thresh. A detection left
    without an object (a duplicate or a miss) is a false positive. Difficult objects are never
    used up, so every detection landing on one is ignored.
    DIVERGES(voc_eval, AlexeyAB): they pick the highest-IoU object even when it is taken and then
    call the detection a duplicate; pycocotools, like us, falls back to the next free object.

    Returns:
        outcome: (D,) int8 TRUE_POSITIVE, FALSE_POSITIVE or IGNORED.
        iou: (D,) float64 IoU with the matched object (0 where none).
    """
    outcome = np.full(len(detections), FALSE_POSITIVE, dtype=np.int8)
    matched_iou = np.zeros(len(detections))
    if len(detections) == 0:
        return outcome, matched_iou
    order = np.lexsort((-detections.scores, detections.classes, detections.image_ids))
    keys = np.stack([detections.image_ids[order], detections.classes[order]], axis=1)  # [D, 2]
    group_starts = np.flatnonzero((keys[1:] != keys[:-1]).any(axis=1)) + 1
    for group in np.split(order, group_starts):
        truth = ground_truths[detections.image_ids[group[0]]]
        same_class = truth.classes == detections.classes[group[0]]
        if same_class.any():
            iou = _pairwise_iou_xyxy(detections.boxes_xyxy[group], truth.boxes_xyxy[same_class])
            outcome[group], matched_iou[group] = _match_greedy(iou, truth.difficult[same_class],
                                                               iou_thresh)
    return outcome, matched_iou


def evaluate_detections(detections: Detections, ground_truths: Sequence[GroundTruth],
                        num_classes: int, iou_thresh: float = 0.5, points: int = ALL_POINTS,
                        conf_thresh: float = 0.25) -> EvalResult:
    """Per-class AP, mAP and the operating point at conf_thresh, as in AlexeyAB's ``detector map``.

    Args:
        detections: all detections; ``image_ids`` index ``ground_truths``.
        ground_truths: one entry per image, including images without objects.
        num_classes: K; every class id must be < K.
        iou_thresh: minimum IoU for a match.
        points: AP interpolation, see :func:`average_precision`.
        conf_thresh: detections scoring >= this count towards TP, FP, FN and average IoU.
    """
    _check_inputs(detections, ground_truths, num_classes, iou_thresh)
    _check_points(points)
    outcome, iou = match_detections(detections, ground_truths, iou_thresh)
    _, truth_classes, _, truth_difficult = _flatten(ground_truths)
    num_positives = np.bincount(truth_classes[~truth_difficult], minlength=num_classes)

    counted = outcome != IGNORED
    ap = np.full(num_classes, np.nan)
    for c in np.flatnonzero(num_positives):
        mine = counted & (detections.classes == c)
        recall, precision = precision_recall_curve(detections.scores[mine],
                                                   outcome[mine] == TRUE_POSITIVE, num_positives[c])
        ap[c] = average_precision(recall, precision, points)

    confident = counted & (detections.scores >= conf_thresh)
    is_tp = confident & (outcome == TRUE_POSITIVE)
    is_fp = confident & (outcome == FALSE_POSITIVE)
    return EvalResult(
        ap=ap,
        num_positives=num_positives,
        tp=np.bincount(detections.classes[is_tp], minlength=num_classes),
        fp=np.bincount(detections.classes[is_fp], minlength=num_classes),
        average_iou=float(iou[is_tp].mean()) if is_tp.any() else 0.0,
        num_detections=len(detections),
        iou_thresh=iou_thresh,
        conf_thresh=conf_thresh,
        points=points,
    )


def format_map_report(result: EvalResult, names: Sequence[str]) -> list[str]:
    """Lines in the layout of AlexeyAB's ``detector map`` output (no trailing newlines)."""
    if len(names) != len(result.ap):
        raise ValueError(f"{len(names)} names for {len(result.ap)} classes")
    lines = [f"detections_count = {result.num_detections}, "
             f"unique_truth_count = {result.num_positives.sum()}"]
    lines += [f"class_id = {c}, name = {name}, ap = {100 * ap:.2f}%   \t (TP = {tp}, FP = {fp})"
              for c, (name, ap, tp, fp) in enumerate(zip(names, result.ap, result.tp, result.fp))]
    method = ("Area-Under-Curve for each unique Recall" if result.points == ALL_POINTS
              else f"{result.points} Recall-points")
    conf = f"for conf_thresh = {result.conf_thresh:.2f}"
    lines += [
        f"{conf}, precision = {result.precision:.2f}, recall = {result.recall:.2f}, "
        f"F1-score = {result.f1:.2f}",
        f"{conf}, TP = {result.tp.sum()}, FP = {result.fp.sum()}, FN = {result.fn.sum()}, "
        f"average IoU = {100 * result.average_iou:.2f} %",
        f"IoU threshold = {100 * result.iou_thresh:.0f} %, used {method}",
        f"mean average precision (mAP@{result.iou_thresh:.2f}) = {result.mean_ap:.6f}, "
        f"or {100 * result.mean_ap:.2f} %",
    ]
    return lines


def coco_ap(detections: Detections, ground_truths: Sequence[GroundTruth], num_classes: int,
            image_sizes: np.ndarray) -> CocoAP:
    """pycocotools' bbox AP@[.5:.95], AP50 and AP75, computed in memory and silently.

    pycocotools' own rules apply: at most 100 detections per image and class, the 'all' area
    range, 101-point interpolation. Difficult objects become crowd regions (``iscrowd=1``), the
    only ignore flag COCOeval honours; note it scores a detection against a crowd by
    intersection over the detection's own area.

    Args:
        image_sizes: (I, 2) (width, height) per image, in the boxes' unit.
    """
    try:  # an optional extra (setup.py "coco"): the VOC metrics must work without it
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as error:
        raise ImportError("coco_ap needs pycocotools: pip install 'pydarknet[coco]'") from error
    _check_inputs(detections, ground_truths, num_classes, 0.5)
    image_sizes = np.asarray(image_sizes)
    if image_sizes.shape != (len(ground_truths), 2):
        raise ValueError(f"image_sizes must have shape ({len(ground_truths)}, 2), "
                         f"got {image_sizes.shape}")
    truth_images, truth_classes, truth_boxes, truth_difficult = _flatten(ground_truths)
    if len(detections) == 0:
        # pycocotools cannot load an empty result list; with no objects it reports -1
        return CocoAP(*[0.0 if len(truth_classes) else -1.0] * 3)

    annotations = [
        {"id": k, "image_id": int(i), "category_id": int(c), "bbox": box.tolist(),
         "area": float(box[2] * box[3]), "iscrowd": int(hard)}
        # ids from 1: COCOeval reads a match to id 0 as no match
        for k, (i, c, box, hard) in enumerate(zip(truth_images, truth_classes, xyxy_to_xywh(truth_boxes),
                                                  truth_difficult), start=1)
    ]
    dataset = {
        "images": [{"id": i, "width": float(w), "height": float(h)}
                   for i, (w, h) in enumerate(image_sizes)],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in range(num_classes)],
    }
    results = [{"image_id": int(i), "category_id": int(c), "score": float(s), "bbox": box.tolist()}
               for i, c, s, box in zip(detections.image_ids, detections.classes, detections.scores,
                                       xyxy_to_xywh(detections.boxes_xyxy))]
    with contextlib.redirect_stdout(io.StringIO()):
        truth_api = COCO()
        truth_api.dataset = dataset
        truth_api.createIndex()
        evaluator = COCOeval(truth_api, truth_api.loadRes(results), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return CocoAP(*(float(v) for v in evaluator.stats[:3]))


def _pairwise_iou_xyxy(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of (N, 4) and (M, 4) xyxy boxes -> (N, M)."""
    # two zero-area boxes give 0/0: call that no overlap, since NaN would defeat the threshold
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(pairwise_iou(xyxy_to_cxcywh(boxes1), xyxy_to_cxcywh(boxes2)))


def _match_greedy(iou: np.ndarray, difficult: np.ndarray, iou_thresh: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Match (n, G) IoUs of score-sorted detections to G objects; see match_detections."""
    outcome = np.full(len(iou), FALSE_POSITIVE, dtype=np.int8)
    matched_iou = np.zeros(len(iou))
    taken = np.zeros(iou.shape[1], dtype=bool)
    for d, row in enumerate(iou):
        free = np.where(taken, -1.0, row)
        best = free.argmax()
        if free[best] < iou_thresh:
            continue
        if difficult[best]:
            outcome[d] = IGNORED
        else:
            outcome[d], matched_iou[d], taken[best] = TRUE_POSITIVE, free[best], True
    return outcome, matched_iou


def _flatten(ground_truths: Sequence[GroundTruth]
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All objects in one table: image index (M,), class (M,), boxes_xyxy (M, 4), difficult (M,)."""
    counts = [len(t.classes) for t in ground_truths]
    return (np.repeat(np.arange(len(ground_truths)), counts),
            np.concatenate([np.zeros(0, np.int64)] + [t.classes for t in ground_truths]),
            np.concatenate([np.zeros((0, 4))] + [t.boxes_xyxy for t in ground_truths]),
            np.concatenate([np.zeros(0, bool)] + [t.difficult for t in ground_truths]))


def _check_inputs(detections: Detections, ground_truths: Sequence[GroundTruth],
                  num_classes: int, iou_thresh: float) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0 < iou_thresh <= 1:
        raise ValueError(f"iou_thresh must be in (0, 1], got {iou_thresh}")
    if len(detections) and detections.image_ids.max() >= len(ground_truths):
        raise ValueError(f"detection image id {detections.image_ids.max()} but only "
                         f"{len(ground_truths)} ground-truth images")
    _, truth_classes, _, _ = _flatten(ground_truths)
    largest = np.concatenate([truth_classes, detections.classes, [-1]]).max()
    if largest >= num_classes:
        raise ValueError(f"class id {largest} out of range for num_classes={num_classes}")


def _check_points(points: int) -> None:
    if points != ALL_POINTS and points < 2:
        raise ValueError(f"points must be 0 (all points) or >= 2 (e.g. 11, 101), got {points}")


def _class_ids(values: np.ndarray | Sequence, name: str) -> np.ndarray:
    """Validate a 1-D array of non-negative integer ids; integral floats (label rows) are fine."""
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        if not np.issubdtype(ids.dtype, np.floating) or not (ids == np.round(ids)).all():
            raise ValueError(f"{name} must hold integers, got {ids.dtype}")
    ids = ids.astype(np.int64)
    if ids.size and ids.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {ids.min()}")
    return ids


def _boxes(values: np.ndarray | Sequence, n: int, name: str) -> np.ndarray:
    """Validate (n, 4) finite ``xyxy`` boxes."""
    boxes = np.asarray(values, dtype=np.float64)
    if boxes.size == 0 and n == 0:
        return boxes.reshape(0, 4)
    if boxes.shape != (n, 4):
        raise ValueError(f"{name} must have shape ({n}, 4), got {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"{name} must be finite")
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise ValueError(f"{name} must be xyxy with x1 <= x2 and y1 <= y2")
    return boxes


def _table(rows: np.ndarray | Sequence, width: int, name: str) -> np.ndarray:
    """Validate (N, width) float rows; an empty input is an empty table."""
    table = np.asarray(rows, dtype=np.float64)
    if table.size == 0:
        return table.reshape(0, width)
    if table.ndim != 2 or table.shape[1] != width:
        raise ValueError(f"{name} must have shape (N, {width}), got {table.shape}")
    return table


def _check_length(values: np.ndarray, n: int, name: str) -> None:
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {values.shape}")


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0
