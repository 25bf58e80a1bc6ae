"""The YOLOv2 / YOLO9000 region loss, as DARKNET(region_layer.c:forward_region_layer) writes `l.delta`.

Tensors use Darknet's region layout: ``output``, ``target``, ``scale`` and ``delta`` are
(B, A, 5+C, H, W) with entries 0,1 = logistic x, y; 2,3 = raw w, h; 4 = logistic objectness;
5.. = class probabilities. ``truth`` is (B, T, 5) rows ``x, y, w, h, class`` (box centre and
size relative to the network input; a row with x == 0 ends an image's list).

Every delta Darknet writes has the form ``scale * (target - output)``, so the loss is built as
a ``target`` and a ``scale`` tensor (under no_grad) and ``delta = scale * (target - output)``,
Darknet's *negative* gradient. Where Darknet writes an entry several times the last write
wins; the writes below follow Darknet's order: no-object and prior deltas, then the truths in
list order, each truth's class deltas last.

A softmax over the classes is handled as a WordTree whose nodes are all roots (one group),
so the VOC and YOLO9000 class deltas share one code path.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from ...boxes import box_iou
from ...data.labels import CLASSIFICATION_ONLY_ABOVE  # x, y above it: a label without a box
from ...errors import UnsupportedError
from ...options import RegionOptions
from ...tree import WordTree
from .coder import COORDS, decode_boxes, encode_boxes

PRIOR_SEEN = 12800          # DARKNET(region_layer.c:forward_region_layer): pull boxes toward the priors early
PRIOR_SCALE = 0.01          # DARKNET(region_layer.c:forward_region_layer): weight of that pull
MAX_TRUTHS = 30             # DARKNET(region_layer.c:forward_region_layer): rows scanned per image, whatever `max` is
RECALL_IOU = 0.5            # DARKNET(region_layer.c:forward_region_layer): IoU counted as recalled
OBJ = COORDS                # objectness entry
CLS = COORDS + 1            # first class entry


@dataclass
class RegionLoss:
    """What the region layer's training forward produces.

    target, scale, delta: (B, A, 5+C, H, W); delta = scale * (target - output) is Darknet's
    `l.delta` (negative gradient of ``loss(output)``); cost = sum(delta**2) = `*l.cost`.
    The statistics are those of Darknet's `Region Avg IOU` line, as float sums divided there.
    """
    target: Tensor
    scale: Tensor
    delta: Tensor
    cost: float
    avg_iou: float
    avg_class: float
    avg_obj: float
    avg_no_obj: float
    avg_recall: float
    count: int

    def loss(self, output: Tensor) -> Tensor:
        """Scalar ``sum(scale * (target - output)**2) / 2``; its gradient w.r.t. output is ``-delta``.

        This is the gradient w.r.t. the *activated* output. To reproduce Darknet's backward
        through the activations use `region_input_gradient` instead (Darknet skips the softmax
        Jacobian).
        """
        return 0.5 * (self.scale * (self.target - output) ** 2).sum()

    @property
    def stats(self) -> dict[str, float]:
        """The stats line's numbers, keyed as in the reference pack's `train_meta.json`."""
        return {"avg_iou": self.avg_iou, "class": self.avg_class, "obj": self.avg_obj,
                "no_obj": self.avg_no_obj, "avg_recall": self.avg_recall, "count": self.count}

    def stats_line(self) -> str:
        """Darknet's training printout (region_layer.c:forward_region_layer).

        DIVERGES: a 0/0 average prints `nan` where glibc prints `-nan`.
        """
        return (f"Region Avg IOU: {self.avg_iou:f}, Class: {self.avg_class:f}, Obj: {self.avg_obj:f}, "
                f"No Obj: {self.avg_no_obj:f}, Avg Recall: {self.avg_recall:f},  count: {self.count:d}")


def region_input_gradient(output: Tensor, delta: Tensor) -> Tensor:
    """d(loss)/d(raw conv output) for Darknet's region backward; shape (B, A, 5+C, H, W).

    DARKNET(region_layer.c:backward_region_layer_gpu): the delta of the logistic entries
    (x, y, objectness) is multiplied by y*(1-y); w, h and the classes pass unchanged (the
    softmax + cross-entropy shortcut, also for the WordTree softmax). Darknet's delta is the
    negative gradient, so the result is negated: ``raw.backward(gradient=g.view_as(raw))`` puts
    minus Darknet's `weight_updates` into `.grad`, and plain SGD then steps as Darknet does.
    """
    factor = torch.ones_like(output)
    logistic = output.detach()[:, :, [0, 1, OBJ]]
    factor[:, :, [0, 1, OBJ]] = logistic * (1 - logistic)
    return -(delta * factor)


@dataclass
class _ClassTruths:
    """Class truths placed at an output cell: K rows of image, anchor, row, col, tree node and list order."""
    b: Tensor
    n: Tensor
    j: Tensor
    i: Tensor
    node: Tensor
    order: Tensor

    @staticmethod
    def cat(parts: list[_ClassTruths]) -> _ClassTruths:
        return _ClassTruths(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(_ClassTruths)))


class _Writer:
    """Accumulates Darknet's writes into ``target`` and ``scale``, each (B, A, 5+C, H, W)."""

    def __init__(self, output: Tensor):
        self.target = torch.zeros_like(output)
        self.scale = torch.zeros_like(output)

    def put(self, index: tuple, target: Tensor | float, scale: Tensor | float) -> None:
        self.target[index] = target
        self.scale[index] = scale


