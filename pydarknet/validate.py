"""Detector evaluation as Darknet runs it: `valid` result files, `recall`, mAP, and the video `demo`.

Every function works on a loaded `Darknet` and a list of image paths (or a `.data` file naming one).
Images are decoded and letterboxed by a few threads running ahead of the network, so decoding
overlaps inference.

Boxes handed around are Darknet's: cxcywh relative to the original image, as in
`detect.get_region_detections`; pixel corners are made only where a writer prints them.
"""
from __future__ import annotations

import os
import re
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import torch
from tqdm import tqdm

from .boxes import pairwise_iou
from .cfg import resolve_path
from .data.files import DataConfig, label_path, read_data_file, read_list, read_names, resolve_data_path
from .data.labels import CLASSIFICATION_ONLY_MIN, read_labels
from . import alexeyab
from .decode import COORDS, Detection, do_nms_obj, do_nms_sort, get_region_detections
from .errors import DataError, MissingFileError
from .evaluate import ALL_POINTS, Detections, EvalResult, GroundTruth, evaluate_detections
from .image import draw_detections, image_to_chw, letterbox_image, load_image, resize_image
from .layers.region import RegionLayer
from .network import Darknet, network_mode
from .tree import WordTree, read_map

VALID_THRESH = 0.005   # DARKNET(detector.c:validate_detector): keep nearly every box for the AP curve
VALID_NMS = 0.45       # DARKNET(detector.c:validate_detector)
HIER_THRESH = 0.5      # DARKNET(detector.c:validate_detector): get_network_boxes(..., .5, map, ...)
RECALL_THRESH = 0.001  # DARKNET(detector.c:validate_detector_recall)
RECALL_NMS = 0.4       # DARKNET(detector.c:validate_detector_recall): do_nms_obj, not per class
RECALL_IOU = 0.5       # DARKNET(detector.c:validate_detector_recall): a truth is found above this IoU
RECALL_LIST = "data/coco_val_5k.list"   # DARKNET(detector.c:validate_detector_recall): its fixed list
DEMO_NMS = 0.4         # DARKNET(demo.c:detect_in_thread): do_nms_obj
DEMO_FRAMES = 3        # DARKNET(demo.c:demo): region outputs averaged over the last 3 frames
DEMO_FALLBACK_FPS = 25.0   # written when a video does not say its frame rate
IMAGENET_CLASSES = 200     # DARKNET(detector.c:validate_detector): eval=imagenet sets classes = 200
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)   # decoding threads
DEFAULT_BATCH = 4          # images per forward; only float rounding depends on it

# DARKNET(detector.c:coco_ids): COCO category id of each of the 80 contiguous class indices
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
            31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
            56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
            85, 86, 87, 88, 89, 90)
# DARKNET(detector.c:validate_detector): `-out` default per `eval=` type, and the file it names
DEFAULT_OUTFILES = {"voc": "comp4_det_test_", "coco": "coco_results", "imagenet": "imagenet-detection"}


T = TypeVar("T")
R = TypeVar("R")


class MissingLabelWarning(UserWarning):
    """An image of the evaluated list has no label file; it is left out of the mAP."""


# ---------------------------------------------------------------------------- running the net

@dataclass(frozen=True)
class ImageDetections:
    """Detections of one listed image.

    index: position in the image list (0-based); width, height: the original image's size in pixels;
    detections: in Darknet's array order, bbox cxcywh relative to the original image.
    """
    index: int
    path: str
    width: int
    height: int
    detections: list[Detection]


def _network_input(path: str, width: int, height: int, letterbox: bool) -> tuple[torch.Tensor, int, int]:
    """Decode an image and fit it to the network: (3, height, width) input, original width and height."""
    image = load_image(path)
    fit = letterbox_image if letterbox else resize_image
    return torch.from_numpy(fit(image_to_chw(image), width, height)), image.shape[1], image.shape[0]


