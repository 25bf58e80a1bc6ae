"""Running a detector over a list of images: decoding threads ahead of batched forwards.

Images are decoded and fitted to the network by a few threads running ahead of the network, so
decoding overlaps inference. Boxes handed around are Darknet's: cxcywh relative to the original
image, as in `decode.get_region_detections`; pixel corners are made only where a writer prints them.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from itertools import islice
from typing import TypeVar

import numpy as np
import torch

from ..alexeyab import with_unit_objectness
from ..data.files import DataConfig, read_list
from ..decode import COORDS, Detection, do_nms_sort, get_region_detections
from ..errors import DataError, MissingFileError
from ..image import load_image, network_input
from ..network import Darknet, require_region
from ..progress import progress as progress_of
from ..tree import WordTree

VALID_THRESH = 0.005   # DARKNET(detector.c:validate_detector): keep nearly every box for the AP curve
VALID_NMS = 0.45       # DARKNET(detector.c:validate_detector)
HIER_THRESH = 0.5      # DARKNET(detector.c:validate_detector): get_network_boxes(..., .5, map, ...)
DEFAULT_WORKERS = min(4, os.cpu_count() or 1)   # decoding threads
DEFAULT_BATCH = 4          # images per forward; only float rounding depends on it
T = TypeVar("T")
R = TypeVar("R")


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


def _decoded_input(path: str, width: int, height: int, letterbox: bool, decoder: str) -> tuple[torch.Tensor, int, int]:
    """Decode an image and fit it to the network: (3, height, width) input, original width and height."""
    image = load_image(path, decoder)
    return torch.from_numpy(network_input(image, width, height, letterbox)), image.shape[1], image.shape[0]


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
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
                  workers: int = DEFAULT_WORKERS, batch: int = DEFAULT_BATCH, progress: bool = False,
                  ab: bool = False, decoder: str = "stb") -> Iterator[ImageDetections]:
    """Detections for every image of `paths`, in list order, as `get_network_boxes` + `do_nms_sort`.

    letterbox: False stretches the image to the network size (`resize_image`), as
        validate_detector_recall does; boxes are relative to the image either way.
    class_map: (K,) WordTree node per output class (a data file's `map=`), see `mapped_class_probs`.
    classes: keep only the first `classes` class probabilities (eval=imagenet), before the NMS.
    nms: 0 skips the NMS. workers: decoding threads (0: decode in this thread, no overlap).
    batch: images per forward pass; only float rounding depends on it.
    progress: report progress on stderr (a tqdm bar on a terminal, else periodic lines; see progress.py).
    ab: AlexeyAB's decoding (`alexeyab.with_unit_objectness`) before the NMS.
    decoder: the image decoder (`image.load_image`: "stb", Darknet's pixels, or "opencv").
    """
    require_region(net, "evaluation")
    _check_images_exist(paths)
    inputs = ordered_map(partial(_decoded_input, width=net.width, height=net.height, letterbox=letterbox,
                                 decoder=decoder), paths, workers)
    index = 0
    with torch.no_grad(), progress_of(total=len(paths), unit="img", enabled=progress) as bar:
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
    region = require_region(net, "evaluation")
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
        dets = with_unit_objectness(dets)
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


def _check_images_exist(paths: Sequence[str]) -> None:
    """Fail before any work, naming the first listed image that is not there."""
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise MissingFileError(f"{len(missing)} listed image(s) not found, first: {missing[0]}")


def valid_paths(data: DataConfig, default: str = "data/train.list") -> list[str]:
    """The images of the data file's `valid=` list (DARKNET(detector.c:validate_detector) default)."""
    return read_list(data.get_path("valid", default))


def scored_probs(dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every nonzero (box, class) prob in print order: box index (M,), class (M,), prob (M,) float32."""
    if not dets:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    probs = np.stack([det.probs for det in dets])                          # [N, K]
    boxes, classes = np.nonzero(probs)                                     # row-major: box, then class
    return boxes, classes, probs[boxes, classes]
