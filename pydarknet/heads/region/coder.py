"""The `[region]` box coder: raw entries <-> boxes, written once for the loss, detections and export.

DARKNET(region_layer.c:get_region_box) serves both the training delta and get_region_detections there;
`decode_boxes` does the same here, and `encode_boxes` is DARKNET(region_layer.c:delta_region_box)'s target.
Entries 0, 1 are the logistic offsets tx, ty of the box centre in its cell; 2, 3 the raw log-ratios tw, th
of its size to the anchor's (anchors are w, h in grid cells).
"""
from __future__ import annotations

import torch
from torch import Tensor

from ...boxes import grid_centres

COORDS = 4   # x, y, w, h entries before objectness in each anchor's block


def decode_boxes(output: Tensor, anchors: Tensor, exact: bool = False) -> Tensor:
    """(B, A, 5+C, H, W) region output -> (B, A, H, W, 4) boxes cx, cy, w, h relative to the network input.

    anchors: (A, 2) w, h in grid cells (float32, as Darknet's `biases`).
    exact=True gives Darknet's numbers for detections: the centre in float32, exp and the anchor product in
    double, as the C expressions promote them, then rounded to float32 (CPU only: needs float64).
    exact=False keeps everything in the output's dtype: the loss (differentiable) and the ONNX graph; the
    sizes then lie within 1 ulp of the exact ones.
    """
    _, num, _, h, w = output.shape
    x, y = grid_centres(output[:, :, :2])                                                   # [B, A, H, W]
    sizes = output[:, :, 2:4]                                                               # [B, A, 2, H, W]
    anchor_wh = anchors.to(output.dtype).view(num, 2, 1, 1)
    if exact:
        # DARKNET(region_layer.c:get_region_box): exp() and the products with the float biases in double
        sizes, anchor_wh = sizes.double(), anchor_wh.double()
    # DIVERGES: with exact=False, exp and the anchor product in the output's dtype (<= 1 ulp from Darknet)
    wh = (torch.exp(sizes) * anchor_wh / sizes.new_tensor([w, h]).view(2, 1, 1)).to(output.dtype)
    return torch.stack((x, y, wh[:, :, 0], wh[:, :, 1]), dim=-1)


def encode_boxes(boxes: Tensor, cols: Tensor, rows: Tensor, anchor_wh: Tensor, w: int, h: int) -> Tensor:
    """(..., 4) boxes cx, cy, w, h relative to the image, in cells (rows, cols) of a w x h grid, against
    anchors (..., 2) -> (..., 4) the targets tx, ty, tw, th of entries 0..3.

    DARKNET(region_layer.c:delta_region_box): x, y are the offsets in the cell, w, h log-ratios to the anchor.
    """
    return torch.stack((boxes[..., 0] * w - cols, boxes[..., 1] * h - rows,
                        torch.log(boxes[..., 2] * w / anchor_wh[..., 0]),
                        torch.log(boxes[..., 3] * h / anchor_wh[..., 1])), dim=-1)
