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
    intersection = _intersection(_namespace(a_cxcywh), a_cxcywh, b_cxcywh)
    return intersection / (_areas(a_cxcywh) + _areas(b_cxcywh) - intersection)


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
    ax, ay, _, _ = _unbind(a_cxcywh)
    bx, by, _, _ = _unbind(b_cxcywh)
    enclosing_w, enclosing_h = _enclosing(xp, a_cxcywh, b_cxcywh)
    diagonal = enclosing_w * enclosing_w + enclosing_h * enclosing_h
    distance = (ax - bx) * (ax - bx) + (ay - by) * (ay - by)
    iou = box_iou(a_cxcywh, b_cxcywh)
    ratio = distance / xp.where(diagonal == 0, xp.ones_like(diagonal), diagonal)
    penalty = (ratio.double() if xp is torch else ratio.astype(np.float64)) ** beta
    penalty = penalty.to(iou.dtype) if xp is torch else penalty.astype(iou.dtype)
    return xp.where(diagonal == 0, iou, iou - penalty)


def box_giou(a_cxcywh: Boxes, b_cxcywh: Boxes) -> Boxes:
    """AlexeyAB's Generalized IoU of broadcastable ``(..., 4)`` cxcywh boxes -> ``(...)``: ``IoU - (C - U) / C``,
    C the area of the smallest box enclosing both, U the union (DARKNET(AlexeyAB box.c:box_giou): C == 0 gives
    the IoU)."""
    xp = _namespace(a_cxcywh)
    enclosing_w, enclosing_h = _enclosing(xp, a_cxcywh, b_cxcywh)
    enclosing = enclosing_w * enclosing_h
    iou = box_iou(a_cxcywh, b_cxcywh)
    union = _areas(a_cxcywh) + _areas(b_cxcywh) - _intersection(xp, a_cxcywh, b_cxcywh)
    safe = xp.where(enclosing == 0, xp.ones_like(enclosing), enclosing)
    return xp.where(enclosing == 0, iou, iou - (enclosing - union) / safe)


def box_ciou(a_cxcywh: Boxes, b_cxcywh: Boxes) -> Boxes:
    """AlexeyAB's Complete IoU of broadcastable ``(..., 4)`` cxcywh boxes -> ``(...)``:
    ``IoU - (d²/c² + alpha·v)``, v = 4/π²·(atan(b.w/b.h) - atan(a.w/a.h))², alpha = v / (1 - IoU + v + 1e-6).

    DARKNET(AlexeyAB box.c:box_ciou): v and alpha are computed in double (atan, M_PI, the 1e-6 literal) and
    rounded to float; a zero enclosing diagonal gives the IoU.
    """
    xp = _namespace(a_cxcywh)
    enclosing_w, enclosing_h = _enclosing(xp, a_cxcywh, b_cxcywh)
    diagonal = enclosing_w * enclosing_w + enclosing_h * enclosing_h
    ax, ay, aw, ah = _unbind(a_cxcywh)
    bx, by, bw, bh = _unbind(b_cxcywh)
    safe = xp.where(diagonal == 0, xp.ones_like(diagonal), diagonal)
    ratio = ((ax - bx) * (ax - bx) + (ay - by) * (ay - by)) / safe
    iou = box_iou(a_cxcywh, b_cxcywh)
    angle = xp.arctan(_double(bw / bh)) - xp.arctan(_double(aw / ah))
    aspect = _as(4 / (np.pi * np.pi) * angle * angle, iou)                                  # v, a C float
    alpha = _as(_double(aspect) / (_double(1 - iou + aspect) + 0.000001), iou)
    return xp.where(diagonal == 0, iou, iou - (ratio + alpha * aspect))


IOU_KINDS = ("iou", "giou", "diou", "ciou")


def box_iou_kind(a_cxcywh: Boxes, b_cxcywh: Boxes, kind: str) -> Boxes:
    """AlexeyAB's IoU `kind` (`IOU_KINDS`) of broadcastable ``(..., 4)`` cxcywh boxes -> ``(...)``.

    DARKNET(AlexeyAB box.c:box_iou_kind); its plain IoU is 0 where `box_iou` gives 0/0 (AlexeyAB box.c:box_iou:
    ``if (I == 0 || U == 0) return 0``).
    """
    if kind == "iou":
        return _namespace(a_cxcywh).nan_to_num(box_iou(a_cxcywh, b_cxcywh), nan=0.0)
    kinds = {"giou": box_giou, "diou": box_diou, "ciou": box_ciou}
    if kind not in kinds:
        raise ValueError(f"unknown IoU kind {kind!r}; expected one of {', '.join(IOU_KINDS)}")
    return kinds[kind](a_cxcywh, b_cxcywh)


