"""Box formats and Darknet's IoU, for numpy arrays and torch tensors alike.

Formats (last dimension of size 4):
* ``cxcywh``: centre x, centre y, width, height (Darknet's `box`);
* ``xyxy``: left, top, right, bottom;
* ``xywh``: left, top, width, height (COCO's `bbox`).
Functions broadcast over the leading dimensions and keep the input's dtype, so float32 inputs
are computed in float32 in Darknet's operation order.
"""
from __future__ import annotations

from types import ModuleType
from typing import Literal, TypeVar

import numpy as np
import torch

Boxes = TypeVar("Boxes", np.ndarray, torch.Tensor)
BoxFormat = Literal["cxcywh", "xyxy"]


def cxcywh_to_xyxy(boxes_cxcywh: Boxes) -> Boxes:
    """``(..., 4)`` cxcywh -> ``(..., 4)`` xyxy."""
    xp = _namespace(boxes_cxcywh)
    x, y, w, h = _unbind(boxes_cxcywh)
    return xp.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], -1)


def xyxy_to_cxcywh(boxes_xyxy: Boxes) -> Boxes:
    """``(..., 4)`` xyxy -> ``(..., 4)`` cxcywh."""
    xp = _namespace(boxes_xyxy)
    x1, y1, x2, y2 = _unbind(boxes_xyxy)
    return xp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)


def xyxy_to_xywh(boxes_xyxy: Boxes) -> Boxes:
    """``(..., 4)`` xyxy -> ``(..., 4)`` COCO xywh (top-left corner, width, height)."""
    xp = _namespace(boxes_xyxy)
    x1, y1, x2, y2 = _unbind(boxes_xyxy)
    return xp.stack([x1, y1, x2 - x1, y2 - y1], -1)


