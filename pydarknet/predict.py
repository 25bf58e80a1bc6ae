"""Inference as Darknet's `detector test` and `classifier predict` do it, as plain Python functions."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .detections import DetectedObject, Detection, detected_objects
from .dialect import PJREDDIE, Dialect
from .heads.detector import HIER_THRESH, detection_head, float_on_cpu
from .image import crop_image, image_to_chw, load_image, network_input, resize_min
from .network import Darknet

NMS = 0.45  # DARKNET(detector.c:test_detector): fixed NMS threshold


def _batch_of_one(net: Darknet, image: np.ndarray, letterbox: bool = True) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB image letterboxed (or stretched) to the net's size: a (1, 3, h, w) float
    batch on its device."""
    return torch.from_numpy(network_input(image, net.width, net.height, letterbox))[None].to(net.device)


def _as_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else load_image(image)


def detect(net: Darknet, image: np.ndarray | str | os.PathLike, thresh: float = 0.5,
           hier_thresh: float = HIER_THRESH, nms: float = NMS, names: Sequence[str] | None = None,
           letterbox: bool | None = None, dialect: Dialect = PJREDDIE) -> list[DetectedObject]:
    """The objects Darknet's `detector test` reports for one image, in its printing order.

    `image` is a path or an (H, W, 3) uint8 RGB array. One `DetectedObject` per (box, class) with
    probability > thresh after Darknet's `do_nms_sort`; `obj.line()` is Darknet's printed line.
    `names` (e.g. `read_names("data/voc.names")`) name the classes; without them an object's name
    is its class index as text ("11"). letterbox, dialect: as `detect_boxes`.
    """
    image = _as_image(image)
    dets = detect_boxes(net, image, thresh, hier_thresh, nms, letterbox, dialect)
    names = names if names is not None else [str(k) for k in range(detection_head(net, "detection").classes)]
    return detected_objects(dets, names, thresh, image.shape[1], image.shape[0])


@torch.no_grad()
def detect_boxes(net: Darknet, image: np.ndarray | str | os.PathLike, thresh: float = 0.5,
                 hier_thresh: float = HIER_THRESH, nms: float = NMS, letterbox: bool | None = None,
                 dialect: Dialect = PJREDDIE) -> list[Detection]:
    """Every box of one image (A*H*W of them, most with zero probabilities) after `do_nms_sort`, in
    Darknet's array order: what drawing, JSON output and evaluation read.

    Boxes are cxcywh relative to the image. dialect: whose Darknet to follow (`dialect.ALEXEYAB`: its
    decoding, every box's objectness 1 before the NMS); letterbox: whether to letterbox the image (False
    stretches it to the net), by default the dialect's choice for this net.
    """
    head = detection_head(net, "detection")
    image = _as_image(image)
    letterbox = dialect.letterbox(net) if letterbox is None else letterbox
    output = head.image_output(net(_batch_of_one(net, image, letterbox)), 0)
    im_h, im_w = image.shape[:2]
    return head.detections(float_on_cpu(output), net.width, net.height, im_w, im_h, thresh, nms, hier_thresh,
                           letterbox, dialect)


@dataclass(frozen=True)
class Prediction:
    index: int
    probability: float


@torch.no_grad()
def classify(net: Darknet, image: np.ndarray | str | os.PathLike, top: int = 5) -> list[Prediction]:
    """The top-k classes of a classifier for one image, as DARKNET(classifier.c:predict_classifier)."""
    probabilities = net(_batch_of_one(net, _as_image(image))).flatten(1)[0].float().cpu()
    tree = net.hierarchy
    if tree is not None:
        # DARKNET(classifier.c:predict_classifier): hierarchy_predictions with only_leaves=1
        probabilities = tree.hierarchy_predictions(probabilities[None], dim=1)[0]
        probabilities[~torch.from_numpy(tree.leaf)] = 0
    return [Prediction(int(i), float(probabilities[i])) for i in top_k(probabilities[None], top)[0]]


def top_k(probs: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the k largest values of probs (B, n), highest first; on ties the lower index
    first (DARKNET(utils.c:top_k))."""
    return torch.sort(probs, dim=1, descending=True, stable=True).indices[:, :k]


def format_predictions(predictions: list[Prediction], names: list[str]) -> list[str]:
    """DARKNET(classifier.c:predict_classifier): `"%5.2f%%: %s"` per line."""
    return [f"{np.float32(p.probability) * np.float32(100):5.2f}%: {names[p.index]}" for p in predictions]


@torch.no_grad()
def label(net: Darknet, image: np.ndarray | str | os.PathLike, classes: int | None = None) -> int:
    """The best class of one image, as DARKNET(classifier.c:label_classifier) picks it.

    The image is resized so its shorter side is the net's width, centre-cropped to the net's size
    (no letterbox), and the first `classes` outputs (all by default) are compared; lowest index on ties.
    """
    resized = resize_min(image_to_chw(_as_image(image)), net.width)
    # DARKNET(classifier.c:label_classifier): C integer division, which truncates toward zero
    dx, dy = int((resized.shape[2] - net.width) / 2), int((resized.shape[1] - net.height) / 2)
    crop = torch.from_numpy(crop_image(resized, dx, dy, net.width, net.height))[None].to(net.device)
    outputs = net(crop).flatten(1)[0].float().cpu()
    return int(torch.argmax(outputs[:classes]))   # DARKNET(utils.c:max_index): the first maximum