def _valid_rows(truth: Tensor) -> Tensor:
    """(B, T) bool: rows before the first x == 0 row (region_layer.c: `if(!truth.x) break`)."""
    return torch.cumprod(truth[..., 0] != 0, dim=1).bool()


def _noobject_and_prior(out: Tensor, pred: Tensor, truth: Tensor, rows: Tensor, boxed: Tensor,
                        anchors: Tensor, opts: RegionOptions, seen: int, writer: _Writer) -> Tensor:
    """No-object deltas everywhere, warm-up prior deltas for images with boxes; returns their Σ objectness.

    pred: (B, A, H, W, 4) predicted boxes; rows: (B, T) valid truth rows; boxed: (B,) images
    trained on boxes (no classification-only row).
    """
    _, a, _, h, w = out.shape
    ious = box_iou(pred[:, :, :, :, None], truth[:, None, None, None, :, :4])   # (B, A, H, W, T)
    best_iou = torch.where(rows[:, None, None, None], ious, torch.zeros_like(ious)).amax(-1)
    # DARKNET(region_layer.c:forward_region_layer): no penalty where a prediction already fits a truth
    matched = (best_iou > opts.thresh) & boxed[:, None, None, None]
    writer.put((slice(None), slice(None), OBJ), 0.0,
               torch.where(matched, 0.0, opts.noobject_scale).to(out.dtype))
    if seen < PRIOR_SEEN:
        col = torch.arange(w, dtype=out.dtype, device=out.device)
        row = torch.arange(h, dtype=out.dtype, device=out.device)[:, None]
        anchor_wh = anchors[:, None, None, :].expand(a, h, w, 2)
        prior = torch.stack((((col + .5) / w).expand(a, h, w), ((row + .5) / h).expand(a, h, w),
                             anchor_wh[..., 0] / w, anchor_wh[..., 1] / h), dim=-1)   # (A, H, W, 4)
        targets = encode_boxes(prior, col, row, anchor_wh, w, h).permute(0, 3, 1, 2)  # (A, 4, H, W)
        writer.put((boxed.nonzero()[:, 0], slice(None), slice(0, 4)), targets, PRIOR_SCALE)
    return out[boxed, :, OBJ].sum()


