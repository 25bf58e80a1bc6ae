"""A `[detection]` output -> Darknet's detections: the one pipeline `detect`, `yolo test`, evaluation and video use.

Every comparison with a threshold is done in float32 against ``float32(thresh)``, because Darknet passes
thresholds as C ``float``; the probabilities are the float32 products Darknet computes, so the printed
percentages equal Darknet's.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ...detections import Detection, correct_boxes, do_nms_sort
from ...options import DetectionOptions
from .coder import decode_boxes
from .layer import split_output

if TYPE_CHECKING:
    from .layer import DetectionLayer


def get_detection_detections(output: np.ndarray | Tensor, options: DetectionOptions, w: float, h: float,
                             thresh: float) -> list[Detection]:
    """DARKNET(detection_layer.c:get_detection_detections): one image's (outputs,) [detection] output ->
    ``side*side*num`` detections, box ``i*num + n`` the n-th box of cell i = row*side + col.

    Boxes are cxcywh relative to the network input times (w, h) (see `coder.decode_boxes`); the objectness
    is the box's confidence, NOT thresholded; prob[c] = confidence * P(c | object) where > thresh, else 0.
    """
    flat = torch.as_tensor(np.asarray(output.detach().cpu() if isinstance(output, Tensor) else output,
                                      dtype=np.float32)).reshape(-1)
    class_probs, confidences, raw_boxes = split_output(flat, options)      # [S*S, C], [S*S, num], [S*S, num, 4]
    boxes = decode_boxes(raw_boxes, options.side, bool(options.sqrt), w, h, exact=True).reshape(-1, 4).numpy()
    # DARKNET(detection_layer.c:get_detection_detections): prob = scale * P(class), float32
    probs = (confidences[:, :, None] * class_probs[:, None, :]).reshape(-1, options.classes).numpy()
    probs = np.where(probs > np.float32(thresh), probs, np.float32(0))
    return [Detection(box, float(scale), prob) for box, scale, prob in zip(boxes, confidences.reshape(-1).numpy(), probs)]


def detection_detections(layer: DetectionLayer | DetectionOptions, output: np.ndarray | Tensor, net_w: int,
                         net_h: int, im_w: int, im_h: int, thresh: float, nms: float,
                         letterbox: bool = False) -> list[Detection]:
    """One image's (outputs,) [detection] output -> its detections after `do_nms_sort` (none when nms=0), in
    Darknet's array order, boxes cxcywh relative to the `im_w` x `im_h` image.

    letterbox=False (the image stretched to the net): DARKNET(yolo.c:test_yolo): get_network_boxes(net, 1, 1,
    ...), boxes relative to the net input, which is the image. letterbox=True: DARKNET(detector.c:test_detector)
    hands the image's size to get_detection_detections, so the NMS runs on boxes in its pixels, as here.
    DIVERGES: the boxes are then brought back relative to the image with the letterbox undone; Darknet leaves
    both (its drawn boxes and `detector valid` files are off), the printed lines are the same.
    DIVERGES: AlexeyAB's Darknet prints no box for a [detection] net (its make_network_boxes never sets the
    detections' class count); under -ab the boxes are printed as pjreddie's Darknet prints them.
    """
    options = layer if isinstance(layer, DetectionOptions) else layer.options
    w, h = (im_w, im_h) if letterbox else (1, 1)
    dets = get_detection_detections(output, options, w, h, thresh)
    if nms and dets:
        dets = do_nms_sort(dets, options.classes, nms)
    if not letterbox:
        return dets
    relative = np.stack([det.bbox for det in dets]) / np.array([im_w, im_h, im_w, im_h], dtype=np.float32)
    boxes = correct_boxes(relative.astype(np.float32), im_w, im_h, net_w, net_h)
    return [Detection(box, det.objectness, det.probs) for box, det in zip(boxes, dets)]
