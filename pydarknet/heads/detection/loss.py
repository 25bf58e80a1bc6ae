"""The YOLOv1 `[detection]` loss, as DARKNET(detection_layer.c:forward_detection_layer) writes `l.delta`.

``output`` and ``delta`` are (B, side*side*((1+coords)*num + classes)) in Darknet's memory layout (see
`layer.split_output`): per cell P(class | object), then each box's confidence, then each box's x, y, w, h.
``truths`` are (B, T, 5) rows ``x, y, w, h, class`` relative to the image (a row with x == 0 ends an image's list).

DARKNET(data.c:fill_truth_region) first turns the boxes into one truth per grid cell (`fill_truth_region`); the
loss then pulls every confidence toward 0, and in each cell holding a truth the classes toward the truth's one-hot
vector, and ONE box (the "responsible" one, `choose_boxes`) toward the truth, its confidence toward 1 (or toward
its IoU, `rescore=1`). Every delta has the form ``scale * (target - output)``: Darknet's *negative* gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ...boxes import box_iou
from ...options import DetectionOptions
from ..darknet_sums import c_float, c_mean, squared_magnitude
from .coder import encode_boxes
from .layer import DetectionLayer, split_output

MIN_BOX_SIZE = 0.005        # DARKNET(data.c:fill_truth_region): narrower or lower boxes are dropped
FORCED_SMALL_AREA = 0.1     # DARKNET(detection_layer.c:forward_detection_layer): forced=1 gives box 1 below this area
RANDOM_UNTIL_SEEN = 64000   # DARKNET(detection_layer.c:forward_detection_layer): random=1 picks boxes at random until
NO_RMSE = 20.0              # DARKNET(detection_layer.c:forward_detection_layer): the rmse a choice must beat


@dataclass
class DetectionLoss:
    """What the [detection] layer's training forward produces: `delta` (B, outputs) is Darknet's `l.delta`
    (negative gradient w.r.t. the layer's output), `cost` = sum(delta**2) = `*l.cost`, and the sums and divisors
    of Darknet's `Detection Avg IOU` line, already divided there (in float32, in Darknet's order)."""
    delta: Tensor
    cost: float
    avg_iou: float
    pos_cat: float
    all_cat: float
    pos_obj: float
    any_obj: float
    count: int

    def stats_line(self) -> str:
        """DARKNET(detection_layer.c:forward_detection_layer)'s printed line."""
        return (f"Detection Avg IOU: {c_float(self.avg_iou)}, Pos Cat: {c_float(self.pos_cat)}, "
                f"All Cat: {c_float(self.all_cat)}, Pos Obj: {c_float(self.pos_obj)}, "
                f"Any Obj: {c_float(self.any_obj)}, count: {self.count:d}")


def fill_truth_region(truths: Tensor, side: int, classes: int) -> Tensor:
    """(B, T, 5) boxes x, y, w, h, class relative to the image -> (B, side*side, 5 + classes) per-cell truths in
    Darknet's `net.truth` layout: has-object flag, one-hot class (all zero when class >= classes), x, y offsets in
    the cell, w, h.

    DARKNET(data.c:fill_truth_region): the cell is the truncated ``x * side``; a cell keeps the FIRST box that falls
    in it, later ones are dropped. Darknet shuffles each image's boxes first (data.c:randomize_boxes, with C's
    rand()); the data loader does that shuffle, so here the list order decides.
    """
    b, t, _ = truths.shape
    truths = truths.float()
    valid = torch.cumprod(truths[..., 0] != 0, dim=1).bool()                       # [B, T]
    # DARKNET(data.c:fill_truth_region): float w compared with the double .005
    valid &= (truths[..., 2].double() >= MIN_BOX_SIZE) & (truths[..., 3].double() >= MIN_BOX_SIZE)
    scaled = truths[..., :2] * side                                                  # float32, as C's x*num_boxes
    # DIVERGES: a centre at exactly 1.0 is kept in the last cell; Darknet writes past the row (or the array)
    cell_xy = scaled.long().clamp(max=side - 1)                                      # [B, T, 2] col, row
    cell = cell_xy[..., 1] * side + cell_xy[..., 0]                                  # [B, T]
    b_idx, t_idx = valid.nonzero(as_tuple=True)
    flat = b_idx * side * side + cell[b_idx, t_idx]
    first = torch.full((b * side * side,), t, dtype=torch.long, device=truths.device)
    first.scatter_reduce_(0, flat, t_idx, "amin")
    wins = first[flat] == t_idx
    b_idx, t_idx, flat = b_idx[wins], t_idx[wins], flat[wins]

    cell_truth = truths.new_zeros(b * side * side, 5 + classes)
    cell_truth[flat, 0] = 1
    class_id = truths[b_idx, t_idx, 4].long()
    known = class_id < classes               # DARKNET(data.c:fill_truth_region): `if (id < classes)` one-hot
    cell_truth[flat[known], 1 + class_id[known]] = 1
    cell_truth[flat, 1 + classes:3 + classes] = scaled[b_idx, t_idx] - cell_xy[b_idx, t_idx].float()
    cell_truth[flat, 3 + classes:] = truths[b_idx, t_idx, 2:4]
    return cell_truth.view(b, side * side, 5 + classes)


