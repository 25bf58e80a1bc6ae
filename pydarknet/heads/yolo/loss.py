"""The `[yolo]` training loss: Darknet's `l.delta`, `*l.cost` and printed line of each [yolo] layer.

ALEXEYAB follows DARKNET(AlexeyAB yolo_layer.c:forward_yolo_layer / process_batch), PJREDDIE
DARKNET(pjreddie yolo_layer.c:forward_yolo_layer). Tensors use the [yolo] layout: an ``output`` and its
``delta`` are (B, A, 5+C, H, W), entries 0..3 the box (x, y activated; w, h raw, or with new_coords=1 already
logistic), 4 the objectness, 5.. the class probabilities. ``truths`` is (B, T, 5+) rows x, y, w, h, class
relative to the network input; a row with x == 0 ends an image's list.

A delta is Darknet's *negative* gradient of its loss with respect to the activated output. The engine sends
``-delta`` as it is into the layer's input: DARKNET(yolo_layer.c:backward_yolo_layer) adds ``l.delta`` to the
previous layer's delta with no logistic derivative (nor the new_coords/scale_x_y chain), in both forks.

The writes are Darknet's, in its order: per cell and anchor the objectness (and the `truth_thresh` match),
then each truth (and, with AlexeyAB's `iou_thresh` < 1, each further anchor of its shape) in list order, then
AlexeyAB's averaging of the box deltas. Entries written by several truths at one cell and anchor follow the
C rules: AlexeyAB adds the box deltas, pjreddie keeps the last; the class deltas are written in full by the
first truth and entry by entry by the later ones (`_write_classes`, one vectorised pass per rank).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ...boxes import box_giou, box_iou_kind, dx_box_iou
from ...dialect import ALEXEYAB, PJREDDIE, Dialect
from ...errors import UnsupportedError
from ...options import FLT_MAX, YoloOptions
from ..darknet_sums import c_float, c_mean, float32_sum, squared_magnitude
from .coder import COORDS, decode_boxes, encode_boxes
from .layer import YoloLayer

__all__ = ["YoloLoss", "yolo_loss"]

OBJ = COORDS                # objectness entry
CLS = COORDS + 1            # first class entry
# DARKNET(AlexeyAB yolo_layer.c:compare_yolo_class, gaussian_yolo_layer.c:compare_gaussian_yolo_class): conf_thresh
# of the ignore rule
CLASS_MATCH_PROB = 0.25
FOCAL_ALPHA = 0.5           # DARKNET(AlexeyAB yolo_layer.c:delta_yolo_class): the focal loss's hard-coded alpha
FOCAL_EPS = 1e-15           # DARKNET(AlexeyAB yolo_layer.c:delta_yolo_class): added to p before its log
RECALL_IOUS = (0.5, 0.75)   # DARKNET(pjreddie yolo_layer.c:forward_yolo_layer): the .5R and .75R columns


@dataclass
class YoloLoss:
    """What the [yolo] (or [Gaussian_yolo]) layers' training forward produces, keyed by layer index.

    deltas: Darknet's `l.delta` (same shape as the output, negative gradient); costs: `*l.cost`;
    cost: DARKNET(network.c:get_network_cost) the mean of the layers' costs (the training loop divides it by
    the images per iteration); lines: the line each layer prints, in network order.
    """
    deltas: dict[int, Tensor]
    costs: dict[int, float]
    cost: float
    lines: list[str]

    @classmethod
    def of_layers(cls, deltas: dict[int, Tensor], costs: dict[int, float], lines: list[str]) -> YoloLoss:
        """The loss of layers' deltas, costs and lines, with Darknet's network cost."""
        # DARKNET(network.c:get_network_cost): the float mean over the layers that have a cost
        cost = c_mean(torch.tensor(list(costs.values())), len(costs)) if costs else 0.0
        return cls(deltas, costs, cost, lines)

    def stats_line(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Writes:
    """K truth writes at output cells, in Darknet's order: image b, anchor slot a (index in the layer's mask),
    row j, column i, anchor n (index in all `num` anchors), the truth's box (K, 4) cx, cy, w, h and class
    (the [yolo] and [Gaussian_yolo] losses')."""
    b: Tensor
    a: Tensor
    j: Tensor
    i: Tensor
    n: Tensor
    box: Tensor
    cls: Tensor

    def __len__(self) -> int:
        return len(self.b)

    def select(self, keep: Tensor) -> Writes:
        return Writes(self.b[keep], self.a[keep], self.j[keep], self.i[keep], self.n[keep], self.box[keep],
                       self.cls[keep])

    def at(self, entry: Tensor | int) -> tuple:
        """The index of `entry` (an int, or a (K,) tensor) at each write's cell: (K,) values."""
        return self.b, self.a, entry, self.j, self.i

    def span(self, start: int, stop: int) -> tuple:
        """The index of entries start..stop-1 at each write's cell: (K, stop - start) values (all tensors, so that
        index_put_ takes it too)."""
        entries = torch.arange(start, stop, device=self.b.device)[None]                      # [1, n]
        return self.b[:, None], self.a[:, None], entries, self.j[:, None], self.i[:, None]


@dataclass
class _Layer:
    """One [yolo] layer's training context: its options, its anchors and the network input size."""
    index: int
    options: YoloOptions
    anchors: Tensor        # (num, 2) every anchor, pixels of the network input
    mask: list[int]        # the anchors this layer predicts
    net_w: int
    net_h: int

    def slot_of_anchor(self, device: torch.device) -> Tensor:
        """(num,) the anchor's place in the mask, -1 where this layer does not predict it (C's int_index)."""
        return torch.tensor([self.mask.index(n) if n in self.mask else -1 for n in range(len(self.anchors))],
                            device=device)


def yolo_loss(net, outputs: dict[int, Tensor], truths: Tensor, seen: int, dialect: Dialect = ALEXEYAB) -> YoloLoss:
    """Darknet's [yolo] training deltas, costs and printed lines for every layer in `outputs`.

    outputs: layer index -> the ACTIVATED (B, A, 5+C, H, W) output of that [yolo] layer (`YoloLayer.forward`);
    truths: (B, T, 5+) rows x, y, w, h, class relative to the network input (columns past 5 are ignored);
    seen: images seen with this batch (state.net.seen; the [yolo] loss has no warm-up stage that reads it).
    dialect: ALEXEYAB (AlexeyAB's process_batch) or PJREDDIE (pjreddie's forward_yolo_layer).
    """
    layer_loss = _LAYER_LOSSES.get(dialect.name)
    if layer_loss is None:
        raise ValueError(f"no [yolo] loss for the dialect {dialect.name!r}")
    deltas, costs, lines = {}, {}, []
    for index in sorted(outputs):
        layer = net.layers[index]
        if not isinstance(layer, YoloLayer):
            raise ValueError(f"layer {index} is a {type(layer).__name__}, not a [yolo] layer")
        output = outputs[index].detach()
        _check_shapes(layer, output, truths)
        context = _Layer(index, layer.options, layer.anchors.to(output.device), list(layer.mask), net.width,
                         net.height)
        with torch.no_grad():
            truth = truths[..., :5].to(device=output.device, dtype=output.dtype)
            deltas[index], costs[index], line = layer_loss(context, output, truth)
        lines.append(line)
    return YoloLoss.of_layers(deltas, costs, lines)


def _check_shapes(layer: YoloLayer, output: Tensor, truths: Tensor) -> None:
    expected = (len(layer.mask), 5 + layer.classes)
    if output.dim() != 5 or tuple(output.shape[1:3]) != expected:
        raise ValueError(f"output shape {tuple(output.shape)} is not (B, {expected[0]}, {expected[1]}, H, W)")
    if truths.dim() != 3 or truths.shape[0] != output.shape[0] or truths.shape[2] < 5:
        raise ValueError(f"truths shape {tuple(truths.shape)} is not ({output.shape[0]}, T, 5+)")
    if layer.options.map:
        raise UnsupportedError(f"[yolo] layer with map={layer.options.map}: training with a class map is not "
                               "implemented")


# ---- AlexeyAB ---------------------------------------------------------------------------------------------------

def _alexeyab_layer_loss(layer: _Layer, out: Tensor, truth: Tensor) -> tuple[Tensor, float, str]:
    o = layer.options
    delta = torch.zeros_like(out)
    pred = _predicted_boxes(layer, out)                                                   # [B, A, H, W, 4]
    # DARKNET(AlexeyAB yolo_layer.c:process_batch): a class id outside the cfg's classes is skipped
    rows = _truth_rows(truth, o.max, o.classes)                                           # [B, T]
    best_iou, best_t = best_truths(pred, truth, rows)
    multipliers = class_multipliers(o, out)
    _alexeyab_objectness(o, out, best_iou, (out[:, :, CLS:] > CLASS_MATCH_PROB).any(2), delta)
    _alexeyab_truth_thresh(layer, out, pred, truth, best_iou, best_t, multipliers, delta)

    writes = _alexeyab_writes(layer, truth, rows, out.shape)
    multiplier = multipliers[writes.cls]
    box_delta, iou, giou = _alexeyab_box_deltas(layer, out, pred, writes, multiplier)
    delta.index_put_(writes.span(0, COORDS), box_delta, accumulate=True)   # DARKNET: delta_yolo_box accumulates
    rank, last = slot_ranks(writes, out.shape)
    _alexeyab_positive_objectness(o, out, writes, multiplier, rank, last, delta)
    _write_classes(out, delta, writes, rank, _AlexeyabClasses(o, multipliers))
    if o.iou_thresh < 1:
        average_box_deltas(delta, COORDS, only_with_objectness=True)
    return (delta, *_alexeyab_cost_and_line(layer, delta, writes, iou, giou, out.shape[0]))


def _alexeyab_objectness(o: YoloOptions, out: Tensor, best_iou: Tensor, class_match: Tensor, delta: Tensor) -> None:
    """Every cell's objectness delta: toward 0, except where a truth is matched above `ignore_thresh`.

    DARKNET(AlexeyAB yolo_layer.c:process_batch): the match counts only where some class prob is above .25
    (`compare_yolo_class`, whatever the truth's class); with objectness_smooth the matched delta is
    max(toward 0, toward the IoU).
    """
    obj = out[:, :, OBJ]
    best_match = torch.where(class_match, best_iou, torch.zeros_like(best_iou))
    noobj = o.obj_normalizer * (0 - obj)
    if o.objectness_smooth:
        matched = torch.maximum(noobj, o.obj_normalizer * (best_match - obj))
    else:
        matched = torch.zeros_like(noobj)
    delta[:, :, OBJ] = torch.where(best_match > o.ignore_thresh, matched, noobj)


def _alexeyab_truth_thresh(layer: _Layer, out: Tensor, pred: Tensor, truth: Tensor, best_iou: Tensor,
                           best_t: Tensor, multipliers: Tensor, delta: Tensor) -> None:
    """DARKNET(AlexeyAB yolo_layer.c:process_batch): a cell and anchor whose best IoU with a truth is above
    `truth_thresh` is trained on that truth as a positive (objectness, classes, box; objectness_smooth aims
    the objectness and the class at IoU²)."""
    o = layer.options
    writes, iou = _threshold_matches(layer, truth, best_iou, best_t)
    if not len(writes):
        return
    iou_squared = iou ** 2
    obj = out[writes.at(OBJ)]
    target = iou_squared if o.objectness_smooth else torch.ones_like(obj)
    delta[writes.at(OBJ)] = o.obj_normalizer * (target - obj)
    classes = writes.span(CLS, out.shape[2])
    delta[classes] = _AlexeyabClasses(o, multipliers).full(out[classes], writes.cls)
    multiplier = multipliers[writes.cls]
    if o.objectness_smooth:
        entry = writes.at(CLS + writes.cls)
        delta[entry] = multiplier * (iou_squared - out[entry])
    box_delta, _, _ = _alexeyab_box_deltas(layer, out, pred, writes, multiplier)
    delta[writes.span(0, COORDS)] += box_delta


def _alexeyab_writes(layer: _Layer, truth: Tensor, rows: Tensor, shape: torch.Size) -> Writes:
    """The truths' writes in Darknet's order: each truth's best anchor (when this layer predicts it), then,
    with iou_thresh < 1, every other anchor of this layer whose shape matches above iou_thresh, by anchor."""
    o = layer.options
    b, t = rows.nonzero(as_tuple=True)
    box = truth[b, t, :4]
    shape_iou = anchor_shape_ious(layer.anchors, layer.net_w, layer.net_h, box, "iou")                # [K, num]
    best_n = _first_argmax(shape_iou)
    slot = layer.slot_of_anchor(truth.device)
    num = len(layer.anchors)
    chosen = torch.zeros(len(b), 1 + num, dtype=torch.bool, device=truth.device)          # [K, 1 + num]
    chosen[:, 0] = slot[best_n] >= 0
    if o.iou_thresh < 1:
        # DARKNET(AlexeyAB yolo_layer.c:process_batch): the further anchors compare with iou_thresh_kind
        kind_iou = anchor_shape_ious(layer.anchors, layer.net_w, layer.net_h, box, o.iou_thresh_kind)
        others = torch.arange(num, device=truth.device) != best_n[:, None]
        chosen[:, 1:] = others & (slot >= 0) & (kind_iou > o.iou_thresh)
    k, column = chosen.nonzero(as_tuple=True)                                             # row-major: C's order
    n = torch.where(column == 0, best_n[k], column - 1)
    return Writes(b[k], slot[n], *_truth_cells(box[k], shape), n, box[k], truth[b[k], t[k], 4].long())


def _alexeyab_box_deltas(layer: _Layer, out: Tensor, pred: Tensor, writes: Writes,
                         multiplier: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """DARKNET(AlexeyAB yolo_layer.c:delta_yolo_box): (K, 4) box deltas, with the IoU and GIoU of each
    prediction and its truth. mse: ``(2 - w·h)·(target - x)·iou_normalizer``; giou/diou/ciou/iou: the IoU
    variant's gradient (box.c:dx_box_iou) times iou_normalizer, NaN/inf -> 0, clipped to ±max_delta."""
    o = layer.options
    box = pred[writes.b, writes.a, writes.j, writes.i]                                    # [K, 4]
    iou = box_iou_kind(box, writes.box, "iou")
    giou = box_giou(box, writes.box)
    normalizer = o.iou_normalizer * multiplier                                           # [K]
    entries = out[writes.span(0, COORDS)]                                                 # [K, 4]
    if o.iou_loss == "mse":
        return _mse_box_deltas(layer, out, writes) * normalizer[:, None], iou, giou
    gradient = dx_box_iou(box, writes.box, o.iou_loss)
    if not o.new_coords:
        # DARKNET(AlexeyAB yolo_layer.c:delta_yolo_box): the chain through exp(tw), exp(th), in double
        gradient[:, 2:] = (gradient[:, 2:].double() * torch.exp(entries[:, 2:].double())).to(out.dtype)
    gradient = torch.nan_to_num(gradient * normalizer[:, None], nan=0.0, posinf=0.0, neginf=0.0)
    if o.max_delta != FLT_MAX:
        gradient = gradient.clamp(-o.max_delta, o.max_delta)
    return gradient, iou, giou


def _alexeyab_positive_objectness(o: YoloOptions, out: Tensor, writes: Writes, multiplier: Tensor, rank: Tensor,
                                  last: Tensor, delta: Tensor) -> None:
    """Objectness toward 1 at each written cell: the last write wins; with objectness_smooth only the first,
    and only where the cell's delta is still 0 (DARKNET(AlexeyAB yolo_layer.c:process_batch))."""
    keep = (rank == 0) if o.objectness_smooth else last
    w = writes.select(keep)
    value = multiplier[keep] * o.obj_normalizer * (1 - out[w.at(OBJ)])
    if o.objectness_smooth:
        value = torch.where(delta[w.at(OBJ)] == 0, value, delta[w.at(OBJ)])
    delta[w.at(OBJ)] = value


class _AlexeyabClasses:
    """DARKNET(AlexeyAB yolo_layer.c:delta_yolo_class): the class deltas of one truth at one cell."""

    def __init__(self, o: YoloOptions, multipliers: Tensor):
        self.o, self.multipliers = o, multipliers

    def probe(self, cls: Tensor) -> Tensor:
        """The class entry whose non-zero delta makes a later truth write its own entry only."""
        return cls

    def single(self, probs: Tensor, cls: Tensor) -> Tensor:
        """(K,) the delta of the class entry alone; the multiplier without cls_normalizer, as C does."""
        value = self._target(torch.ones_like(probs)) - probs
        return value * self.multipliers[cls] if self.o.counters_per_class else value

    def full(self, probs: Tensor, cls: Tensor) -> Tensor:
        """(K, C) every class's delta; probs: (K, C)."""
        one_hot = torch.nn.functional.one_hot(cls, probs.shape[1]).to(probs.dtype)
        if self.o.focal_loss:
            p = probs.gather(1, cls[:, None]) + np.float32(FOCAL_EPS)                    # [K, 1]
            grad = -(1 - p) * (2 * p * torch.log(p) + p - 1)
            return (one_hot - probs) * (FOCAL_ALPHA * grad)
        value = self._target(one_hot) - probs
        if self.o.counters_per_class:
            factor = self.multipliers[cls] * np.float32(self.o.cls_normalizer)
            value = torch.where(one_hot.bool(), value * factor[:, None], value)
        return value

    def _target(self, y: Tensor) -> Tensor:
        eps = self.o.label_smooth_eps
        if not eps:
            return y
        # DARKNET(AlexeyAB yolo_layer.c:delta_yolo_class): y·(1 - eps) in float, + 0.5·eps in double
        return (y * np.float32(1 - np.float32(eps))).double().add(0.5 * float(np.float32(eps))).to(y.dtype)


def class_multipliers(o: YoloOptions, out: Tensor) -> Tensor:
    """(C,) DARKNET(AlexeyAB parser.c:get_classes_multipliers): max(counter) / counter, counters below 1 read
    as 1, capped at max_delta; all 1 without counters_per_class."""
    if not o.counters_per_class:
        return torch.ones(o.classes, dtype=out.dtype, device=out.device)
    counters = torch.tensor(o.counters_per_class, dtype=out.dtype, device=out.device).clamp(min=1)
    return (counters.max() / counters).clamp(max=o.max_delta)


def average_box_deltas(delta: Tensor, box_entries: int, only_with_objectness: bool) -> None:
    """Each cell's `box_entries` box deltas divided by its number of classes with a positive delta, where there are
    any; the objectness entry follows the box entries, the classes follow it.

    DARKNET(AlexeyAB yolo_layer.c:averages_yolo_deltas, gaussian_yolo_layer.c:averages_gaussian_yolo_deltas): the
    [yolo] loop averages only the cells with an objectness delta (`only_with_objectness`), [Gaussian_yolo]'s all.
    """
    box, objectness = slice(0, box_entries), slice(box_entries, box_entries + 1)
    classes = (delta[:, :, box_entries + 1:] > 0).sum(2, keepdim=True).to(delta.dtype)    # [B, A, 1, H, W]
    divide = classes > 0
    if only_with_objectness:
        divide = divide & (delta[:, :, objectness] != 0)
    delta[:, :, box] = torch.where(divide, delta[:, :, box] / classes.clamp(min=1), delta[:, :, box])


def _alexeyab_cost_and_line(layer: _Layer, delta: Tensor, writes: Writes, iou: Tensor, giou: Tensor,
                            batch: int) -> tuple[float, str]:
    """DARKNET(AlexeyAB yolo_layer.c:forward_yolo_layer): `*l.cost` and the `v3 (...)` line, in C's floats.

    mse (or show_details=0): cost = Σ delta²; otherwise iou_normalizer·mean(1 - IoU) (GIoU for giou) plus
    obj_normalizer·Σ delta² over the non-box entries. The line prints those sums divided by the batch.
    DIVERGES: the line is returned without the C line's trailing space.
    """
    o = layer.options
    f32 = np.float32
    count = f32(max(len(iou), 1))    # DARKNET(AlexeyAB yolo_layer.c:forward_yolo_layer): `if (count == 0) count = 1`
    # DARKNET(AlexeyAB yolo_layer.c:forward_yolo_layer): each image's thread sums in float, then the images
    tot_iou = float32_sum(_float_sums_by_image(iou, writes.b, batch))
    loss = _sum_of_squares(delta)
    name = {"mse": "mse", "giou": "giou"}.get(o.iou_loss, "iou")
    head = (f"v3 ({name} loss, Normalizer: (iou: {f32(o.iou_normalizer):.2f}, obj: {f32(o.obj_normalizer):.2f}, "
            f"cls: {f32(o.cls_normalizer):.2f}) Region {layer.index} Avg (IOU: {tot_iou / count:f}), "
            f"count: {int(count)}")
    if not o.show_details:
        return float(loss), f"{head}, total_loss = {loss / f32(batch):f}"
    class_loss = f32(o.obj_normalizer) * _sum_of_squares(delta, without_box=True)
    cost = loss
    if o.iou_loss != "mse":
        misses = 1 - (giou if o.iou_loss == "giou" else iou)
        cost = f32(o.iou_normalizer) * (float32_sum(_float_sums_by_image(misses, writes.b, batch)) / count) + class_loss
    return float(cost), (f"{head}, class_loss = {class_loss / f32(batch):f}, "
                         f"iou_loss = {(loss - class_loss) / f32(batch):f}, total_loss = {loss / f32(batch):f}")


# ---- pjreddie ---------------------------------------------------------------------------------------------------

def _pjreddie_layer_loss(layer: _Layer, out: Tensor, truth: Tensor) -> tuple[Tensor, float, str]:
    o = layer.options
    delta = torch.zeros_like(out)
    pred = _predicted_boxes(layer, out)
    # DIVERGES: a class id outside the cfg's classes is skipped (pjreddie writes past the cell's entries)
    rows = _truth_rows(truth, o.max, o.classes)
    best_iou, best_t = best_truths(pred, truth, rows)
    obj = out[:, :, OBJ]
    # DARKNET(pjreddie yolo_layer.c:forward_yolo_layer): no ignore-rule class condition, no normalizers
    delta[:, :, OBJ] = torch.where(best_iou > o.ignore_thresh, torch.zeros_like(obj), 0 - obj)
    matched, _ = _threshold_matches(layer, truth, best_iou, best_t)
    delta[matched.at(OBJ)] = 1 - out[matched.at(OBJ)]
    classes = matched.span(CLS, out.shape[2])
    delta[classes] = _PjreddieClasses().full(out[classes], matched.cls)
    delta[matched.span(0, COORDS)] = _mse_box_deltas(layer, out, matched)

    writes = _pjreddie_writes(layer, truth, rows, out.shape)
    rank, last = slot_ranks(writes, out.shape)
    kept = writes.select(last)          # DARKNET(pjreddie yolo_layer.c:delta_yolo_box): assigns, the last wins
    delta[kept.span(0, COORDS)] = _mse_box_deltas(layer, out, kept)
    delta[writes.at(OBJ)] = 1 - out[writes.at(OBJ)]
    class_prob = _write_classes(out, delta, writes, rank, _PjreddieClasses())
    iou = box_iou_kind(pred[writes.b, writes.a, writes.j, writes.i], writes.box, "iou")
    return delta, float(_sum_of_squares(delta)), region_line(layer.index, iou, class_prob, out[writes.at(OBJ)], obj)


def _pjreddie_writes(layer: _Layer, truth: Tensor, rows: Tensor, shape: torch.Size) -> Writes:
    """Each truth's write at its cell with its best anchor by shape, when this layer predicts that anchor."""
    b, t = rows.nonzero(as_tuple=True)
    box = truth[b, t, :4]
    n = _first_argmax(anchor_shape_ious(layer.anchors, layer.net_w, layer.net_h, box, "iou"))
    slot = layer.slot_of_anchor(truth.device)[n]
    keep = slot >= 0
    box = box[keep]
    return Writes(b[keep], slot[keep], *_truth_cells(box, shape), n[keep], box, truth[b[keep], t[keep], 4].long())


class _PjreddieClasses:
    """DARKNET(pjreddie yolo_layer.c:delta_yolo_class): the class deltas of one truth at one cell."""

    def probe(self, cls: Tensor) -> Tensor:
        # DARKNET(pjreddie yolo_layer.c:delta_yolo_class): `if (delta[index])` tests class 0's entry, not the truth's
        return torch.zeros_like(cls)

    def single(self, probs: Tensor, cls: Tensor) -> Tensor:
        return 1 - probs

    def full(self, probs: Tensor, cls: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(cls, probs.shape[1]).to(probs.dtype) - probs


def region_line(index: int, iou: Tensor, class_prob: Tensor, obj: Tensor, all_obj: Tensor) -> str:
    """DARKNET(pjreddie yolo_layer.c:forward_yolo_layer, AlexeyAB gaussian_yolo_layer.c:forward_gaussian_yolo_layer):
    the `Region N Avg IOU` line (stdout), from C's float sums: the truths' terms in list order, the objectness of
    every cell (`all_obj`, (B, A, H, W)) in its b, j, i, n loop order."""
    count = len(iou)
    terms = (iou, class_prob, obj, *((iou > level).float() for level in RECALL_IOUS))
    avg_iou, avg_cat, avg_obj, recall, recall75 = (c_float(c_mean(values, count)) for values in terms)
    no_obj = c_float(c_mean(all_obj.permute(0, 2, 3, 1), all_obj.numel()))
    return (f"Region {index} Avg IOU: {avg_iou}, Class: {avg_cat}, Obj: {avg_obj}, No Obj: {no_obj}, "
            f".5R: {recall}, .75R: {recall75},  count: {count}")


# ---- shared -----------------------------------------------------------------------------------------------------

def _mse_box_deltas(layer: _Layer, out: Tensor, writes: Writes) -> Tensor:
    """DARKNET(yolo_layer.c:delta_yolo_box): (K, 4) mse box deltas ``(2 - w·h)·(target - x)`` (both forks)."""
    _, _, h, w = out.shape[1:]
    target = encode_boxes(writes.box, writes.i.to(out.dtype), writes.j.to(out.dtype), layer.anchors[writes.n], w, h,
                          layer.net_w, layer.net_h, bool(layer.options.new_coords))
    scale = 2 - writes.box[:, 2] * writes.box[:, 3]
    return scale[:, None] * (target - out[writes.span(0, COORDS)])


def _threshold_matches(layer: _Layer, truth: Tensor, best_iou: Tensor, best_t: Tensor) -> tuple[Writes, Tensor]:
    """The cells and anchors whose best IoU with a truth is above `truth_thresh`, as writes of that truth, and
    their IoUs (DARKNET(yolo_layer.c:forward_yolo_layer); never with the default truth_thresh = 1)."""
    b, a, j, i = (best_iou > layer.options.truth_thresh).nonzero(as_tuple=True)
    t = best_t[b, a, j, i]
    anchor = torch.tensor(layer.mask, device=truth.device)[a]
    return Writes(b, a, j, i, anchor, truth[b, t, :4], truth[b, t, 4].long()), best_iou[b, a, j, i]


def _predicted_boxes(layer: _Layer, out: Tensor) -> Tensor:
    """(B, A, H, W, 4) each cell's predicted box; exact (double exp, as get_yolo_box) on the CPU."""
    anchors = layer.anchors[layer.mask]
    return decode_boxes(out, anchors, layer.net_w, layer.net_h, bool(layer.options.new_coords),
                        exact=out.device.type == "cpu")


def _truth_rows(truth: Tensor, max_boxes: int, classes: int) -> Tensor:
    """(B, T) the truth rows the loss reads: the first `max` rows before the first x == 0 row (C's
    `if (!truth.x) break`), whose class is one of the layer's.

    DIVERGES: pjreddie's `max` defaults to 90 where YoloOptions reads AlexeyAB's 200; its loader fills no more
    than 90 rows, so the rows read are the same.
    """
    listed = torch.cumprod(truth[..., 0] != 0, dim=1).bool()
    listed[:, max_boxes:] = False
    cls = truth[..., 4]
    return listed & (cls >= 0) & (cls.long() < classes)


def best_truths(pred: Tensor, truth: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """(B, A, H, W) each prediction's best IoU with its image's truth rows (`rows`, (B, T)), and the first row
    reaching it; 0 and row 0 where no row overlaps."""
    listed = rows.nonzero()[:, 1]
    if not len(listed):
        zeros = torch.zeros(pred.shape[:-1], dtype=pred.dtype, device=pred.device)
        return zeros, zeros.long()
    last = int(listed.max()) + 1                                                          # rows past it are unused
    boxes = truth[:, None, None, None, :last, :4]                                         # [B, 1, 1, 1, T, 4]
    ious = box_iou_kind(pred[..., None, :], boxes, "iou")                                 # [B, A, H, W, T]
    ious = torch.where(rows[:, None, None, None, :last], ious, torch.zeros_like(ious))
    # DARKNET(yolo_layer.c:forward_yolo_layer): strict >, from 0: the first best row, row 0 when none overlaps
    return ious.amax(-1), _first_argmax(ious)


def _first_argmax(values: Tensor) -> Tensor:
    """Index of the first maximum along the last dimension (C's `if (v > best)` scan)."""
    return values.argmax(-1)


def anchor_shape_ious(anchors: Tensor, net_w: int, net_h: int, box: Tensor, kind: str) -> Tensor:
    """(K, num) the `kind` IoU of each truth's size (`box`, (K, 4) cxcywh) and every anchor's ((num, 2) pixels of
    the net_w x net_h input), both centred at 0: how both AlexeyAB losses match a truth to anchors by shape."""
    anchors = anchors / anchors.new_tensor([net_w, net_h])                                   # [num, 2]
    centred_anchors = torch.cat((torch.zeros_like(anchors), anchors), dim=-1)             # [num, 4]
    centred_truths = torch.cat((torch.zeros_like(box[:, 2:]), box[:, 2:]), dim=-1)         # [K, 4]
    return torch.nan_to_num(box_iou_kind(centred_anchors[None], centred_truths[:, None], kind), nan=0.0)


def _truth_cells(box: Tensor, shape: torch.Size) -> tuple[Tensor, Tensor]:
    """Row j and column i of each truth's centre: C's `(int)(x * w)`.

    DIVERGES: clamped to the grid, where C writes out of bounds for x or y == 1.
    """
    h, w = shape[-2:]
    return (box[:, 1] * h).long().clamp(max=h - 1), (box[:, 0] * w).long().clamp(max=w - 1)


def slot_ranks(writes: Writes, shape: torch.Size) -> tuple[Tensor, Tensor]:
    """(K,) each write's rank among the writes at its cell and anchor, in order, and whether it is the last."""
    _, a, _, h, w = shape
    slot = ((writes.b * a + writes.a) * h + writes.j) * w + writes.i
    order = torch.argsort(slot, stable=True)
    _, counts = torch.unique_consecutive(slot[order], return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    rank = torch.empty_like(slot)
    rank[order] = torch.arange(len(slot), device=slot.device) - starts
    size = torch.empty_like(slot)
    size[order] = torch.repeat_interleave(counts, counts)
    return rank, rank == size - 1


def _write_classes(out: Tensor, delta: Tensor, writes: Writes, rank: Tensor, classes) -> Tensor:
    """Each write's class deltas, in order: a write whose probe entry is still 0 writes every class
    (`classes.full`), else only its own class entry (`classes.single`). Returns each write's own class
    probability (K,), C's `avg_cat` terms. One vectorised pass per rank (the writes at one cell)."""
    for r in range(int(rank.max()) + 1 if len(rank) else 0):
        at_rank = rank == r
        w = writes.select(at_rank)
        single = delta[w.at(CLS + classes.probe(w.cls))] != 0
        entry = w.select(single)
        delta[entry.at(CLS + entry.cls)] = classes.single(out[entry.at(CLS + entry.cls)], entry.cls)
        whole = w.select(~single)
        delta[whole.span(CLS, out.shape[2])] = classes.full(out[whole.span(CLS, out.shape[2])], whole.cls)
    return out[writes.at(CLS + writes.cls)]


def _sum_of_squares(delta: Tensor, without_box: bool = False) -> np.float32:
    """`pow(mag_array(delta), 2)` as Darknet's -Ofast builds compute it (`darknet_sums.squared_magnitude`), over
    the delta or, without_box, over the delta with its box entries zeroed (AlexeyAB's `no_iou_loss_delta`).

    DIVERGES: off the CPU, the sum is taken in double on the device (no copy of the delta to the host), so
    the printed losses may differ from Darknet's in their last digits (about 1e-7 relative).
    """
    first = COORDS if without_box else 0
    if delta.device.type != "cpu":
        return np.float32(float((delta[:, :, first:].double() ** 2).sum()))
    if without_box:
        delta = delta.clone()
        delta[:, :, :first] = 0
    return squared_magnitude(delta)


def _float_sums_by_image(values: Tensor, image: Tensor, batch: int) -> Tensor:
    """(B,) the float sum of each image's `values` (K,) in order; `image` (K,) is each value's image."""
    values, image = values.detach().float().cpu(), image.cpu()
    return torch.tensor([float32_sum(values[image == b]) for b in range(batch)], dtype=torch.float32)


_LAYER_LOSSES = {ALEXEYAB.name: _alexeyab_layer_loss, PJREDDIE.name: _pjreddie_layer_loss}
