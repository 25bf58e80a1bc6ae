"""AlexeyAB's `[Gaussian_yolo]` loss, as DARKNET(AlexeyAB gaussian_yolo_layer.c:forward_gaussian_yolo_layer) writes
`l.delta`.

Each layer's ``output`` and ``delta`` are (B, A, 9+C, H, W) in the layer's entry order (`gaussian.py`): x, sigma_x,
y, sigma_y, w, sigma_w, h, sigma_h, objectness, classes. ``truths`` are (B, T, 5) rows ``x, y, w, h, class``
relative to the network input (a row with x == 0 ends an image's list). Deltas are Darknet's *negative* gradient
w.r.t. the activated output; Darknet's backward adds them to the layer's input as they are (no logistic factor).

Darknet writes the deltas in two passes per image: every prediction (no-object, ignore and `truth_thresh` rules),
then every truth in list order at the cell of its centre and its best anchor (and, with `iou_thresh` < 1, every
other anchor of the layer that fits it). Box deltas of several truths at one prediction add up and are then divided
by the number of classes whose delta is positive; the objectness keeps the last truth's write; the class deltas
depend on what was written before (`_write_classes`), so those are written in rounds: round r gives each
prediction its r-th truth.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ...boxes import box_giou, box_iou_kind, dx_box_iou
from ...options import FLT_MAX
from ...tree import read_map
from ..darknet_sums import c_float, squared_magnitude
from .gaussian import ENTRIES, MEANS, OBJECTNESS, SIGMAS, GaussianYoloLayer, decode_gaussian_yolo
from .gaussian import GaussianYoloOptions as Options
from .loss import (CLASS_MATCH_PROB, Writes, YoloLoss, anchor_shape_ious, average_box_deltas, best_truths,
                   class_multipliers, region_line, slot_ranks)

if TYPE_CHECKING:
    from ...network import Darknet

CLASSES = ENTRIES                 # first class entry
BOX = slice(0, OBJECTNESS)        # the 4 means and 4 sigmas
SIGMA_CONST = 0.3                 # DARKNET(delta_gaussian_yolo_box): added to each sigma in the Gaussian's density
EPSILON = 1e-9                    # DARKNET(delta_gaussian_yolo_box): `epsi`
MSE, IOU = "mse", "iou"


def gaussian_yolo_loss(net: Darknet, outputs: dict[int, Tensor], truths: Tensor, seen: int) -> YoloLoss:
    """Darknet's deltas, costs and printed lines of every [Gaussian_yolo] layer.

    outputs: layer index -> its activated output (B, A, 9+C, H, W) (`GaussianYoloLayer.forward`); truths: (B, T, 5);
    seen: unused (the layer's loss does not depend on it), kept for the heads' common signature.
    """
    deltas, costs, lines = {}, {}, []
    for index in sorted(outputs):
        layer = net.layers[index]
        if not isinstance(layer, GaussianYoloLayer):
            raise ValueError(f"layer {index} is {type(layer).__name__}, not [Gaussian_yolo]")
        with torch.no_grad():
            deltas[index], costs[index], line = _layer_loss(layer, index, outputs[index].detach(), truths,
                                                            net.width, net.height)
        lines.append(line)
    return YoloLoss.of_layers(deltas, costs, lines)


def _layer_loss(layer: GaussianYoloLayer, index: int, out: Tensor, truths: Tensor, net_w: int,
                net_h: int) -> tuple[Tensor, float, str]:
    """One layer's delta (as `out`), `*l.cost` and printed line."""
    o = layer.options
    batch, num, entries, h, w = out.shape
    if entries != ENTRIES + o.classes or num != len(layer.mask):
        raise ValueError(f"[Gaussian_yolo] layer {index}: output {tuple(out.shape)} is not "
                         f"(B, {len(layer.mask)}, {ENTRIES + o.classes}, H, W)")
    out = out.float()
    # DARKNET(forward_gaussian_yolo_layer): rows up to `max`, up to the first x == 0
    truths = truths[:, :o.max].to(device=out.device, dtype=torch.float32)
    rows = torch.cumprod(truths[..., 0] != 0, dim=1).bool()
    used = max(1, int(rows.sum(1).max()) if rows.numel() else 0)   # rows are a prefix: keeps (B, A, H, W, T) small
    truths, rows = truths[:, :used], rows[:, :used]
    # DIVERGES: Darknet warns and skips such a truth in the prediction pass, then writes past its class entries
    bad = rows & (truths[..., 4] >= o.classes)
    if bad.any():
        raise ValueError(f"[Gaussian_yolo] layer {index}: a truth has class {int(truths[..., 4][bad][0])}, "
                         f"but classes={o.classes} (labels count from 0)")
    class_ids = truths[..., 4].long().clamp(min=0)
    if o.map:
        # DARKNET(forward_gaussian_yolo_layer): `if (l.map) class_id = l.map[class_id]` for the deltas
        class_ids = torch.as_tensor(read_map(o.map), device=out.device)[class_ids]
    multipliers = class_multipliers(o, out)
    anchors = layer.anchors.to(out.device)                                            # [total, 2] pixels
    mask = torch.as_tensor(layer.mask, device=out.device)
    pred = _predicted_boxes(out, anchors[mask], net_w, net_h, o.yolo_point)          # [B, A, H, W, 4]
    delta = torch.zeros_like(out)

    _prediction_pass(out, pred, truths, rows, class_ids, anchors, mask, multipliers, o, net_w, net_h, delta)
    pairs = _truth_assignments(truths, rows, class_ids, anchors, mask, o, h, w, net_w, net_h)
    iou, obj = _truth_pass(out, pred, pairs, anchors, multipliers, o, net_w, net_h, delta)
    average_box_deltas(delta, OBJECTNESS, only_with_objectness=False)

    cost = squared_magnitude(delta)
    losses = _loss_parts(delta, cost, batch)
    line = (region_line(index, iou, out[pairs.at(CLASSES + pairs.cls)], obj, out[:, :, OBJECTNESS]) + ", "
            + ", ".join(f"{name} = {c_float(value, 2)}" for name, value in losses.items()) + " ")
    return delta, float(cost), line


def _predicted_boxes(out: Tensor, anchors_wh: Tensor, net_w: int, net_h: int, yolo_point: str) -> Tensor:
    """(B, A, 9+C, H, W) output -> (B, A, H, W, 4) predicted boxes cxcywh relative to the net input, through the
    head's one coder (the batch folded into its anchors)."""
    b, a, e, h, w = out.shape
    boxes, _, _ = decode_gaussian_yolo(out.reshape(b * a, e, h, w), anchors_wh.repeat(b, 1), net_w, net_h,
                                       yolo_point)                                    # [H*W*B*A, 4]
    return boxes.view(h, w, b, a, 4).permute(2, 3, 0, 1, 4)


def _prediction_pass(out: Tensor, pred: Tensor, truths: Tensor, rows: Tensor, class_ids: Tensor, anchors: Tensor,
                     mask: Tensor, multipliers: Tensor, o: Options, net_w: int, net_h: int, delta: Tensor) -> None:
    """No-object, ignore and truth_thresh deltas of every prediction."""
    obj = out[:, :, OBJECTNESS]                                                       # [B, A, H, W]
    best_iou, best_t = best_truths(pred, truths, rows)                                # [B, A, H, W]
    # DARKNET(compare_gaussian_yolo_class): any class probability above .25, whatever the truth's class
    class_match = (out[:, :, CLASSES:] > CLASS_MATCH_PROB).any(2)
    best_class = torch.gather(class_ids, 1, best_t.flatten(1)).view_as(best_t)        # [B, A, H, W]

    delta[:, :, OBJECTNESS] = o.obj_normalizer * (0 - obj)
    ignored = class_match & (best_iou > o.ignore_thresh)
    smooth_target = best_iou * best_iou
    if o.objectness_smooth:
        delta[:, :, OBJECTNESS] = torch.where(ignored, o.obj_normalizer * (smooth_target - obj), delta[:, :, OBJECTNESS])
        _write_classes(delta, out, ignored.nonzero(as_tuple=True), best_class[ignored], multipliers, o)
    else:
        delta[:, :, OBJECTNESS] = torch.where(ignored, 0.0, delta[:, :, OBJECTNESS])

    hit = best_iou > o.truth_thresh
    if hit.any():
        target = smooth_target if o.objectness_smooth else torch.ones_like(obj)
        delta[:, :, OBJECTNESS] = torch.where(hit, o.obj_normalizer * (target - obj), delta[:, :, OBJECTNESS])
        b, a, j, i = hit.nonzero(as_tuple=True)
        cls = best_class[b, a, j, i]
        _write_classes(delta, out, (b, a, j, i), cls, multipliers, o)
        if o.objectness_smooth:
            delta[b, a, CLASSES + cls, j, i] = multipliers[cls] * (smooth_target[b, a, j, i] - out[b, a, CLASSES + cls, j, i])
        pairs = Writes(b, a, j, i, mask[a], truths[b, best_t[b, a, j, i], :4], cls)
        _add_box_deltas(out, pred, pairs, anchors[mask[a]], multipliers[cls], o, net_w, net_h, delta)


def _truth_assignments(truths: Tensor, rows: Tensor, class_ids: Tensor, anchors: Tensor, mask: Tensor, o: Options, h: int,
                       w: int, net_w: int, net_h: int) -> Writes:
    """Every truth's prediction at the cell of its centre (corner with `yolo_point`) and its best anchor if the layer
    has it, then with `iou_thresh` < 1 every other anchor of the layer that fits it, in Darknet's write order."""
    b, t = rows.nonzero(as_tuple=True)
    box = truths[b, t, :4]                                                            # [K, 4]
    i = _cell(box[:, 0], box[:, 2], w, o.yolo_point)
    j = _cell(box[:, 1], box[:, 3], h, o.yolo_point)
    # DARKNET(forward_gaussian_yolo_layer): the anchor is chosen by shape only (both boxes centred at 0)
    best_n = anchor_shape_ious(anchors, net_w, net_h, box, IOU).argmax(1)                               # [K]
    layer_anchor = torch.full((len(anchors),), -1, dtype=torch.long, device=box.device)
    layer_anchor[mask] = torch.arange(len(mask), device=box.device)
    chosen = torch.nn.functional.one_hot(best_n, len(anchors)).bool()                                  # [K, total]
    if o.iou_thresh < 1:
        chosen |= anchor_shape_ious(anchors, net_w, net_h, box, o.iou_thresh_kind) > o.iou_thresh
    chosen &= layer_anchor >= 0
    k, n = chosen.nonzero(as_tuple=True)
    # DARKNET(forward_gaussian_yolo_layer): truths in list order, each its best anchor first, then the others
    rank = torch.where(n == best_n[k], 0, 1 + n)
    order = torch.sort((b[k] * truths.shape[1] + t[k]) * (len(anchors) + 1) + rank).indices
    k, n = k[order], n[order]
    return Writes(b[k], layer_anchor[n], j[k], i[k], n, box[k], class_ids[b[k], t[k]])


def _cell(centre: Tensor, size: Tensor, cells: int, yolo_point: str) -> Tensor:
    """The truncated cell of a truth's centre (or of its corner, clamped to the grid, with `yolo_point`)."""
    if yolo_point == "center":
        # DIVERGES: a centre at exactly 1.0 is kept in the last cell; Darknet writes past the row
        return (centre * cells).long().clamp(max=cells - 1)
    corner = centre - size / 2 if yolo_point == "left_top" else centre + size / 2
    return (corner * cells).clamp(0, cells - 1).long()


def _truth_pass(out: Tensor, pred: Tensor, pairs: Writes, anchors: Tensor, multipliers: Tensor, o: Options, net_w: int,
                net_h: int, delta: Tensor) -> tuple[Tensor, Tensor]:
    """The deltas of every assignment; returns their IoUs (K,) and objectness (K,) for the printed line."""
    class_multiplier = multipliers[pairs.cls]
    iou = _add_box_deltas(out, pred, pairs, anchors[pairs.n], class_multiplier, o, net_w, net_h, delta)
    rank, last = slot_ranks(pairs, out.shape)
    # DARKNET(forward_gaussian_yolo_layer): the last truth's objectness write wins
    final = pairs.select(last)
    delta[final.at(OBJECTNESS)] = class_multiplier[last] * o.obj_normalizer * (1 - out[final.at(OBJECTNESS)])
    # class deltas depend on earlier writes at the same prediction: round r writes each prediction's r-th truth
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        now = pairs.select(rank == r)
        _write_classes(delta, out, (now.b, now.a, now.j, now.i), now.cls, multipliers, o)
    return iou, out[pairs.at(OBJECTNESS)]


def _write_classes(delta: Tensor, out: Tensor, where: tuple[Tensor, ...], class_id: Tensor, multipliers: Tensor,
                   o: Options) -> None:
    """DARKNET(delta_gaussian_yolo_class) at distinct predictions (b, a, j, i): where the first class's delta is
    already non-zero only the truth's class is written (times its multiplier); else every class, toward the
    (smoothed) one-hot vector, the truth's class times multiplier * cls_normalizer with `counters_per_class`."""
    b, a, j, i = where
    if not len(b):
        return
    eps = o.label_smooth_eps
    positive = 1.0 * (1 - eps) + 0.5 * eps if eps else 1.0
    negative = 0.5 * eps if eps else 0.0
    probs = out[b, a, CLASSES:, j, i]                                                # [K, C]
    written = delta[b, a, CLASSES, j, i] != 0
    one_hot = torch.nn.functional.one_hot(class_id, o.classes).bool()
    full = torch.where(one_hot, positive, negative) - probs
    if o.counters_per_class:
        # DARKNET(delta_gaussian_yolo_class): cls_normalizer applies only with counters_per_class, only here
        full = torch.where(one_hot, full * (multipliers[class_id] * o.cls_normalizer)[:, None], full)
    single = torch.where(one_hot, (positive - probs) * multipliers[class_id][:, None], delta[b, a, CLASSES:, j, i])
    delta[b, a, CLASSES:, j, i] = torch.where(written[:, None], single, full)


def _add_box_deltas(out: Tensor, pred: Tensor, pairs: Writes, anchor_wh: Tensor, class_multiplier: Tensor, o: Options,
                    net_w: int, net_h: int, delta: Tensor) -> Tensor:
    """DARKNET(delta_gaussian_yolo_box) for every assignment, added into `delta` (accumulate=1); returns each one's
    IoU (the GIoU unless iou_loss=mse, as Darknet's)."""
    b, a, j, i = pairs.b, pairs.a, pairs.j, pairs.i
    h, w = out.shape[-2:]
    entries = out[b, a, BOX, j, i]                                                   # [K, 8]
    box_pred = pred[b, a, j, i]                                                      # [K, 4]
    truth = pairs.box
    scale = (2 - truth[:, 2] * truth[:, 3]).double()
    # DARKNET(delta_gaussian_yolo_box): returns the GIoU for every iou_loss but mse (the line's IoU and recalls)
    iou = box_iou_kind(box_pred, truth, IOU) if o.iou_loss == MSE else box_giou(box_pred, truth)
    deltas = _gaussian_deltas(entries, truth, anchor_wh, i, j, w, h, net_w, net_h, scale, o.yolo_point)  # [K, 8]
    if o.iou_loss != MSE:
        # DARKNET(delta_gaussian_yolo_box): the IoU-kind gradient replaces the means' deltas, unscaled
        deltas[:, list(MEANS)] = _iou_gradient(box_pred, truth, o.iou_loss, o.yolo_point, entries[:, list(MEANS[2:])])
    normalizer = torch.tensor([o.iou_normalizer, o.uc_normalizer] * 4, dtype=torch.float64, device=out.device)
    deltas = deltas * normalizer
    deltas[:, list(MEANS)] *= class_multiplier.double()[:, None]
    # DARKNET(fix_nan_inf): nan and inf deltas become 0
    deltas = torch.where(torch.isfinite(deltas), deltas, torch.zeros_like(deltas))
    if o.max_delta != FLT_MAX:
        deltas = deltas.clamp(-o.max_delta, o.max_delta)
    entry = torch.arange(OBJECTNESS, device=out.device)
    delta.index_put_((b[:, None], a[:, None], entry, j[:, None], i[:, None]), deltas.float(), accumulate=True)
    return iou


def _gaussian_deltas(entries: Tensor, truth: Tensor, anchor_wh: Tensor, i: Tensor, j: Tensor, w: int, h: int,
                     net_w: int, net_h: int, scale: Tensor, yolo_point: str) -> Tensor:
    """(K, 8) DARKNET(delta_gaussian_yolo_box)'s uncertainty-aware deltas of x, sigma_x, y, ..., sigma_h: the
    negative gradient of -log N(target; mean, sigma + .3)·scale/2, with the sigmas' own 1/sigma factors as written."""
    tx = truth[:, 0] * w - i
    ty = truth[:, 1] * h - j
    if yolo_point != "center":
        sign = -1 if yolo_point == "left_top" else 1
        tx = (truth[:, 0] + sign * truth[:, 2] / 2) * w - i
        ty = (truth[:, 1] + sign * truth[:, 3] / 2) * h - j
    # DARKNET: log() of the float truth*net size / anchor, stored in a float
    tw = torch.log((truth[:, 2] * net_w / anchor_wh[:, 0]).double()).float()
    th = torch.log((truth[:, 3] * net_h / anchor_wh[:, 1]).double()).float()
    diff = torch.stack((tx, ty, tw, th), 1) - entries[:, list(MEANS)]                     # [K, 4] float, as C's dx
    sigma = entries[:, list(SIGMAS)].double()
    in_exp = (diff / entries[:, list(SIGMAS)]).double()
    in_exp_2 = (in_exp * in_exp).float().double()
    density = torch.exp(in_exp_2 * -0.5) / (math.sqrt(math.pi * 2.0) * (sigma + SIGMA_CONST))
    density = density.float().double()
    temp = 0.5 * (1.0 / (density + EPSILON)) * density * scale[:, None]
    mean_delta = temp * in_exp * (1.0 / sigma)
    sigma_delta = temp * (in_exp_2 / sigma - 1.0 / (sigma + SIGMA_CONST))
    return torch.stack((mean_delta, sigma_delta), 2).flatten(1)                      # x, σx, y, σy, ...


def _iou_gradient(pred: Tensor, truth: Tensor, kind: str, yolo_point: str, raw_wh: Tensor) -> Tensor:
    """(K, 4) double deltas of x, y, w, h from DARKNET(box.c:dx_box_iou) (`boxes.dx_box_iou`), moved to the corner
    with `yolo_point`, w and h times exp(raw w, h) (the box's size is exp of those entries)."""
    dx, dy, dw, dh = dx_box_iou(pred, truth, kind).unbind(1)
    if yolo_point != "center":
        sign = -1 if yolo_point == "left_top" else 1
        dx, dy = dx + sign * dw / 2, dy + sign * dh / 2
    exp_wh = torch.exp(raw_wh.double())
    return torch.stack((dx.double(), dy.double(), dw * exp_wh[:, 0], dh * exp_wh[:, 1]), 1)


def _loss_parts(delta: Tensor, loss: np.float32, batch: int) -> dict[str, np.float32]:
    """The line's losses per image. DARKNET(forward_gaussian_yolo_layer): class_loss is the squared magnitude without
    the 8 box entries; "except uncertainty" zeroes entries 4-7 (w, sigma_w, h, sigma_h, not the 4 sigmas), so
    uc_loss is those entries' part and iou_loss that of x, sigma_x, y, sigma_y."""
    class_loss = squared_magnitude(_zeroed(delta, BOX))
    except_uc = squared_magnitude(_zeroed(delta, slice(MEANS[2], OBJECTNESS)))
    parts = {"class_loss": class_loss, "iou_loss": except_uc - class_loss, "uc_loss": loss - except_uc,
             "total_loss": loss}
    return {name: value / np.float32(batch) for name, value in parts.items()}


def _zeroed(delta: Tensor, entries: slice) -> Tensor:
    copy = delta.clone()
    copy[:, :, entries] = 0
    return copy