def _ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map` run by `workers` threads, at most 2 * workers items ahead of the consumer, in order.

    Threads, not processes: OpenCV decoding and numpy resizing release the GIL, and a forked
    worker can deadlock on a lock the parent's OpenMP pool held at fork time.
    """
    if workers == 0:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def detect_images(net: Darknet, paths: Sequence[str], thresh: float, nms: float, hier_thresh: float = HIER_THRESH,
                  class_map: np.ndarray | None = None, classes: int | None = None, letterbox: bool = True,
                  workers: int = DEFAULT_WORKERS, batch: int = DEFAULT_BATCH,
                  progress: bool = False, ab: bool = False) -> Iterator[ImageDetections]:
    """Detections for every image of `paths`, in list order, as `get_network_boxes` + `do_nms_sort`.

    letterbox: False stretches the image to the network size (`resize_image`), as
        validate_detector_recall does; boxes are relative to the image either way.
    class_map: (K,) WordTree node per output class (a data file's `map=`), see `mapped_class_probs`.
    classes: keep only the first `classes` class probabilities (eval=imagenet), before the NMS.
    nms: 0 skips the NMS. workers: decoding threads (0: decode in this thread, no overlap).
    batch: images per forward pass; only float rounding depends on it.
    progress: a tqdm bar on stderr when it is a terminal.
    ab: AlexeyAB's decoding (`alexeyab.with_unit_objectness`) before the NMS.
    """
    _region_of(net)
    _check_images_exist(paths)
    inputs = _ordered_map(partial(_network_input, width=net.width, height=net.height, letterbox=letterbox),
                          paths, workers)
    index = 0
    with torch.no_grad(), tqdm(total=len(paths), unit="img", disable=None if progress else True) as bar:
        while chunk := list(islice(inputs, batch)):
            outputs = net(torch.stack([x for x, _, _ in chunk]).to(net.device)).float().cpu()   # [B, A, 5+C, H, W]
            for output, (_, width, height) in zip(outputs, chunk):
                # a stretched image has no letterbox to undo: decode it as if it had the net's size
                fit_w, fit_h = (width, height) if letterbox else (net.width, net.height)
                dets = region_detections(net, output, fit_w, fit_h, thresh, nms, hier_thresh, class_map, classes, ab)
                yield ImageDetections(index, paths[index], width, height, dets)
                index += 1
            bar.update(len(chunk))


def region_detections(net: Darknet, output: torch.Tensor, im_w: int, im_h: int, thresh: float, nms: float,
                      hier_thresh: float = HIER_THRESH, class_map: np.ndarray | None = None,
                      classes: int | None = None, ab: bool = False) -> list[Detection]:
    """One image's (A, 5+C, H, W) region output -> detections after `do_nms_sort` (none when nms=0)."""
    region = _region_of(net)
    dets = get_region_detections(output, region.options.anchors, net.width, net.height, im_w, im_h,
                                 thresh, hier_thresh, tree=region.tree)
    # DARKNET(region_layer.c:get_region_detections): a map is only used with a WordTree
    if class_map is not None and region.tree is not None:
        probs = mapped_class_probs(output, region.tree, class_map, thresh)
        dets = [Detection(det.bbox, det.objectness, prob) for det, prob in zip(dets, probs)]
    if classes is not None:
        # NMS and printing see only the first `classes` probs
        dets = [Detection(det.bbox, det.objectness, det.probs[:classes]) for det in dets]
    if ab:
        dets = alexeyab.with_unit_objectness(dets)
    return do_nms_sort(dets, len(dets[0].probs), nms) if nms and dets else dets


def mapped_class_probs(output: torch.Tensor, tree: WordTree, class_map: np.ndarray, thresh: float) -> np.ndarray:
    """Probabilities of the mapped classes: (A, 5+C, H, W) region output -> (A*H*W, K) float32.

    DARKNET(region_layer.c:get_region_detections): with a map, class k of every box gets
    objectness * P(tree node map[k]) (absolute WordTree probability), 0 unless > thresh; the
    objectness itself is not thresholded first.
    DIVERGES: Darknet hard-codes K = 200 (the length of inet9k.map); the map's length is used.
    """
    class_probs = output[:, COORDS + 1:].float()
    if class_map.max(initial=-1) >= class_probs.shape[1]:
        raise DataError(f"class map names tree node {class_map.max()}, the region has {class_probs.shape[1]} classes")
    p_abs = tree.hierarchy_predictions(class_probs, dim=1)                     # [A, C, H, W]
    prob = output[:, COORDS:COORDS + 1] * p_abs[:, torch.from_numpy(class_map)]   # [A, K, H, W]
    prob = torch.where(prob > np.float32(thresh), prob, torch.zeros(()))
    return prob.permute(0, 2, 3, 1).reshape(-1, len(class_map)).numpy()


# ---------------------------------------------------------------------------- `detector valid`

def box_corners(dets: Sequence[Detection], width: int, height: int, one_based: bool) -> np.ndarray:
    """(N, 4) float32 xmin, ymin, xmax, ymax in pixels, computed and clipped as Darknet prints them.

    DARKNET(region_layer.c:correct_region_boxes): relative boxes are scaled to pixels in float32;
    DARKNET(detector.c:print_detector_detections): corners in double, `+ 1` (VOC's 1-based pixels),
    stored as float, then only xmin, ymin clipped below (at 1) and xmax, ymax above (at w, h);
    print_cocos / print_imagenet_detections do the same without the `+ 1`, clipping at 0.
    """
    if not dets:
        return np.zeros((0, 4), np.float32)
    size = np.array([width, height], dtype=np.float32)
    boxes = np.stack([det.bbox for det in dets]).astype(np.float32) * np.tile(size, 2)   # [N, 4] cxcywh
    centre, half = boxes[:, :2].astype(np.float64), boxes[:, 2:].astype(np.float64) / 2.
    offset = 1. if one_based else 0.
    low = (centre - half + offset).astype(np.float32)
    high = (centre + half + offset).astype(np.float32)
    low = np.where(low < np.float32(offset), np.float32(offset), low)   # NaN stays NaN, as in C
    high = np.where(high > size, size, high)
    return np.concatenate([low, high], axis=1)


def _scored(dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every nonzero (box, class) prob in print order: box index (M,), class (M,), prob (M,) float32."""
    if not dets:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    probs = np.stack([det.probs for det in dets])                          # [N, K]
    boxes, classes = np.nonzero(probs)                                     # row-major: box, then class
    return boxes, classes, probs[boxes, classes]


def _printed_rows(image: ImageDetections, one_based: bool) -> tuple[list[int], np.ndarray]:
    """Class (M,) and float32 (M, 5) prob, xmin, ymin, xmax, ymax of every printed (box, class) pair."""
    corners = box_corners(image.detections, image.width, image.height, one_based)
    boxes, classes, probs = _scored(image.detections)
    return classes.tolist(), np.column_stack([probs, corners[boxes]])


def _as_floats(rows: np.ndarray) -> list[list[float]]:
    """float32 rows as Python floats (exactly the same values), which `%f` formats fastest."""
    return rows.astype(np.float64).tolist()


def image_id(path: str) -> str:
    """DARKNET(utils.c:basecfg): the file name cut at its FIRST dot ("a.b.jpg" -> "a")."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def coco_image_id(path: str) -> int:
    """DARKNET(detector.c:get_coco_image_id): atoi of what follows the last '_' anywhere in the path,
    or, without any '_', the last '/' ("COCO_val2014_000000000042.jpg" -> 42; no digits -> 0)."""
    start = path.rfind("_")
    if start < 0:
        start = path.rfind("/")   # DIVERGES: Darknet dereferences NULL when neither is there
    number = re.match(r"\s*[+-]?\d+", path[start + 1:])
    return int(number.group()) if number else 0


def voc_lines(image: ImageDetections) -> list[tuple[int, str]]:
    """(class, line) pairs of print_detector_detections: `<id> <prob> <xmin> <ymin> <xmax> <ymax>`."""
    name = image_id(image.path)
    classes, rows = _printed_rows(image, one_based=True)
    return [(k, "%s %f %f %f %f %f\n" % (name, *row)) for k, row in zip(classes, _as_floats(rows))]


def coco_lines(image: ImageDetections) -> list[str]:
    """print_cocos' JSON objects (without the separating ",\\n"); bbox is top-left x, y, w, h."""
    number = coco_image_id(image.path)
    classes, rows = _printed_rows(image, one_based=False)
    # DARKNET(detector.c:print_cocos): w, h = xmax - xmin, ymax - ymin in float32
    rows[:, 3:] -= rows[:, 1:3]
    return ['{"image_id":%d, "category_id":%d, "bbox":[%f, %f, %f, %f], "score":%f}'
            % (number, COCO_IDS[k], *box, p) for k, (p, *box) in zip(classes, _as_floats(rows))]


def imagenet_lines(image: ImageDetections) -> list[str]:
    """print_imagenet_detections: `<1-based image index> <1-based class> <prob> <xmin> <ymin> <xmax> <ymax>`."""
    classes, rows = _printed_rows(image, one_based=False)
    return ["%d %d %f %f %f %f %f\n" % (image.index + 1, k + 1, *row) for k, row in zip(classes, _as_floats(rows))]


@dataclass(frozen=True)
class ValidSetup:
    """What `validate_detector` reads from a `.data` file."""
    paths: list[str]
    names: list[str]
    results: Path
    eval: str
    class_map: np.ndarray | None

    @classmethod
    def from_data(cls, data_path: str | os.PathLike) -> ValidSetup:
        data = read_data_file(data_path)
        kind = data.get_str("eval", "voc")
        if kind not in DEFAULT_OUTFILES:
            # DIVERGES: Darknet treats any other value as voc
            raise data.error(f"eval={kind} is not one of {', '.join(DEFAULT_OUTFILES)}", "eval")
        return cls(paths=valid_paths(data), names=read_names(data.get_path("names", "data/names.list")),
                   results=resolve_data_path(data.get_str("results", "results")), eval=kind,
                   class_map=read_map(resolve_path(data.get_str("map"), data.path)) if data.has("map") else None)


def validate_detector(net: Darknet, setup: ValidSetup, outfile: str | None = None, workers: int = DEFAULT_WORKERS,
                      batch: int = DEFAULT_BATCH, progress: bool = False, ab: bool = False,
                      letterbox: bool = True) -> list[Path]:
    """DARKNET(detector.c:validate_detector): detect every listed image (thresh .005, NMS .45,
    letterbox) and write the `eval=` type's result files under `setup.results`; returns their paths.

    voc: `<results>/<outfile><class name>.txt` per class; coco: `<results>/<outfile>.json`;
    imagenet: `<results>/<outfile>.txt`. `outfile` defaults to DEFAULT_OUTFILES[eval].
    DIVERGES: the results folder is created when missing (Darknet's fopen fails).
    ab: as AlexeyAB's validate_detector (thresh .001, NMS .6, its decoding); letterbox: False stretches.
    """
    outfile = outfile or DEFAULT_OUTFILES[setup.eval]
    classes = _output_classes(net, setup)
    setup.results.mkdir(parents=True, exist_ok=True)
    # DARKNET(detector.c:validate_detector): eval=imagenet keeps the first 200 classes only
    kept = IMAGENET_CLASSES if setup.eval == "imagenet" else None
    thresh, nms = (alexeyab.VALID_THRESH, alexeyab.VALID_NMS) if ab else (VALID_THRESH, VALID_NMS)
    images = detect_images(net, setup.paths, thresh, nms, class_map=setup.class_map, classes=kept, letterbox=letterbox,
                           workers=workers, batch=batch, progress=progress, ab=ab)
    if setup.eval == "coco":
        path = setup.results / f"{outfile}.json"
        records = [record for image in images for record in coco_lines(image)]
        # DARKNET(detector.c:validate_detector): "[\n", objects joined by ",\n", then "\n]\n"
        # DIVERGES: with no detection Darknet's fseek leaves "\n]\n", not JSON; this writes "[\n]\n"
        path.write_text("[\n" + ",\n".join(records) + "\n]\n" if records else "[\n]\n")
        return [path]
    if setup.eval == "imagenet":
        path = setup.results / f"{outfile}.txt"
        path.write_text("".join(line for image in images for line in imagenet_lines(image)))
        return [path]
    paths = [setup.results / f"{outfile}{name}.txt" for name in setup.names[:classes]]
    with ExitStack() as stack:
        files = [stack.enter_context(path.open("w")) for path in paths]
        for image in images:
            for k, line in voc_lines(image):
                files[k].write(line)
    return paths


def _output_classes(net: Darknet, setup: ValidSetup) -> int:
    """How many classes the result files cover, checked against the names and the map."""
    region = _region_of(net)
    mapped = setup.class_map is not None and region.tree is not None
    classes = len(setup.class_map) if mapped else region.options.classes
    if setup.eval == "imagenet":
        if classes < IMAGENET_CLASSES:
            raise DataError(f"eval=imagenet writes {IMAGENET_CLASSES} classes; the net gives {classes} "
                             f"(yolo9000 needs map=data/inet9k.map in the .data file)")
        return IMAGENET_CLASSES
    if setup.eval == "coco" and classes > len(COCO_IDS):
        raise DataError(f"eval=coco maps class indices to the {len(COCO_IDS)} COCO ids; the net has {classes} classes")
    if setup.eval == "voc" and len(setup.names) < classes:
        raise DataError(f"{classes} classes but only {len(setup.names)} names: one file per class needs a name")
    return classes


# ---------------------------------------------------------------------------- mAP

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


def collect_map_inputs(net: Darknet, paths: Sequence[str], workers: int = DEFAULT_WORKERS,
                       batch: int = DEFAULT_BATCH, progress: bool = False, ab: bool = False,
                       letterbox: bool = True) -> MapInputs:
    """Detect every labelled image of `paths` as validate_detector does and read its ground truth.

    Ground truth: the Darknet label file of the image (`data.files.label_path`), every object
    non-difficult, plus the objects of an optional sibling `<label>.difficult` file (same
    `class x y w h` format) as difficult ones: the VOC objects that voc_label.py leaves out of the
    training labels. An image without a label file is skipped with a MissingLabelWarning.
    Detection boxes are clipped to the image, like the boxes of the `valid` result files.
    ab: AlexeyAB's validate_detector_map: its decoding, unclipped boxes and label paths (`alexeyab.label_path`);
    an image without labels counts with no object. letterbox: False stretches.
    """
    classes = _region_of(net).options.classes
    truths: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path in paths:
        labels = Path(alexeyab.label_path(path) if ab else label_path(path))
        if labels.is_file():
            truths[path] = _read_truth(labels, classes)
        elif ab:
            # DARKNET(AlexeyAB detector.c:validate_detector_map): read_boxes warns, the image counts with no object
            warnings.warn(f"{path}: no label file {labels}; evaluated with no object", MissingLabelWarning, stacklevel=2)
            truths[path] = np.zeros((0, 5), np.float32), np.zeros(0, bool)
        else:
            warnings.warn(f"{path}: no label file {labels}; image skipped", MissingLabelWarning, stacklevel=2)
    kept = [path for path in paths if path in truths]
    records, ground_truths, sizes = [], [], []
    for image in detect_images(net, kept, VALID_THRESH, VALID_NMS, letterbox=letterbox, workers=workers, batch=batch,
                               progress=progress, ab=ab):
        rows, difficult = truths[image.path]
        ground_truths.append(GroundTruth(rows[:, 4], pixel_xyxy(rows[:, :4], image.width, image.height), difficult))
        sizes.append((image.width, image.height))
        records.append(detection_records(image, clip=not ab))
    detections = Detections.from_records(np.concatenate(records) if records else np.zeros((0, 7)))
    return MapInputs(detections, ground_truths, np.array(sizes, dtype=float).reshape(-1, 2), kept,
                     [path for path in paths if path not in truths])


def compute_map(net: Darknet, data_or_list: str | os.PathLike | Sequence[str], iou_thresh: float = 0.5,
                conf_thresh: float = 0.25, points: int = ALL_POINTS, workers: int = DEFAULT_WORKERS,
                batch: int = DEFAULT_BATCH) -> EvalResult:
    """Per-class AP, mAP and precision / recall / F1 / average IoU at `conf_thresh` on a valid set.

    data_or_list: a `.data` file (its `valid=` list is used) or the image paths themselves.
    points: 0 all-point AP (VOC2010+), 11 (VOC2007) or 101 (COCO). The net is left in eval mode
    only while it runs: a training loop can call this every N iterations.
    """
    paths = valid_paths(read_data_file(data_or_list)) if isinstance(data_or_list, (str, os.PathLike)) \
        else list(data_or_list)
    with network_mode(net, False):
        inputs = collect_map_inputs(net, paths, workers, batch)
    return evaluate_detections(inputs.detections, inputs.ground_truths, _region_of(net).options.classes,
                               iou_thresh, points, conf_thresh)


def detection_records(image: ImageDetections, clip: bool = True) -> np.ndarray:
    """(M, 7) rows image index, class, score, xyxy pixels (clipped to the image) of every nonzero prob,
    box by box and by class within a box."""
    boxes, classes, scores = _scored(image.detections)
    bboxes = np.array([image.detections[i].bbox for i in boxes]).reshape(-1, 4)
    corners = pixel_xyxy(bboxes, image.width, image.height)
    if clip:
        corners = np.clip(corners, 0, [image.width, image.height] * 2)
    return np.column_stack([np.full(len(boxes), image.index), classes, scores, corners])


def _read_truth(labels: Path, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Label rows (N, 5) x, y, w, h, class (relative cxcywh) and their difficult flags (N,)."""
    rows = read_labels(labels, classes)
    difficult_file = labels.with_suffix(".difficult")
    hard = read_labels(difficult_file, classes) if difficult_file.is_file() else np.zeros((0, 5), np.float32)
    rows, flags = np.concatenate([rows, hard]), np.repeat([False, True], [len(rows), len(hard)])
    # a classification-only row (x == y == 0 in the file) names a class but has no box to find
    boxed = rows[:, 0] < CLASSIFICATION_ONLY_MIN
    return rows[boxed], flags[boxed]


def pixel_xyxy(boxes_cxcywh: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) relative cxcywh -> (N, 4) float64 xyxy in pixels."""
    boxes = boxes_cxcywh.reshape(-1, 4).astype(np.float64) * [width, height, width, height]
    return np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)


# ---------------------------------------------------------------------------- `detector recall`

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
                    batch: int = DEFAULT_BATCH, progress: bool = False) -> Iterator[RecallStats]:
    """DARKNET(detector.c:validate_detector_recall): proposal recall, the running totals per image.

    The image is stretched to the network size (no letterbox); boxes with objectness > .001 that
    survive do_nms_obj(.4) are proposals; a truth counts as found when its best IoU with a proposal,
    whatever the class, is > .5.
    DIVERGES: labels are found with the training rules (`label_path`, which also knows raw/ and .png).
    """
    classes = _region_of(net).options.classes
    stats = RecallStats(0, 0, 0, 0, np.float32(0))
    for image in detect_images(net, paths, RECALL_THRESH, 0, letterbox=False, workers=workers, batch=batch,
                               progress=progress):
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


# ---------------------------------------------------------------------------- `detector demo`

@dataclass(frozen=True)
class DemoStats:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def annotate_video(net: Darknet, video: str | os.PathLike, out_path: str | os.PathLike, names: Sequence[str],
                   thresh: float = 0.5, hier_thresh: float = HIER_THRESH, avg_frames: int = DEMO_FRAMES,
                   progress: bool = False) -> DemoStats:
    """DARKNET(demo.c:demo) on a video file, writing the annotated frames to `out_path`, never a window.

    Each frame is letterboxed; the region output drawn is the mean of the last `avg_frames` outputs
    (the history starts as zeros, so the first frames are faded, as in Darknet), decoded with
    relative boxes, then do_nms_obj(.4); boxes with a class prob > thresh are drawn.
    DIVERGES: Darknet ignores `-avg` (its assignment is commented out) and always averages 3 frames.
    The codec follows the extension: MJPG for .avi, mp4v otherwise.
    """
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DataError(f"cannot open video {video}")
    fps = capture.get(cv2.CAP_PROP_FPS) or DEMO_FALLBACK_FPS
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    history: torch.Tensor | None = None          # [avg_frames, A, 5+C, H, W]
    writer = None
    frames, start = 0, time.perf_counter()
    try:
        with torch.no_grad():
            # DARKNET(demo.c:fetch_in_thread): the next frame is letterboxed while this one is detected
            letterboxed = _ordered_map(partial(_with_input, width=net.width, height=net.height),
                                       _video_frames(capture), workers=1)
            for frame, inputs in tqdm(letterboxed, total=total, unit="frame", disable=None if progress else True):
                output = net(inputs[None].to(net.device))[0].float().cpu()
                if history is None:
                    history = output.new_zeros(avg_frames, *output.shape)
                history[frames % avg_frames] = output
                height, width = frame.shape[:2]
                dets = region_detections(net, _average(history), width, height, thresh, 0, hier_thresh)
                dets = do_nms_obj(dets, DEMO_NMS)
                if writer is None:
                    writer = _video_writer(out_path, fps, width, height)
                writer.write(cv2.cvtColor(draw_detections(frame, dets, names, thresh), cv2.COLOR_RGB2BGR))
                frames += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise DataError(f"{video}: no frame could be read")
    return DemoStats(frames, time.perf_counter() - start)


def _average(history: torch.Tensor) -> torch.Tensor:
    """DARKNET(demo.c:avg_predictions): avg = 0, then avg += (float)(1./n) * p for each slot in slot order."""
    weight = np.float32(1. / len(history))
    averaged = torch.zeros_like(history[0])
    for output in history:
        averaged += weight * output
    return averaged


def _video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The (H, W, 3) uint8 RGB frames of a video, until the first that cannot be read."""
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _with_input(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, torch.Tensor]:
    """A frame and its letterboxed (3, height, width) network input."""
    return frame, torch.from_numpy(letterbox_image(image_to_chw(frame), width, height))


def _video_writer(path: str | os.PathLike, fps: float, width: int, height: int) -> cv2.VideoWriter:
    codec = "MJPG" if Path(path).suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"cannot write video {path} with codec {codec}")
    return writer


# ---------------------------------------------------------------------------- shared helpers

def _region_of(net: Darknet) -> RegionLayer:
    region = net.region
    if region is None:
        raise ValueError(f"{net.cfg_path}: evaluation needs a [region] layer (YOLOv2); this cfg has none")
    return region


def _check_images_exist(paths: Sequence[str]) -> None:
    """Fail before any work, naming the first listed image that is not there."""
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise MissingFileError(f"{len(missing)} listed image(s) not found, first: {missing[0]}")



def valid_paths(data: DataConfig, default: str = "data/train.list") -> list[str]:
    """The images of the data file's `valid=` list (DARKNET(detector.c:validate_detector) default)."""
    return read_list(data.get_path("valid", default))