def dx_box_iou(pred_cxcywh: torch.Tensor, truth_cxcywh: torch.Tensor, kind: str) -> torch.Tensor:
    """AlexeyAB's gradient of an IoU kind (`IOU_KINDS`) w.r.t. the prediction: broadcastable ``(..., 4)`` cxcywh
    torch boxes -> ``(..., 4)`` d/d(x, y, w, h), in the boxes' dtype (float32 as C's floats).

    DARKNET(AlexeyAB box.c:dx_box_iou): its dt, db, dl, dr fields hold dx, dy, dw, dh; w and h are not divided
    by 2 ("we do not divided by 2"); a flipped box takes the other side's gradient; GIoU adds the enclosing-area
    term, DIoU/CIoU the centre-distance term (CIoU also the aspect term), and where the boxes do not intersect
    only that term is kept. CIoU's aspect term is computed in double (C's atan), stored in floats.
    """
    if kind not in IOU_KINDS:
        raise ValueError(f"unknown IoU kind {kind!r}; expected one of {', '.join(IOU_KINDS)}")
    # DARKNET(AlexeyAB yolo_layer.c:delta_yolo_box, gaussian_yolo_layer.c:delta_gaussian_yolo_box): every caller
    # reads a zero width or height of the prediction as 1 ("avoid nan in dx_box_iou")
    sizes = pred_cxcywh[..., 2:]
    pred = torch.cat((pred_cxcywh[..., :2], torch.where(sizes == 0, torch.ones_like(sizes), sizes)), -1)
    px, py, pw, ph = _unbind(pred)
    tx, ty, tw, th = _unbind(truth_cxcywh)
    top, bot, left, right = py - ph / 2, py + ph / 2, px - pw / 2, px + pw / 2
    pt, pb = torch.minimum(top, bot), torch.maximum(top, bot)
    pl, pr = torch.minimum(left, right), torch.maximum(left, right)
    tt, tb, tl, tr = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
    zero = torch.zeros_like(px)
    inter_h = torch.minimum(pb, tb) - torch.maximum(pt, tt)
    inter_w = torch.minimum(pr, tr) - torch.maximum(pl, tl)
    inter = inter_w * inter_h
    union = (pb - pt) * (pr - pl) + (tb - tt) * (tr - tl) - inter
    disjoint = (inter_w <= 0) | (inter_h <= 0)
    # d(area)/d(t, b, l, r), d(intersection)/d(.), d(enclosing area)/d(.)
    d_area = torch.stack((-(pr - pl), pr - pl, -(pb - pt), pb - pt))                       # [4, ...]
    d_inter = torch.stack((torch.where(pt > tt, -inter_w, zero), torch.where(pb < tb, inter_w, zero),
                           torch.where(pl > tl, -inter_h, zero), torch.where(pr < tr, inter_h, zero)))
    d_union = d_area - d_inter
    p = torch.where(union > 0, (union * d_inter - inter * d_union) / (union * union), zero)   # [4, ...] t, b, l, r
    # DARKNET(AlexeyAB box.c:dx_box_iou): "correct corner selection" (only t and l can change)
    p = torch.stack((torch.where(top < bot, p[0], p[1]), p[1], torch.where(left < right, p[2], p[3]), p[3]))
    if kind == "giou":
        enc_w = torch.maximum(pr, tr) - torch.minimum(pl, tl)
        enc_h = torch.maximum(pb, tb) - torch.minimum(pt, tt)
        enc = enc_w * enc_h
        d_enc = torch.stack((torch.where(pt < tt, -enc_w, zero), torch.where(pb > tb, enc_w, zero),
                             torch.where(pl < tl, -enc_h, zero), torch.where(pr > tr, enc_h, zero)))
        term = (enc * d_union - union * d_enc) / (enc * enc)
        p = torch.where(disjoint, term, torch.where(enc > 0, p + term, p))
    gradient = torch.stack((p[2] + p[3], p[0] + p[1], p[3] - p[2], p[1] - p[0]), -1)      # [..., 4] x, y, w, h
    if kind in ("diou", "ciou"):
        outside = (pt < tt, pb > tb, pl < tl, pr > tr)
        enclosing_w, enclosing_h = _enclosing(torch, pred, truth_cxcywh)
        diagonal = enclosing_w * enclosing_w + enclosing_h * enclosing_h
        term = _dx_distance(pred, truth_cxcywh, enclosing_w, enclosing_h, outside)
        if kind == "ciou":
            term = term + _dx_aspect(pred, truth_cxcywh, inter / union)
        gradient = torch.where((diagonal > 0)[..., None], gradient + term, gradient)
        gradient = torch.where(disjoint[..., None], term, gradient)
    return gradient