def detection_loss(layer: DetectionLayer, output: Tensor, truths: Tensor, seen: int,
                   generator: torch.Generator | None = None) -> DetectionLoss:
    """Darknet's [detection] training deltas, cost and printed statistics.

    output: (B, outputs) `DetectionLayer.forward`'s output (softmaxed classes with `softmax=1`, as Darknet's
    training forward); truths: (B, T, 5); seen: images seen *including* this batch (Darknet adds the batch to
    `seen` before the forward); generator: the draws of `random=1` (DIVERGES: Darknet draws with C's rand()).
    """
    o = layer.options
    if output.dim() != 2 or output.shape[1] != o.outputs:
        raise ValueError(f"[detection] output must be (B, {o.outputs}), got {tuple(output.shape)}")
    if truths.dim() != 3 or truths.shape[0] != output.shape[0] or truths.shape[2] != 5:
        raise ValueError(f"truths must be ({output.shape[0]}, T, 5), got {tuple(truths.shape)}")
    if o.forced and o.num < 2:
        raise ValueError(f"[detection] forced=1 trains box 1 of small truths, but num={o.num}")
    with torch.no_grad():
        out = output.detach()
        cell_truth = fill_truth_region(truths.to(out.device), o.side, o.classes)
        best = choose_boxes(o, out, cell_truth, seen, generator)
        return detection_deltas(o, out, cell_truth, best)


def _cell_boxes(o: DetectionOptions, output: Tensor, cell_truth: Tensor) -> tuple[Tensor, Tensor]:
    """Predicted boxes (B, S*S, num, 4) and each cell's truth box (B, S*S, 4), both with their centres as offsets in
    their cell over side and their true sizes, as Darknet compares them (its `out.x /= l.side`, `truth.x /= l.side`)."""
    _, _, raw_boxes = split_output(output, o)
    truth = cell_truth[..., 1 + o.classes:]
    pred = torch.cat((raw_boxes[..., :2] / o.side, raw_boxes[..., 2:] ** 2 if o.sqrt else raw_boxes[..., 2:]), -1)
    return pred, torch.cat((truth[..., :2] / o.side, truth[..., 2:]), -1)


def choose_boxes(o: DetectionOptions, output: Tensor, cell_truth: Tensor, seen: int,
                 generator: torch.Generator | None = None) -> Tensor:
    """(B, S*S) the box each cell's truth trains (any value where the cell has no truth).

    DARKNET(detection_layer.c:forward_detection_layer): the first box of highest IoU when some box overlaps the
    truth, else the first box of lowest rmse below 20; `forced=1`: box 1 for truths of area < .1, else box 0;
    `random=1` before 64000 images seen: a random box.
    """
    pred, truth = _cell_boxes(o, output, cell_truth)
    iou = box_iou(pred, truth[:, :, None])                                           # [B, S*S, num]
    # DARKNET(box.c:box_rmse): float differences, squared and summed in double
    rmse = ((pred - truth[:, :, None]).double() ** 2).sum(-1).sqrt().float()         # [B, S*S, num]
    # DIVERGES: with no overlap and no rmse below 20 Darknet's choice is box -1 (the cell before); here the nearest
    best = torch.where((iou > 0).any(-1), iou.argmax(-1), rmse.argmin(-1))
    if o.forced:
        # DARKNET(detection_layer.c:forward_detection_layer): float area compared with the double .1
        small = (cell_truth[..., -2] * cell_truth[..., -1]).double() < FORCED_SMALL_AREA
        best = small.long()
    if o.random and seen < RANDOM_UNTIL_SEEN:
        best = torch.randint(o.num, best.shape, generator=generator, device="cpu").to(best.device)
    return best


