"""A `[region]` output -> Darknet's detections: the one pipeline `detect`, evaluation, video and export use.

Every comparison with a threshold is done in float32 against ``float32(thresh)``, because Darknet passes
thresholds as C ``float``; products are float32 in Darknet's order, so the probabilities (and the printed
percentages) equal Darknet's up to its own float rounding.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from torch import Tensor

from ...detections import Detection, correct_boxes, do_nms_sort
from ...dialect import PJREDDIE, Dialect
from ...errors import DataError
from .coder import COORDS, decode_boxes

if TYPE_CHECKING:
    from ...tree import WordTree
    from .layer import RegionLayer

HIER_THRESH = 0.5   # DARKNET(detector.c:test_detector / validate_detector): get_network_boxes(..., .5, ...)


def decode_region(output: Tensor, anchors: Tensor, tree: WordTree | None = None,
                  exact: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """A region output as per-anchor-cell boxes and probabilities, thresholded nowhere.

    output: (B, A, 5+C, H, W) from `RegionLayer`; anchors: (A, 2) anchor w, h in grid cells.
    Returns boxes (B, N, 4) cxcywh relative to the network input (before the letterbox correction),
    objectness (B, N) and probabilities (B, N, C), N = A*H*W; box ``a*H*W + y*W + x`` is anchor ``a`` at
    cell (y, x), Darknet's order. Probabilities are objectness x P(class | object) for a softmax head and,
    for a WordTree head, the absolute hierarchy probabilities P(node) (tree.c:hierarchy_predictions), which
    is what Darknet's top-prediction descent reads. exact: as `coder.decode_boxes` (True for Darknet's
    detections, False for the ONNX graph).
    """
    batch, num, _, h, w = output.shape
    boxes = decode_boxes(output, anchors, exact).reshape(batch, num * h * w, 4)
    objectness = output[:, :, COORDS]                                                       # [B, A, H, W]
    class_probs = output[:, :, COORDS + 1:]                                                 # [B, A, C, H, W]
    if tree is None:
        # DARKNET(region_layer.c:get_region_detections): prob = objectness * P(class), float32
        probs = objectness.unsqueeze(2) * class_probs
    else:
        probs = tree.hierarchy_predictions(class_probs, dim=2)
    classes = class_probs.shape[2]
    probs = probs.permute(0, 1, 3, 4, 2).reshape(batch, num * h * w, classes)
    return boxes, objectness.reshape(batch, num * h * w), probs


def get_region_detections(region_out: np.ndarray | Tensor, anchors: Sequence[float], net_w: int, net_h: int,
                          im_w: int, im_h: int, thresh: float, hier_thresh: float = HIER_THRESH,
                          tree: WordTree | None = None, relative: bool = True,
                          dialect: Dialect = PJREDDIE, letterbox: bool = True) -> list[Detection]:
    """DARKNET(region_layer.c:get_region_detections): one image's region output -> ``A*H*W`` detections.

    region_out: (A, 5+classes, H, W) region-layer output (entries 0,1,4 logistic, 2,3 raw, 5.. softmaxed
        class probabilities, or group-softmaxed ones with a WordTree).
    anchors: flat ``w0, h0, w1, h1, ...`` in grid cells ([region] ``anchors``).
    Detection ``a*H*W + y*W + x`` is anchor ``a`` at cell (y, x). With a ``tree``, each box gets one class,
    tree.c:hierarchy_top_prediction's, with probability = objectness (map-less YOLO9000 test mode); under a
    dialect with `tree_last_above_half` (AlexeyAB's), `alexeyab_tree_probs`'s.
    Not supported (not used by YOLOv2 detection): ``background``, ``coords > 4`` masks and the batch-2
    flip averaging; a class ``map`` is `mapped_class_probs`.
    """
    output = _check_region(region_out, anchors)
    boxes, scale, probs = (t[0] for t in decode_region(output[None], torch.tensor(anchors).view(-1, 2), tree,
                                                       exact=True))
    boxes = correct_boxes(boxes.numpy(), im_w, im_h, net_w, net_h, letterbox, relative)
    t = np.float32(thresh)
    scale = scale.numpy()                                                                  # [N]
    objectness = np.where(scale > t, scale, np.float32(0))
    if tree is None:
        # DARKNET(region_layer.c:get_region_detections): boxes below the objectness thresh keep all-zero probs
        probs = probs.numpy()
        probs = np.where((probs > t) & (objectness[:, None] != 0), probs, np.float32(0))
    elif dialect.tree_last_above_half:
        probs = alexeyab_tree_probs(probs, objectness)
    else:
        probs = _tree_probs(probs, objectness, hier_thresh, tree)
    return [Detection(box, float(obj), prob) for box, obj, prob in zip(boxes, objectness, probs)]


def _check_region(region_out: np.ndarray | Tensor, anchors: Sequence[float]) -> Tensor:
    """The region output as a float32 (A, 5+C, H, W) CPU tensor, checked against the anchors."""
    output = torch.as_tensor(np.asarray(region_out.detach().cpu() if isinstance(region_out, Tensor) else region_out,
                                        dtype=np.float32))
    if output.dim() != 4 or output.shape[1] < COORDS + 2:
        raise ValueError(f"region output must be (num, 5+classes, H, W), got shape {tuple(output.shape)}")
    if len(anchors) != 2 * output.shape[0]:
        raise ValueError(f"{len(anchors)} anchor values for num={output.shape[0]} anchors (need {2 * output.shape[0]})")
    return output


def _tree_probs(p_abs: Tensor, objectness: np.ndarray, hier_thresh: float, tree: WordTree) -> np.ndarray:
    """(N, C) absolute WordTree probabilities -> (N, C), one nonzero class per box."""
    top = tree.top_prediction(p_abs, hier_thresh, dim=1).numpy()                           # [N]
    probs = np.zeros(p_abs.shape, dtype=np.float32)
    # DARKNET(region_layer.c:get_region_detections): without a map the printed prob is the objectness
    probs[np.arange(top.size), top] = objectness
    return probs


def alexeyab_tree_probs(p_abs: Tensor, objectness: np.ndarray) -> np.ndarray:
    """(N, C) absolute WordTree probabilities -> (N, C): per box at most one nonzero class, the last node
    (highest index) whose absolute probability is above .5, with that probability, where objectness (N,) != 0.

    DARKNET(AlexeyAB region_layer.c:get_region_boxes): without a map, after hierarchy_predictions it walks the
    classes from the last down, keeps the first ``p > .5`` and zeroes the rest; the box's probability is that
    ``p`` (not the objectness) when ``objectness > thresh``. No -hier threshold, no hierarchy_top_prediction.
    """
    p = p_abs.numpy()
    above = p > np.float32(0.5)
    last = p.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)                              # [N]
    keep = above.any(axis=1) & (objectness != 0)
    probs = np.zeros(p.shape, dtype=np.float32)
    rows = np.flatnonzero(keep)
    probs[rows, last[rows]] = p[rows, last[rows]]
    return probs


def mapped_class_probs(output: Tensor, tree: WordTree, class_map: np.ndarray, thresh: float) -> np.ndarray:
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


def region_detections(layer: RegionLayer, output: Tensor, net_w: int, net_h: int, im_w: int, im_h: int,
                      thresh: float, nms: float, hier_thresh: float = HIER_THRESH, letterbox: bool = True,
                      class_map: np.ndarray | None = None, classes: int | None = None,
                      dialect: Dialect = PJREDDIE) -> list[Detection]:
    """One image's (A, 5+C, H, W) region output -> its detections after `do_nms_sort` (none when nms=0).

    im_w, im_h: the original image; letterbox: whether it was letterboxed (else stretched to the net, whose
    boxes need no correction). class_map: (K,) WordTree node per output class (a data file's `map=`), see
    `mapped_class_probs`. classes: keep only the first `classes` class probabilities (eval=imagenet), before
    the NMS. dialect: whose decoding (AlexeyAB's sets every objectness to 1 before the NMS).
    """
    dets = get_region_detections(output, layer.options.anchors, net_w, net_h, im_w, im_h, thresh, hier_thresh,
                                 tree=layer.tree, dialect=dialect, letterbox=letterbox)
    # DARKNET(region_layer.c:get_region_detections): a map is only used with a WordTree
    if class_map is not None and layer.tree is not None:
        probs = mapped_class_probs(output, layer.tree, class_map, thresh)
        dets = [Detection(det.bbox, det.objectness, prob) for det, prob in zip(dets, probs)]
    if classes is not None:
        # NMS and printing see only the first `classes` probs
        dets = [Detection(det.bbox, det.objectness, det.probs[:classes]) for det in dets]
    dets = dialect.objectness_rule(dets)
    return do_nms_sort(dets, len(dets[0].probs), nms) if nms and dets else dets