def _dx_distance(pred: torch.Tensor, truth: torch.Tensor, enclosing_w: torch.Tensor, enclosing_h: torch.Tensor,
                 outside: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``(..., 4)`` DIoU's centre-distance term of dx_box_iou, d(-S/C)/d(x, y, w, h): S the squared centre
    distance, C the squared diagonal of the enclosing box (`enclosing_w`, `enclosing_h`, from the unsorted
    sides); `outside`: where the prediction's sorted top, bottom, left, right lie outside the truth's.

    DARKNET(AlexeyAB box.c:dx_box_iou): for x and y the part from the diagonal's derivative has the wrong sign
    (``2(tx - px)C - 2Cw·dCw_dx·S`` where the derivative has ``+``); kept, it is what trains.
    """
    px, py, _, _ = _unbind(pred)
    tx, ty, _, _ = _unbind(truth)
    top_out, bot_out, left_out, right_out = (flag.to(pred.dtype) for flag in outside)
    c = enclosing_w * enclosing_w + enclosing_h * enclosing_h
    s = (px - tx) * (px - tx) + (py - ty) * (py - ty)
    dcw_dx, dcw_dw = right_out - left_out, 0.5 * right_out + 0.5 * left_out
    dch_dy, dch_dh = bot_out - top_out, 0.5 * bot_out + 0.5 * top_out
    cc = c * c
    # C adds 2·Ch·dCh_dx (= 0) and the like: dropped, they change no float
    return torch.stack(((2 * (tx - px) * c - (2 * enclosing_w * dcw_dx) * s) / cc,
                        (2 * (ty - py) * c - (2 * enclosing_h * dch_dy) * s) / cc,
                        (2 * enclosing_w * dcw_dw) * s / cc,
                        (2 * enclosing_h * dch_dh) * s / cc), -1)


def _dx_aspect(pred: torch.Tensor, truth: torch.Tensor, iou: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` CIoU's aspect term of dx_box_iou, alpha·d(v)/d(w, h): in double as C's atan, v, alpha and the
    derivatives each rounded to the boxes' dtype as C stores them in floats."""
    _, _, pw, ph = _unbind(pred)
    _, _, tw, th = _unbind(truth)
    angle = torch.atan(_double(tw / th)) - torch.atan(_double(pw / ph))
    aspect = _as(4 / (np.pi * np.pi) * angle * angle, pred)
    alpha = _as(_double(aspect) / (_double(1 - iou + aspect) + 0.000001), pred)
    d_w = _as(8 / (np.pi * np.pi) * angle * _double(ph), pred)
    d_h = _as(-8 / (np.pi * np.pi) * angle * _double(pw), pred)
    zero = torch.zeros_like(alpha)
    return torch.stack((zero, zero, alpha * d_w, alpha * d_h), -1)


def _enclosing(xp: ModuleType, a_cxcywh: Boxes, b_cxcywh: Boxes) -> tuple[Boxes, Boxes]:
    """Width and height of the smallest box enclosing both (DARKNET(AlexeyAB box.c:box_c))."""
    ax, ay, aw, ah = _unbind(a_cxcywh)
    bx, by, bw, bh = _unbind(b_cxcywh)
    width = xp.maximum(ax + aw / 2, bx + bw / 2) - xp.minimum(ax - aw / 2, bx - bw / 2)
    height = xp.maximum(ay + ah / 2, by + bh / 2) - xp.minimum(ay - ah / 2, by - bh / 2)
    return width, height


def _intersection(xp: ModuleType, a_cxcywh: Boxes, b_cxcywh: Boxes) -> Boxes:
    """DARKNET(box.c:box_intersection): the overlap area, zero as soon as either side is negative."""
    ax, ay, aw, ah = _unbind(a_cxcywh)
    bx, by, bw, bh = _unbind(b_cxcywh)
    overlap_w = _overlap(xp, ax, aw, bx, bw)
    overlap_h = _overlap(xp, ay, ah, by, bh)
    return xp.where((overlap_w < 0) | (overlap_h < 0), xp.zeros_like(overlap_w), overlap_w * overlap_h)


def _areas(boxes_cxcywh: Boxes) -> Boxes:
    return boxes_cxcywh[..., 2] * boxes_cxcywh[..., 3]


def _double(values: Boxes) -> Boxes:
    return values.double() if isinstance(values, torch.Tensor) else values.astype(np.float64)


def _as(values: Boxes, like: Boxes) -> Boxes:
    return values.to(like.dtype) if isinstance(values, torch.Tensor) else values.astype(like.dtype)


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
