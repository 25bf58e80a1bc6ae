"""The `[detection]` box coder: raw box entries <-> boxes, written once for detections (and the loss to come).

Entries 0, 1 are the offsets x, y of the box centre in its cell of the `side` x `side` grid; 2, 3 the box's
w, h relative to the image, or with `sqrt=1` their square roots. DARKNET(detection_layer.c:
get_detection_detections) is `decode_boxes`; `encode_boxes` gives the values the training delta pulls the
entries toward (DARKNET(detection_layer.c:forward_detection_layer), whose truths data.c:fill_truth_region
already holds as cell offsets).
"""
from __future__ import annotations

import torch
from torch import Tensor


def _cell_offsets(cells: int, side: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """(cells,) column and row of cell i = row*side + col."""
    index = torch.arange(cells)
    return (index % side).to(dtype), (index // side).to(dtype)


def decode_boxes(boxes: Tensor, side: int, sqrt: bool, w: float = 1, h: float = 1, exact: bool = False) -> Tensor:
    """(..., S*S, num, 4) raw boxes of a [detection] output -> (..., S*S, num, 4) cx, cy, w, h relative to the
    network input, times (w, h).

    DARKNET(detection_layer.c:get_detection_detections): x = (x + col) / side * w and y alike, in float32 (in
    the order -Ofast evaluates it, see below); w = pow(w, 2) * w_scale with sqrt=1, else pow(w, 1) * w_scale.
    `w`, `h` are what Darknet is given: 1, 1 from yolo.c:test_yolo, the image's size from
    detector.c:test_detector (boxes in its pixels).
    exact=True computes the sizes as the C expression does, pow() and the product in double, then float32
    (CPU only: needs float64); exact=False keeps them in the boxes' dtype (differentiable; within 1 ulp).
    """
    cells = boxes.shape[-3]
    cols, rows = _cell_offsets(cells, side, boxes.dtype)
    # DARKNET(detection_layer.c:get_detection_detections): built -Ofast, gcc hoists w/side as w * (1.f/side)
    # (float32), so x = (x + col) * (w * (1/side)): the pack's boxes are bit-identical only in this form
    inverse_side = boxes.new_tensor(1.0) / side
    x = (boxes[..., 0] + cols[:, None]) * (boxes.new_tensor(w) * inverse_side)              # [..., S*S, num]
    y = (boxes[..., 1] + rows[:, None]) * (boxes.new_tensor(h) * inverse_side)
    sizes = boxes[..., 2:4].double() if exact else boxes[..., 2:4]                          # [..., S*S, num, 2]
    if sqrt:
        sizes = sizes * sizes
    sizes = (sizes * sizes.new_tensor([float(w), float(h)])).to(boxes.dtype)
    return torch.stack((x, y, sizes[..., 0], sizes[..., 1]), dim=-1)


def encode_boxes(boxes: Tensor, cols: Tensor, rows: Tensor, side: int, sqrt: bool) -> Tensor:
    """(..., 4) boxes cx, cy, w, h relative to the image, in cells (rows, cols) of the side x side grid ->
    (..., 4) the values the box entries are trained toward: the offsets in the cell, and the sizes (their
    square roots with sqrt=1). The inverse of `decode_boxes` with w = h = 1."""
    wh = torch.sqrt(boxes[..., 2:4]) if sqrt else boxes[..., 2:4]
    return torch.stack((boxes[..., 0] * side - cols, boxes[..., 1] * side - rows, wh[..., 0], wh[..., 1]), dim=-1)
