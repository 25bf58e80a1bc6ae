"""Running a detector over a list of images: decoding threads ahead of batched forwards.

Images are decoded and fitted to the network by a few threads running ahead of the network, so
decoding overlaps inference. Boxes handed around are Darknet's: cxcywh relative to the original
image, as `heads.detector.DetectionHead.detections` gives them; pixel corners are made only where a
writer prints them.
"""
from __future__ import annotations

import logging
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

from ..data.files import DataConfig, read_list
from ..detections import Detection
from ..dialect import PJREDDIE, Dialect
from ..errors import DataError, MissingFileError
from ..heads.detector import HIER_THRESH, detection_head, float_on_cpu
from ..image import load_image, network_input
from ..imdecode import STB_PJREDDIE
from ..network import Darknet
from ..progress import progress as progress_of

log = logging.getLogger("pydarknet")
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


def _decoded_input(path: str, width: int, height: int, letterbox: bool, decoder: str,
                   stb_version: str = STB_PJREDDIE) -> tuple[torch.Tensor, int, int] | DataError:
    """Decode an image and fit it to the network: (3, height, width) input, original width and height;
    the DataError instead for an image that cannot be read or fitted (skipped by the caller)."""
    try:
        image = load_image(path, decoder, stb_version=stb_version)
        return torch.from_numpy(network_input(image, width, height, letterbox)), image.shape[1], image.shape[0]
    except DataError as error:
        return error if str(path) in str(error) else DataError(f"{path}: {error}")


def _readable(inputs: Iterable, paths: Sequence[str], unreadable: list[str]) -> Iterator[tuple[int, tuple]]:
    """(list index, decoded input) of the images that decoded; each other one is warned about and skipped.

    DIVERGES: Darknet's load_image exits on the first unreadable image of a long validation list.
    """
    for index, item in enumerate(inputs):
        if isinstance(item, DataError):
            log.warning(f"Warning: {item}; skipped")
            unreadable.append(paths[index])
        else:
            yield index, item
    if unreadable:
        log.warning(f"Warning: {len(unreadable)} of {len(paths)} images could not be read and were skipped")


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
                  dialect: Dialect = PJREDDIE, decoder: str = "stb",
                  unreadable: list[str] | None = None) -> Iterator[ImageDetections]:
    """Detections for every image of `paths`, in list order, as `get_network_boxes` + `do_nms_sort`.

    letterbox: False stretches the image to the network size (`resize_image`), as
        validate_detector_recall does; boxes are relative to the image either way.
    class_map: (K,) WordTree node per output class (a data file's `map=`), see `mapped_class_probs`.
    classes: keep only the first `classes` class probabilities (eval=imagenet), before the NMS.
    nms: 0 skips the NMS. workers: decoding threads (0: decode in this thread, no overlap).
    batch: images per forward pass; only float rounding depends on it.
    progress: report progress on stderr (a tqdm bar on a terminal, else periodic lines; see progress.py).
    dialect: whose decoding (`Dialect.objectness_rule`) before the NMS.
    decoder: the image decoder (`image.load_image`: "stb", Darknet's pixels, or "opencv").
    unreadable: gets the paths of the images that could not be read: each is skipped with a warning
        line on the `pydarknet` logger (a count follows the last); `index` stays the position in `paths`.
    """
    head = detection_head(net, "evaluation")
    _check_images_exist(paths)
    decoded = ordered_map(partial(_decoded_input, width=net.width, height=net.height, letterbox=letterbox,
                                  decoder=decoder, stb_version=dialect.stb_version), paths, workers)
    inputs = _readable(decoded, paths, unreadable if unreadable is not None else [])
    with torch.no_grad(), progress_of(total=len(paths), unit="img", enabled=progress) as bar:
        while chunk := list(islice(inputs, batch)):
            outputs = float_on_cpu(net(torch.stack([x for _, (x, _, _) in chunk]).to(net.device)))   # [B, A, 5+C, H, W] (each)
            for number, (index, (_, width, height)) in enumerate(chunk):
                dets = head.detections(head.image_output(outputs, number), net.width, net.height, width, height,
                                       thresh, nms, hier_thresh, letterbox, dialect, class_map, classes)
                yield ImageDetections(index, paths[index], width, height, dets)
            bar.update(len(chunk))


def _check_images_exist(paths: Sequence[str]) -> None:
    """Fail before any work, naming the first listed image that is not there."""
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise MissingFileError(f"{len(missing)} listed image(s) not found, first: {missing[0]}")


VALID_LIST = "data/train.list"   # DARKNET(detector.c:validate_detector): the valid= default


def valid_paths(data: DataConfig, default: str = VALID_LIST) -> list[str]:
    """The images of the data file's `valid=` list (DARKNET(detector.c:validate_detector) default)."""
    return read_list(data.get_path("valid", default))


def scored_probs(dets: Sequence[Detection]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every nonzero (box, class) prob in print order: box index (M,), class (M,), prob (M,) float32."""
    if not dets:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, np.float32)
    probs = np.stack([det.probs for det in dets])                          # [N, K]
    boxes, classes = np.nonzero(probs)                                     # row-major: box, then class
    return boxes, classes, probs[boxes, classes]
