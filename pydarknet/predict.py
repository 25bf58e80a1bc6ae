"""Inference as Darknet's `detector test` and `classifier predict` do it, as plain Python functions."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from .decode import Detection, do_nms_sort, get_region_detections
from .image import load_image, network_input
from .network import Darknet

NMS = 0.45  # DARKNET(detector.c:test_detector): fixed NMS threshold


def _batch_of_one(net: Darknet, image: np.ndarray) -> torch.Tensor:
    """An (H, W, 3) uint8 RGB image letterboxed to the net's size: a (1, 3, h, w) float batch on its device."""
    return torch.from_numpy(network_input(image, net.width, net.height))[None].to(net.device)


def _as_image(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else load_image(image)


@torch.no_grad()
def detect(net: Darknet, image: np.ndarray | str | os.PathLike, thresh: float = 0.5, hier_thresh: float = 0.5,
           nms: float = NMS) -> list[Detection]:
    """Detections for one image, after Darknet's `do_nms_sort`, in the order Darknet prints them.

    `image` is a path or an (H, W, 3) uint8 RGB array; boxes are cxcywh relative to that image.
    """
    region = net.require_region("detection")
    image = _as_image(image)
    output = net(_batch_of_one(net, image))[0].float().cpu()
    im_h, im_w = image.shape[:2]
    dets = get_region_detections(output, region.options.anchors, net.width, net.height, im_w, im_h,
                                 thresh, hier_thresh, tree=region.tree)
    return do_nms_sort(dets, region.options.classes, nms) if nms else dets


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
