"""Inference as Darknet's `detector test` and `classifier predict` do it, as plain Python functions."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .alexeyab import with_unit_objectness
from .decode import Detection, do_nms_sort, get_region_detections
from .image import image_to_chw, letterbox_image, load_image, resize_image
from .network import Darknet

NMS = 0.45  # DARKNET(detector.c:test_detector): fixed NMS threshold


def network_input(net: Darknet, image: np.ndarray, letterbox: bool = True) -> torch.Tensor:
    """Letterbox (or stretch) an (H, W, 3) uint8 RGB image to the net's size: a (1, 3, h, w) float batch on its device."""
    chw = (letterbox_image if letterbox else resize_image)(image_to_chw(image), net.width, net.height)
    return torch.from_numpy(chw)[None].to(net.device)


def _as_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else load_image(image)


@torch.no_grad()
def detect(net: Darknet, image: np.ndarray | str | os.PathLike, thresh: float = 0.5, hier_thresh: float = 0.5,
           nms: float = NMS, letterbox: bool = True, ab: bool = False) -> list[Detection]:
    """Detections for one image, after Darknet's `do_nms_sort`, in the order Darknet prints them.

    `image` is a path or an (H, W, 3) uint8 RGB array; boxes are cxcywh relative to that image.
    letterbox: False stretches the image to the net; ab: AlexeyAB's decoding (objectness 1).
    """
    region = net.region
    if region is None:
        raise ValueError(f"{net.cfg_path}: detection needs a [region] layer (YOLOv2); this cfg has none")
    image = _as_image(image)
    output = net(network_input(net, image, letterbox))[0].float().cpu()
    im_h, im_w = image.shape[:2]
    fit_w, fit_h = (im_w, im_h) if letterbox else (net.width, net.height)  # a stretch has no letterbox to undo
    dets = get_region_detections(output, region.options.anchors, net.width, net.height, fit_w, fit_h,
                                 thresh, hier_thresh, tree=region.tree)
    if ab:
        dets = with_unit_objectness(dets)
    return do_nms_sort(dets, region.options.classes, nms) if nms else dets


@dataclass(frozen=True)
class Prediction:
    index: int
    probability: float


@torch.no_grad()
def classify(net: Darknet, image: np.ndarray | str | os.PathLike, top: int = 5) -> list[Prediction]:
    """The top-k classes of a classifier for one image, as DARKNET(classifier.c:predict_classifier)."""
    probabilities = net(network_input(net, _as_image(image))).flatten(1)[0].float().cpu()
    tree = net.hierarchy
    if tree is not None:
        # DARKNET(classifier.c:predict_classifier): hierarchy_predictions with only_leaves=1
        probabilities = tree.hierarchy_predictions(probabilities[None], dim=1)[0]
        probabilities[~torch.from_numpy(tree.leaf)] = 0
    # DARKNET(utils.c:top_k): highest first; among equal values the lower index wins
    order = np.argsort(-probabilities.numpy(), kind="stable")[:top]
    return [Prediction(int(i), float(probabilities[i])) for i in order]


def format_predictions(predictions: list[Prediction], names: list[str]) -> list[str]:
    """DARKNET(classifier.c:predict_classifier): `"%5.2f%%: %s"` per line."""
    return [f"{np.float32(p.probability) * np.float32(100):5.2f}%: {names[p.index]}" for p in predictions]