def _box_truths(out: Tensor, pred: Tensor, truth: Tensor, rows: Tensor, anchors: Tensor, opts: RegionOptions,
                class_map: Tensor | None, writer: _Writer) -> tuple[_ClassTruths, Tensor, Tensor]:
    """Box and objectness deltas of every truth with a box; returns its class truths, IoUs (K,), objectness (K,).

    pred: (B, A, H, W, 4) predicted boxes; rows: (B, T) truth rows to use, in list order.
    """
    _, a, _, h, w = out.shape
    b_idx, t_idx = rows.nonzero(as_tuple=True)
    box = truth[b_idx, t_idx, :4]                                           # (K, 4)
    # DARKNET(region_layer.c:forward_region_layer): the cell is the truncated relative centre
    i = (box[:, 0] * w).long()
    j = (box[:, 1] * h).long()
    if opts.bias_match:
        shape_wh = (anchors / anchors.new_tensor([w, h])).expand(len(box), a, 2)
    else:
        shape_wh = pred[b_idx, :, j, i, 2:]                                 # (K, A, 2)
    # DARKNET(region_layer.c:forward_region_layer): the anchor is chosen by shape only (centres at 0)
    centred = torch.cat((torch.zeros_like(shape_wh), shape_wh), dim=-1)
    truth_centred = torch.cat((torch.zeros_like(box[:, None, 2:]), box[:, None, 2:]), dim=-1)
    best_n = box_iou(centred, truth_centred).argmax(dim=1)             # first best, as Darknet's strict >
    iou = box_iou(pred[b_idx, best_n, j, i], box)                      # (K,)

    # DARKNET(region_layer.c:forward_region_layer): a later truth in the same cell and anchor overwrites;
    # index_put with repeated indices is undefined, so the last truth per cell is picked explicitly
    cell = ((b_idx * a + best_n) * h + j) * w + i
    last = torch.full((out.shape[0] * a * h * w,), -1, dtype=torch.long, device=out.device)
    last.scatter_reduce_(0, cell, t_idx, "amax")
    win = last[cell] == t_idx
    wb, wn, wj, wi = b_idx[win], best_n[win], j[win], i[win]
    targets = encode_boxes(box[win], wi.to(out.dtype), wj.to(out.dtype), anchors[wn], w, h)
    writer.put((wb, wn, slice(0, 4), wj, wi), targets,
               (opts.coord_scale * (2 - box[win, 2] * box[win, 3]))[:, None])
    writer.put((wb, wn, OBJ, wj, wi), iou[win] if opts.rescore else 1.0, opts.object_scale)

    node = truth[b_idx, t_idx, 4].long()
    if class_map is not None:
        node = class_map.to(out.device)[node]
    order = b_idx * truth.shape[1] + t_idx
    return _ClassTruths(b_idx, best_n, j, i, node, order), iou, out[b_idx, best_n, OBJ, j, i]


def _classification_truths(out: Tensor, truth: Tensor, label_row: Tensor, paths: Tensor,
                           writer: _Writer) -> _ClassTruths:
    """Place each image's classification-only label at its most confident cell; returns those class truths.

    label_row: (B, T) bool, the first classification-only row of each image that has one.
    DARKNET(region_layer.c:forward_region_layer): the anchor and cell maximising objectness x path
    probability get the class deltas and objectness delta 0; the image's no-object deltas stay.
    """
    _, a, _, h, w = out.shape
    b_idx, t_idx = label_row.nonzero(as_tuple=True)
    node = truth[b_idx, t_idx, 4].long()
    image_paths = paths.to(out.device)[node][:, None, :, None]               # (K, 1, D, 1)
    probs = out[b_idx, :, CLS:].flatten(3)                                  # (K, A, C, H*W)
    score = out[b_idx, :, OBJ].flatten(2) * WordTree.path_product(probs, image_paths, dim=2)[:, :, 0]   # (K, A, H*W)
    best = score.flatten(1).argmax(dim=1)                                   # first best in Darknet's n, y, x order
    n, cell = best // (h * w), best % (h * w)
    j, i = cell // w, cell % w
    # DARKNET(region_layer.c:forward_region_layer): the .3 objectness target computed there is overwritten by 0
    writer.put((b_idx, n, OBJ, j, i), 0.0, 0.0)
    return _ClassTruths(b_idx, n, j, i, node, b_idx * truth.shape[1] + t_idx)


def _class_deltas(out: Tensor, truths: _ClassTruths, tree: WordTree, paths: Tensor, class_scale: float,
                  writer: _Writer) -> Tensor:
    """Class deltas of every truth's path; returns each truth's path probability (K,) for the stats.

    DARKNET(region_layer.c:delta_region_class): for each node on the path, every member of its
    group gets ``class_scale*(0 - p)`` and the node ``class_scale*(1 - p)``. Groups written by
    several truths of one cell and anchor keep the last truth's targets.
    """
    dev = out.device
    path = paths.to(dev)[truths.node]                                        # (K, D)
    k, d = (path >= 0).nonzero(as_tuple=True)
    node = path[k, d]
    group = torch.as_tensor(tree.group, device=dev)[node]
    b, n, j, i = truths.b[k], truths.n[k], truths.j[k], truths.i[k]
    _, _, _, h, w = out.shape
    key = ((((b * out.shape[1] + n) * h + j) * w + i) * tree.groups + group)
    # index_put with repeated indices is undefined, so the last truth per (cell, group) is picked explicitly
    slot, inverse = key.unique(return_inverse=True)
    last = torch.full_like(slot, -1).scatter_reduce_(0, inverse, truths.order[k], "amax")
    win = last[inverse] == truths.order[k]
    node, group, b, n, j, i = node[win], group[win], b[win], n[win], j[win], i[win]

    size = torch.as_tensor(tree.group_size, device=dev)[group]
    owner = torch.repeat_interleave(torch.arange(len(node), device=dev), size)
    start = torch.cumsum(size, 0) - size
    member = torch.as_tensor(tree.group_offset, device=dev)[group][owner] + \
        torch.arange(int(size.sum()), device=dev) - start[owner]
    writer.put((b[owner], n[owner], CLS + member, j[owner], i[owner]),
               (member == node[owner]).to(out.dtype), class_scale)

    probs = out[truths.b, truths.n, CLS:, truths.j, truths.i]                # (K, C)
    return WordTree.path_product(probs, path, dim=1)[:, 0]