def detection_deltas(o: DetectionOptions, output: Tensor, cell_truth: Tensor, best: Tensor) -> DetectionLoss:
    """The deltas, cost and statistics once each cell's responsible box is chosen.

    output: (B, outputs); cell_truth: (B, S*S, 5 + classes) (`fill_truth_region`); best: (B, S*S) (`choose_boxes`).
    The deltas are computed in double and stored in the output's dtype, as Darknet's mixed float/double
    expressions are.
    """
    out = output.double()
    probs, confidences, raw_boxes = split_output(out, o)          # [B, S*S, C], [B, S*S, num], [B, S*S, num, 4]
    has_obj = cell_truth[..., 0] != 0                                                # [B, S*S]
    b_idx, cell = has_obj.nonzero(as_tuple=True)
    n = best[b_idx, cell]
    pred, truth = _cell_boxes(o, output, cell_truth)
    iou = box_iou(pred[b_idx, cell, n], truth[b_idx, cell])                          # [K] float32, as Darknet

    class_truth = cell_truth[..., 1:1 + o.classes].double()
    delta_probs = torch.where(has_obj[..., None], o.class_scale * (class_truth - probs), 0)
    delta_conf = o.noobject_scale * (0 - confidences)
    conf_target = iou.double() if o.rescore else 1.0
    delta_conf[b_idx, cell, n] = o.object_scale * (conf_target - confidences[b_idx, cell, n])
    delta_boxes = torch.zeros_like(raw_boxes)
    # DARKNET(detection_layer.c:forward_detection_layer): the raw entries pull toward the cell truth (sqrt sizes)
    col, row = cell % o.side, cell // o.side
    truth_boxes = cell_truth[b_idx, cell, 1 + o.classes:].double()                   # [K, 4] offsets in the cell
    centres = (truth_boxes[:, :2] + torch.stack((col, row), 1)) / o.side
    box_targets = encode_boxes(torch.cat((centres, truth_boxes[:, 2:]), 1), col, row, o.side, bool(o.sqrt))
    delta_boxes[b_idx, cell, n] = o.coord_scale * (box_targets - raw_boxes[b_idx, cell, n])
    delta = torch.cat((delta_probs.flatten(1), delta_conf.flatten(1), delta_boxes.flatten(1)), 1)

    count = len(b_idx)
    obj_probs = probs[b_idx, cell].float()                                           # [K, C]
    return DetectionLoss(
        delta=delta.to(output.dtype),
        cost=float(squared_magnitude(delta)),
        avg_iou=c_mean(iou, count),
        pos_cat=c_mean(obj_probs[class_truth[b_idx, cell] != 0], count),
        all_cat=c_mean(obj_probs, count * o.classes),
        pos_obj=c_mean(confidences[b_idx, cell, n].float(), count),
        any_obj=c_mean(confidences.float(), confidences.numel()),
        count=count)


def detection_input_gradient(layer: DetectionLayer, output: Tensor, delta: Tensor) -> Tensor:
    """(B, outputs) d(loss)/d(the layer's input), for ``input.backward(gradient=g.view_as(input))``.

    DARKNET(detection_layer.c:backward_detection_layer): axpy of `l.delta` into the input's delta, so the
    softmax (`softmax=1`) Jacobian is skipped as the region layer's is, and sqrt=1 changes nothing (the raw
    entries are the square roots). Darknet's delta is the negative gradient, hence the sign.
    """
    if delta.shape != output.shape or output.shape[-1] != layer.options.outputs:
        raise ValueError(f"delta {tuple(delta.shape)} and output {tuple(output.shape)} must both be "
                         f"(B, {layer.options.outputs})")
    return -delta
