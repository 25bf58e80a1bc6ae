"""Scoring a detector against its labels: the inputs of mAP (`detector map`) and `detector recall`."""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..boxes import pairwise_iou, pixel_xyxy
from ..data.files import label_path, read_data_file
from ..data.labels import CLASSIFICATION_ONLY_ABOVE, read_labels
from ..detections import do_nms_obj
from ..dialect import PJREDDIE, Dialect
from .metrics import ALL_POINTS, Detections, EvalResult, GroundTruth, evaluate_detections
from ..heads.detector import detection_head
from ..network import Darknet, network_mode
from .detect_list import DEFAULT_BATCH, DEFAULT_WORKERS, ImageDetections, detect_images, scored_probs, valid_paths

RECALL_THRESH = 0.001  # DARKNET(detector.c:validate_detector_recall)
RECALL_NMS = 0.4       # DARKNET(detector.c:validate_detector_recall): do_nms_obj, not per class
RECALL_IOU = 0.5       # DARKNET(detector.c:validate_detector_recall): a truth is found above this IoU
RECALL_LIST = "data/coco_val_5k.list"   # DARKNET(detector.c:validate_detector_recall): its fixed list


class MissingLabelWarning(UserWarning):
    """An image of the evaluated list has no label file; it is left out of the mAP."""


@dataclass(frozen=True)
class MapInputs:
    """Everything the mAP needs, gathered in one pass over the images.

    detections: image_ids index `ground_truths`; boxes xyxy in pixels.
    image_sizes: (I, 2) width, height of each evaluated image.
    paths: the evaluated images; skipped: the listed images left out for want of a label file.
    """
    detections: Detections
    ground_truths: list[GroundTruth]
    image_sizes: np.ndarray
    paths: list[str]
    skipped: list[str]
    unreadable: list[str] = field(default_factory=list)   # images that could not be decoded, skipped too


def collect_map_inputs(net: Darknet, paths: Sequence[str], workers: int = DEFAULT_WORKERS,
                       batch: int = DEFAULT_BATCH, progress: bool = False, dialect: Dialect = PJREDDIE,
                       letterbox: bool = True, decoder: str = "stb") -> MapInputs:
    """Detect every labelled image of `paths` as validate_detector does and read its ground truth.

    Ground truth: the label file of the image (`dialect.label_path`), every object
    non-difficult, plus the objects of an optional sibling `<label>.difficult` file (same
    `class x y w h` format) as difficult ones: the VOC objects that voc_label.py leaves out of the
    training labels. An image without a label file is skipped with a MissingLabelWarning, or counted with
    no object (`dialect.map_counts_unlabelled`); detection boxes are clipped to the image unless the dialect
    says otherwise. letterbox: False stretches. decoder: see `image.load_image`.
    """
    classes = detection_head(net, "evaluation").classes
    truths: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in paths:
        labels = Path(dialect.label_path(path))
        if labels.is_file():
            truths[path] = _read_truth(labels, classes)
        elif dialect.map_counts_unlabelled:
            warnings.warn(f"{path}: no label file {labels}; evaluated with no object", MissingLabelWarning, stacklevel=2)
            truths[path] = np.zeros((0, 5), np.float32), np.zeros(0, bool)
        else:
            warnings.warn(f"{path}: no label file {labels}; image skipped", MissingLabelWarning, stacklevel=2)
    kept = [path for path in paths if path in truths]
    records, ground_truths, sizes = [], [], []
    # DARKNET(detector.c:validate_detector; AlexeyAB detector.c:validate_detector_map): thresh .005, NMS .45
    thresh, nms = PJREDDIE.valid_thresh, PJREDDIE.valid_nms
    unreadable: list[str] = []
    for image in detect_images(net, kept, thresh, nms, letterbox=letterbox, workers=workers, batch=batch,
                               progress=progress, dialect=dialect, decoder=decoder, unreadable=unreadable):
        rows, difficult = truths[image.path]
        # records name their image by its place among the ground truths (an unreadable image has none)
        records.append(detection_records(image, clip=dialect.map_clips_boxes, index=len(ground_truths)))
        ground_truths.append(GroundTruth(rows[:, 4], pixel_xyxy(rows[:, :4], image.width, image.height), difficult))
        sizes.append((image.width, image.height))
    detections = Detections.from_records(np.concatenate(records) if records else np.zeros((0, 7)))
    read = set(kept) - set(unreadable)
    return MapInputs(detections, ground_truths, np.array(sizes, dtype=float).reshape(-1, 2),
                     [path for path in kept if path in read],
                     [path for path in paths if path not in truths], unreadable)


