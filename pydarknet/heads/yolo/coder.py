"""The `[yolo]` box coder: activated entries <-> boxes, written once for the loss, detections and export.

DARKNET(AlexeyAB yolo_layer.c:get_yolo_box) serves both the training delta and get_yolo_detections there;
`decode_boxes` does the same here, and `encode_boxes` is DARKNET(AlexeyAB yolo_layer.c:delta_yolo_box)'s
mse target. Entries 0, 1 are the activated (logistic, then `scale_x_y`) offsets of the box centre in its
cell; 2, 3 the size: raw log-ratios tw, th to the anchor's (new_coords=0), or, with new_coords=1, already
logistic values whose square times 4 is that ratio. Anchors are w, h in pixels of the network input.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...boxes import grid_centres

COORDS = 4   # x, y, w, h entries before objectness in each anchor's block


def decode_boxes(output: Tensor, anchors_wh: Tensor, net_w: int, net_h: int, new_coords: bool = False,
                 exact: bool = False) -> Tensor:
    """(B, A, 5+C, H, W) activated [yolo] output -> (B, A, H, W, 4) boxes cx, cy, w, h relative to the
    network input.

    anchors_wh: (A, 2) w, h in network-input pixels of the layer's anchors, ``anchors[mask]``.
    new_coords=0: ``w = exp(tw) * anchor_w / net_w``; new_coords=1: ``w = tw * tw * 4 * anchor_w / net_w``.
    exact=True gives Darknet's numbers for detections: with new_coords=0, exp and the anchor product in
    double, as the C expression promotes them, then rounded to float32 (CPU only: needs float64).
    exact=False keeps everything in the output's dtype: the loss (differentiable) and the ONNX graph; the
    sizes then lie within 1 ulp of the exact ones. new_coords=1 is float32 in C too: both forms are exact.
    """
    num = output.shape[1]
    if anchors_wh.shape != (num, 2):
        raise ValueError(f"anchors_wh must be ({num}, 2) for an output with {num} anchors, "
                         f"got {tuple(anchors_wh.shape)}")
    x, y = grid_centres(output[:, :, :2])                                                   # [B, A, H, W]
    sizes = output[:, :, 2:4]                                                               # [B, A, 2, H, W]
    anchor_wh = anchors_wh.to(output.dtype).view(num, 2, 1, 1)
    net_wh = sizes.new_tensor([net_w, net_h]).view(2, 1, 1)
    if new_coords:
        # DARKNET(AlexeyAB yolo_layer.c:get_yolo_box): float32 tw*tw*4*anchor/net_w, left to right
        wh = sizes * sizes * 4 * anchor_wh / net_wh
    else:
        if exact:
            # DARKNET(AlexeyAB yolo_layer.c:get_yolo_box): exp() of a float is a double, so is the anchor product
            sizes, anchor_wh, net_wh = sizes.double(), anchor_wh.double(), net_wh.double()
        # DIVERGES: with exact=False, exp and the anchor product in the output's dtype (<= 1 ulp from Darknet)
        wh = (torch.exp(sizes) * anchor_wh / net_wh).to(output.dtype)
    return torch.stack((x, y, wh[:, :, 0], wh[:, :, 1]), dim=-1)


def encode_boxes(boxes: Tensor, cols: Tensor, rows: Tensor, anchor_wh: Tensor, w: int, h: int, net_w: int,
                 net_h: int, new_coords: bool = False) -> Tensor:
    """(..., 4) boxes cx, cy, w, h relative to the image, in cells (rows, cols) of a w x h grid, against
    anchors (..., 2) in network-input pixels -> (..., 4) the mse targets tx, ty, tw, th of entries 0..3.

    DARKNET(AlexeyAB yolo_layer.c:delta_yolo_box): x, y are the offsets in the cell; w, h the log-ratio to the
    anchor, or with new_coords=1 sqrt(ratio / 4) (the inverse of `decode_boxes`).
    """
    size_px = boxes[..., 2:4] * boxes.new_tensor([net_w, net_h])                           # [..., 2]
    size = torch.sqrt(size_px / (4 * anchor_wh)) if new_coords else torch.log(size_px / anchor_wh)
    return torch.stack((boxes[..., 0] * w - cols, boxes[..., 1] * h - rows, size[..., 0], size[..., 1]), dim=-1)