def check_trainable(opts: RegionOptions, tree: WordTree | None, where: str = "[region]") -> None:
    """CfgError unless this loss can train the `[region]` layer described by `opts` (named by `where`)."""
    if opts.coords != 4:
        raise UnsupportedError(f"{where}: region training with coords={opts.coords} (masks) is not implemented")
    if tree is None and not opts.softmax:
        raise UnsupportedError(f"{where}: region training with logistic classes (softmax=0, no tree) is not implemented")


def _check_supported(output: Tensor, truth: Tensor, opts: RegionOptions, tree: WordTree | None) -> None:
    check_trainable(opts, tree)
    expected = (opts.num, 5 + opts.classes)
    if output.dim() != 5 or tuple(output.shape[1:3]) != expected:
        raise ValueError(f"output shape {tuple(output.shape)} is not (B, {expected[0]}, {expected[1]}, H, W)")
    if truth.dim() != 3 or truth.shape[0] != output.shape[0] or truth.shape[2] != 5:
        raise ValueError(f"truth shape {tuple(truth.shape)} is not ({output.shape[0]}, T, 5)")


def region_loss(output: Tensor, truth: Tensor, opts: RegionOptions, seen: int,
                tree: WordTree | None = None, class_map: Tensor | np.ndarray | None = None) -> RegionLoss:
    """Darknet's region-layer training deltas, cost and statistics.

    output: (B, A, 5+C, H, W) activated region output (`RegionLayer.forward`); truth: (B, T, 5);
    seen: images seen *including* this batch (Darknet increments `seen` before the forward);
    tree: the `tree=` WordTree (YOLO9000), else a softmax over the classes; class_map: (K,) the
    `map=` file, applied to the class of truths with a box.
    """
    _check_supported(output, truth, opts, tree)
    with torch.no_grad():
        out = output.detach()
        truth = truth[:, :MAX_TRUTHS].to(device=out.device, dtype=out.dtype)
        anchors = out.new_tensor(opts.anchors).view(-1, 2)[:opts.num]
        class_tree = tree if tree is not None else WordTree.flat(opts.classes)
        paths = class_tree.ancestor_table()
        rows = _valid_rows(truth)
        label_rows = rows & (truth[..., 0] > CLASSIFICATION_ONLY_ABOVE) & (truth[..., 1] > CLASSIFICATION_ONLY_ABOVE)
        if tree is None:
            # DARKNET(region_layer.c:forward_region_layer): labels without a box are only recognised with a tree
            label_rows = torch.zeros_like(label_rows)
        first_label = label_rows & (torch.cumsum(label_rows, dim=1) == 1)
        boxed = ~label_rows.any(dim=1)

        writer = _Writer(out)
        pred = decode_boxes(out, anchors)
        any_obj = _noobject_and_prior(out, pred, truth, rows, boxed, anchors, opts, seen, writer)
        box_classes, iou, obj = _box_truths(out, pred, truth, rows & boxed[:, None], anchors, opts,
                                           None if class_map is None else torch.as_tensor(class_map), writer)
        label_classes = _classification_truths(out, truth, first_label, paths, writer)
        class_prob = _class_deltas(out, _ClassTruths.cat([box_classes, label_classes]), class_tree, paths,
                                   opts.class_scale, writer)
        delta = writer.scale * (writer.target - out)

    b, a, _, h, w = out.shape
    count = len(iou)
    return RegionLoss(
        target=writer.target, scale=writer.scale, delta=delta,
        cost=float((delta.double() ** 2).sum()),
        avg_iou=_mean(iou.sum(), count), avg_class=_mean(class_prob.sum(), len(class_prob)),
        avg_obj=_mean(obj.sum(), count),
        # DARKNET(region_layer.c:forward_region_layer): divided by every cell of the batch, label-only images included
        avg_no_obj=_mean(any_obj, b * a * h * w),
        avg_recall=_mean((iou > RECALL_IOU).sum(), count), count=count)


def _mean(total: Tensor, count: int) -> float:
    """Darknet's float division of a sum by a count (0/0 gives nan)."""
    return float(total) / count if count else float("nan")