def compute_map(net: Darknet, data_or_list: str | os.PathLike | Sequence[str], iou_thresh: float = 0.5,
                conf_thresh: float = 0.25, points: int = ALL_POINTS, workers: int = DEFAULT_WORKERS,
                batch: int = DEFAULT_BATCH, decoder: str = "stb") -> EvalResult:
    """Per-class AP, mAP and precision / recall / F1 / average IoU at `conf_thresh` on a valid set.

    data_or_list: a `.data` file (its `valid=` list is used) or the image paths themselves.
    points: 0 all-point AP (VOC2010+), 11 (VOC2007) or 101 (COCO). The net is left in eval mode
    only while it runs: a training loop can call this every N iterations.
    """
    paths = valid_paths(read_data_file(data_or_list)) if isinstance(data_or_list, (str, os.PathLike)) \
        else list(data_or_list)
    with network_mode(net, False):
        inputs = collect_map_inputs(net, paths, workers, batch, decoder=decoder)
    return evaluate_detections(inputs.detections, inputs.ground_truths, detection_head(net, "evaluation").classes,
                               iou_thresh, points, conf_thresh)


def detection_records(image: ImageDetections, clip: bool = True, index: int | None = None) -> np.ndarray:
    """(M, 7) rows image index, class, score, xyxy pixels (clipped to the image unless `clip=False`) of
    every nonzero prob, box by box and by class within a box. index: the image index written (default
    `image.index`, its place in the list)."""
    boxes, classes, scores = scored_probs(image.detections)
    bboxes = np.array([image.detections[i].bbox for i in boxes]).reshape(-1, 4)
    corners = pixel_xyxy(bboxes, image.width, image.height)
    if clip:
        corners = np.clip(corners, 0, [image.width, image.height] * 2)
    return np.column_stack([np.full(len(boxes), image.index if index is None else index), classes, scores, corners])


def _read_truth(labels: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Label rows (N, 5) x, y, w, h, class (relative cxcywh) and their difficult flags (N,)."""
    rows = read_labels(labels, classes)
    difficult_file = labels.with_suffix(".difficult")
    hard = read_labels(difficult_file, classes) if difficult_file.is_file() else np.zeros((0, 5), np.float32)
    rows, flags = np.concatenate([rows, hard]), np.repeat([False, True], [len(rows), len(hard)])
    # a classification-only row (x == y == 0 in the file) names a class but has no box to find
    boxed = rows[:, 0] <= CLASSIFICATION_ONLY_ABOVE
    return rows[boxed], flags[boxed]


@dataclass(frozen=True)
class RecallStats:
    """validate_detector_recall's running totals after `images` images."""
    images: int
    correct: int
    total: int
    proposals: int
    iou_sum: np.float32    # DARKNET: a float accumulator

    def line(self) -> str:
        """DARKNET(detector.c:validate_detector_recall): the line it prints after each image.

        DIVERGES: with no truth yet the IoU is printed "nan" where glibc prints "-nan".
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            proposals = np.float32(self.proposals) / np.float32(self.images)
            iou = self.iou_sum * np.float32(100) / np.float32(self.total)
            recall = 100. * self.correct / self.total if self.total else float("nan")
        return (f"{self.images - 1:5d} {self.correct:5d} {self.total:5d}\tRPs/Img: {proposals:.2f}"
                f"\tIOU: {iou:.2f}%\tRecall:{recall:.2f}%")


def validate_detector_recall(net: Darknet, paths: Sequence[str], workers: int = DEFAULT_WORKERS,
                             batch: int = DEFAULT_BATCH, progress: bool = False,
                             decoder: str = "stb") -> Iterator[RecallStats]:
    """DARKNET(detector.c:validate_detector_recall): proposal recall, the running totals per image.

    The image is stretched to the network size (no letterbox); boxes with objectness > .001 that
    survive do_nms_obj(.4) are proposals; a truth counts as found when its best IoU with a proposal,
    whatever the class, is > .5.
    DIVERGES: labels are found with the training rules (`label_path`, which also knows raw/ and .png).
    """
    classes = detection_head(net, "evaluation").classes
    stats = RecallStats(0, 0, 0, 0, np.float32(0))
    for image in detect_images(net, paths, RECALL_THRESH, 0, letterbox=False, workers=workers, batch=batch,
                               progress=progress, decoder=decoder):
        truth = read_labels(label_path(image.path), classes)[:, :4]                  # [T, 4] cxcywh
        dets = do_nms_obj(image.detections, RECALL_NMS)
        proposals = np.array([det.bbox for det in dets if det.objectness > np.float32(RECALL_THRESH)],
                             dtype=np.float32).reshape(-1, 4)
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = pairwise_iou(proposals, truth)                                      # [P, T]
        # DARKNET: best_iou starts at 0 and only grows on `iou > best_iou`, so NaN never wins
        best = np.nan_to_num(iou, nan=0.).max(axis=0, initial=0.).astype(np.float32)   # [T]
        iou_sum = stats.iou_sum
        for value in best:           # float32 accumulation in truth order, as Darknet's `avg_iou +=`
            iou_sum = np.float32(iou_sum + value)
        stats = RecallStats(stats.images + 1, stats.correct + int((best > np.float32(RECALL_IOU)).sum()),
                            stats.total + len(truth), stats.proposals + len(proposals), iou_sum)
        yield stats