def pixel_xyxy(boxes_cxcywh: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(..., 4)`` cxcywh relative to an image -> ``(N, 4)`` float64 xyxy in its pixels."""
    boxes = np.asarray(boxes_cxcywh).reshape(-1, 4).astype(np.float64) * [width, height, width, height]
    return cxcywh_to_xyxy(boxes)


def convert_boxes(boxes: Boxes, in_fmt: BoxFormat, out_fmt: BoxFormat) -> Boxes:
    """Convert ``(..., 4)`` boxes between the named formats."""
    converters = {("cxcywh", "xyxy"): cxcywh_to_xyxy, ("xyxy", "cxcywh"): xyxy_to_cxcywh}
    for fmt in (in_fmt, out_fmt):
        if fmt not in ("cxcywh", "xyxy"):
            raise ValueError(f"unknown box format {fmt!r}; expected 'cxcywh' or 'xyxy'")
    return boxes if in_fmt == out_fmt else converters[in_fmt, out_fmt](boxes)


def box_iou(a_cxcywh: Boxes, b_cxcywh: Boxes) -> Boxes:
    """Darknet's IoU of broadcastable ``(..., 4)`` cxcywh boxes -> ``(...)``.

    Union is ``a.w*a.h + b.w*b.h - intersection`` from the box sizes, so boxes with negative
    sizes give the same (odd) values as box.c:box_iou; disjoint boxes give 0.
    """
    xp = _namespace(a_cxcywh)
    ax, ay, aw, ah = _unbind(a_cxcywh)
    bx, by, bw, bh = _unbind(b_cxcywh)
    overlap_w = _overlap(xp, ax, aw, bx, bw)
    overlap_h = _overlap(xp, ay, ah, by, bh)
    # DARKNET(box.c:box_intersection): zero as soon as either side is negative
    intersection = xp.where((overlap_w < 0) | (overlap_h < 0), xp.zeros_like(overlap_w), overlap_w * overlap_h)
    union = aw * ah + bw * bh - intersection
    return intersection / union


def pairwise_iou(a_cxcywh: Boxes, b_cxcywh: Boxes) -> Boxes:
    """Darknet IoU of every pair: ``(N, 4)`` x ``(M, 4)`` cxcywh -> ``(N, M)``."""
    return box_iou(a_cxcywh[:, None, :], b_cxcywh[None, :, :])


def grid_centres(offsets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(..., 2, H, W)`` offsets tx, ty of box centres in their grid cells -> x, y ``(..., H, W)`` relative to
    the grid, ``(col + tx) / W`` and ``(row + ty) / H`` in the offsets' dtype (float32, as Darknet's get_*_box)."""
    h, w = offsets.shape[-2:]
    cols = torch.arange(w, dtype=offsets.dtype, device=offsets.device)                     # [W]
    rows = torch.arange(h, dtype=offsets.dtype, device=offsets.device).unsqueeze(1)        # [H, 1]
    return (cols + offsets[..., 0, :, :]) / w, (rows + offsets[..., 1, :, :]) / h


def box_diou(a_cxcywh: Boxes, b_cxcywh: Boxes, beta: float = 0.6) -> Boxes:
    """AlexeyAB's Distance-IoU of broadcastable ``(..., 4)`` cxcywh boxes -> ``(...)``: ``IoU - (d²/c²)^beta``,
    d the distance of the centres, c the diagonal of the smallest box enclosing both.

    DARKNET(AlexeyAB box.c:box_diou / box_diounms): everything float32 but ``pow``, a double rounded to
    float32 (so `beta` is used as the caller's Python float: pass ``float(np.float32(b))`` for a C float);
    boxes whose enclosing box has a zero diagonal give the plain IoU.
    """
    xp = _namespace(a_cxcywh)
    ax, ay, aw, ah = _unbind(a_cxcywh)
    bx, by, bw, bh = _unbind(b_cxcywh)
    enclosing_w = xp.maximum(ax + aw / 2, bx + bw / 2) - xp.minimum(ax - aw / 2, bx - bw / 2)
    enclosing_h = xp.maximum(ay + ah / 2, by + bh / 2) - xp.minimum(ay - ah / 2, by - bh / 2)
    diagonal = enclosing_w * enclosing_w + enclosing_h * enclosing_h
    distance = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
    iou = box_iou(a_cxcywh, b_cxcywh)
    ratio = distance / xp.where(diagonal == 0, xp.ones_like(diagonal), diagonal)
    penalty = (ratio.double() if xp is torch else ratio.astype(np.float64)) ** beta
    penalty = penalty.to(iou.dtype) if xp is torch else penalty.astype(iou.dtype)
    return xp.where(diagonal == 0, iou, iou - penalty)


def intersecting_pairs(boxes_cxcywh: np.ndarray, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j), i < j, of the ``(M, 4)`` cxcywh boxes whose intersection has a positive width and
    height as box.c:box_intersection computes them, sorted by i then j: the only pairs whose IoU (or DIoU, which
    is at most the IoU) can exceed a threshold >= 0. `block` rows at a time: memory O(block * M), not O(M²).
    """
    x, y, w, h = (boxes_cxcywh[:, None, k] for k in range(4))                  # [M, 1] each
    count = len(boxes_cxcywh)
    firsts, seconds = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for start in range(0, count, block):
        rows = slice(start, start + block)
        later = slice(start, None)                                               # columns j >= start
        overlap_w = _overlap(np, x[rows], w[rows], x[later].T, w[later].T)      # [B, M - start]
        overlap_h = _overlap(np, y[rows], h[rows], y[later].T, h[later].T)
        above_diagonal = np.arange(overlap_w.shape[1])[None] > np.arange(overlap_w.shape[0])[:, None]
        i, j = np.nonzero((overlap_w > 0) & (overlap_h > 0) & above_diagonal)
        firsts.append(i + start)
        seconds.append(j + start)
    return np.concatenate(firsts), np.concatenate(seconds)


def _overlap(xp: ModuleType, x1: Boxes, w1: Boxes, x2: Boxes, w2: Boxes) -> Boxes:
    """Length of the 1-D overlap of two centred segments (negative when disjoint)."""
    left = xp.maximum(x1 - w1 / 2, x2 - w2 / 2)
    right = xp.minimum(x1 + w1 / 2, x2 + w2 / 2)
    return right - left


def _unbind(boxes: Boxes) -> tuple[Boxes, Boxes, Boxes, Boxes]:
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have a last dimension of 4, got shape {tuple(boxes.shape)}")
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def _namespace(boxes: Boxes) -> ModuleType:
    return torch if isinstance(boxes, torch.Tensor) else np
