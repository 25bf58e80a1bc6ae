"""`classifier train` and `classifier valid`: Darknet's classifier loop and accuracy check.

DARKNET(classifier.c:train_classifier): every iteration draws `batch` random images of the `train=`
list, labels each from its path (`labels=` list, hierarchical with a WordTree, see
`data.classification`), trains them as `subdivisions` mini-batches and updates once. The loss is the
`[softmax]` layer's cross-entropy; a `[cost]` layer after it adds its L2 delta. Printed per iteration:
`batch, epoch: loss, avg avg, rate rate, seconds seconds, images images`. Backups in the .data
`backup` folder: `<cfg>_<epoch>.weights` after each epoch (one pass over the list in images),
`<cfg>.backup` every 1000 iterations and `<cfg>.weights` at the end.

DARKNET(classifier.c:validate_classifier_single): every `valid=` image, centre-cropped, is classified
(with a tree: absolute leaf probabilities), and the running top-1 / top-k accuracy is printed.

Example::

    result = train_classifier("cfg/imagenet1k.data", "cfg/darknet19.cfg")
    accuracy = validate_classifier(load_network("cfg/darknet19.cfg", result.final_weights), "cfg/imagenet1k.data")
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.classification import (SECRET_NUM, ClassificationDataset, CropOptions, class_of_path,
                                   classification_train_loader, classification_valid_loader)
from ..data.files import DataConfig, read_data_file, read_list, read_names
from ..layers.softmax import SoftmaxLayer
from ..layers.structure import CostLayer
from ..network import Darknet, network_mode, select_device
from ..tree import WordTree
from ..weights import load_weights, save_weights
from .sgd import DarknetSGD
from .step import current_rate, trained_parameters, update_due
from .train import IterationLog, TrainingError, fill_minibatch, cfg_base

BACKUP_EVERY = 1000      # DARKNET(classifier.c:train_classifier): <cfg>.backup
L2_COSTS = ("sse", "masked")
VALID_BATCH = 8          # images per forward in `validate_classifier`; only float rounding depends on it


# ---------------------------------------------------------------------------- loss

@dataclass
class ClassifierLoss:
    """What the loss layers of one mini-batch produce.

    delta: (B, n) the `[softmax]` layer's delta after the `[cost]` layers' backward, Darknet's
        negative gradient, applied unchanged to the softmax input.
    costs: each loss layer's cost summed over the mini-batch, the softmax first.
    """

    delta: Tensor
    costs: list[float]

    @property
    def cost(self) -> float:
        """DARKNET(network.c:calc_network_cost): the mean over the layers that have a cost."""
        return sum(self.costs) / len(self.costs)


def softmax_x_ent(probs: Tensor, truth: Tensor, masked: bool) -> tuple[Tensor, Tensor]:
    """Delta ``truth - p`` and error ``-log p`` where ``truth != 0``; both (B, n) like `probs`.

    DARKNET(blas.c:softmax_x_ent_cpu) with the mask of DARKNET(softmax_layer.c:forward_softmax_layer_gpu):
    with a tree (`masked`) entries whose truth is SECRET_NUM get neither delta nor error.
    DIVERGES: Darknet's CPU build applies no mask, so a masked group there pushes every logit by -1234.
    """
    delta = truth - probs
    error = torch.where(truth != 0, -torch.log(probs), torch.zeros_like(probs))
    if masked:
        keep = truth != SECRET_NUM
        delta = torch.where(keep, delta, torch.zeros_like(delta))
        error = torch.where(keep, error, torch.zeros_like(error))
    return delta, error


def l2_cost(layer: CostLayer, probs: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """A `[cost]` layer on the softmax output: its delta (scaled for the backward) and error, (B, n).

    DARKNET(cost_layer.c:forward_cost_layer): ``diff = truth - p``, error ``diff**2``; `type=masked`
    first sets p to SECRET_NUM where the truth is, so masked entries give 0; the backward adds
    ``scale * diff`` to the softmax delta (cost_layer.c:backward_cost_layer).
    DIVERGES: the GPU build forgets to mask the cost layer's own delta; the CPU rule is kept.
    """
    if layer.cost_type not in L2_COSTS:
        raise NotImplementedError(f"[cost] type={layer.cost_type} is not implemented (only {', '.join(L2_COSTS)})")
    diff = truth - probs
    if layer.cost_type == "masked":
        diff = torch.where(truth == SECRET_NUM, torch.zeros_like(diff), diff)
    return layer.scale * diff, diff * diff


def classifier_loss(probs: Tensor, truth: Tensor, tree: bool, cost_layers: Sequence[CostLayer] = ()) -> ClassifierLoss:
    """The deltas and costs of a classifier's `[softmax]` layer (`tree`: it has a WordTree) and the
    `[cost]` layers after it. probs, truth: (B, n)."""
    with torch.no_grad():
        delta, error = softmax_x_ent(probs, truth, masked=tree)
        costs = [float(error.double().sum())]
        for layer in cost_layers:
            layer_delta, layer_error = l2_cost(layer, probs, truth)
            delta = delta + layer_delta
            costs.append(float(layer_error.double().sum()))
    return ClassifierLoss(delta, costs)


# ---------------------------------------------------------------------------- one step

class ClassifierForward(nn.Module):
    """A classifier up to its last `[softmax]` layer (only `[cost]` layers may follow it).

    forward(images (B, 3, H, W)) -> (softmax input (B, C, H', W'), probabilities (B, n = C*H'*W')).
    """

    def __init__(self, net: Darknet):
        super().__init__()
        softmax = [i for i, layer in enumerate(net.layers) if isinstance(layer, SoftmaxLayer)]
        if not softmax:
            raise ValueError(f"{net.cfg_path}: classifier training needs a [softmax] layer")
        self.net = net
        self.softmax_index = softmax[-1]
        self.input_index = net.sources[self.softmax_index][0]
        after = list(net.layers[self.softmax_index + 1:])
        if not all(isinstance(layer, CostLayer) for layer in after):
            raise NotImplementedError(f"{net.cfg_path}: only [cost] layers may follow the last [softmax] "
                                      f"in classifier training")
        self.cost_layers: list[CostLayer] = after

    @property
    def softmax(self) -> SoftmaxLayer:
        return self.net.layers[self.softmax_index]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        outputs = self.net.run(images, keep={self.input_index}, upto=self.softmax_index + 1)
        return outputs[self.input_index], outputs[self.softmax_index].flatten(1)


@dataclass
class ClassifierStep:
    """One mini-batch: probabilities (B, n) in training mode, the loss, `net.seen` after it, and the
    rate of the update applied (None when no update was due)."""

    probs: Tensor
    loss: ClassifierLoss
    seen: int
    learning_rate: float | None


def classifier_step(net: Darknet, images: Tensor, truths: Tensor, optimizer: DarknetSGD, *,
                    seen: int | None = None, apply: bool = True, model: ClassifierForward | None = None
                    ) -> ClassifierStep:
    """DARKNET(network.c:train_network_datum) for a classifier: images (B, 3, H, W), truths (B, n).

    B must be the cfg's batch/subdivisions. `seen` replaces `net.seen` first; the update is applied
    when due and `apply` is true.
    """
    options = net.options
    if images.shape[0] != options.mini_batch:
        raise ValueError(f"{images.shape[0]} images given; the cfg trains on mini-batches of "
                         f"batch/subdivisions = {options.mini_batch}")
    model = model or ClassifierForward(net)
    if seen is not None:
        net.seen = seen
    net.seen += options.mini_batch
    with network_mode(net, True):
        logits, probs = model(images)
    if truths.shape != probs.shape:
        raise ValueError(f"truths of shape {tuple(truths.shape)} for outputs of shape {tuple(probs.shape)}")
    loss = classifier_loss(probs.detach(), truths.to(probs), model.softmax.tree is not None, model.cost_layers)
    trained = trained_parameters(net, model.softmax_index)
    if trained:
        # DARKNET(softmax_layer.c:backward_softmax_layer): the delta reaches the softmax input unchanged
        # (cross-entropy shortcut: no softmax Jacobian, no temperature); it is the negative gradient
        logits.backward(-loss.delta.view_as(logits), inputs=trained)
    optimizer.accumulate()
    rate = None
    if apply and update_due(options, net.seen):
        rate = current_rate(options, net.seen)
        optimizer.set_rate(rate)
        optimizer.step()
    return ClassifierStep(probs.detach(), loss, net.seen, rate)


# ---------------------------------------------------------------------------- training loop

@dataclass
class ClassifierIterationLog(IterationLog):
    """One iteration of `classifier train`; `epoch` = images seen / images in the list."""

    epoch: float = 0.0

    def line(self) -> str:
        # DARKNET(classifier.c:train_classifier): "%ld, %.3f: %f, %f avg, %f rate, %lf seconds, %ld images"
        return (f"{self.batch}, {self.epoch:.3f}: {self.loss:f}, {self.avg_loss:f} avg, {self.rate:f} rate, "
                f"{self.seconds:f} seconds, {self.images} images")


@dataclass
class ClassifierTrainResult:
    """`<cfg>.weights`, the per-iteration log, and how many bad images were skipped."""

    final_weights: Path
    history: list[ClassifierIterationLog] = field(default_factory=list)
    skipped_samples: int = 0


def crop_options(net: Darknet) -> CropOptions:
    """The training crop settings of a net's `[net]` section."""
    options, w = net.options, net.width
    # DARKNET(classifier.c:train_classifier): args.min/max = ratio * w, truncated (ratios derived in NetOptions)
    return CropOptions(min=int(options.min_ratio * w), max=int(options.max_ratio * w), angle=options.angle,
                       aspect=options.aspect, hue=options.hue, saturation=options.saturation,
                       exposure=options.exposure)


def _labels(data: DataConfig, classes: int) -> list[str]:
    labels = read_names(data.get_path("labels", "data/labels.list"))
    if len(labels) < classes:
        raise data.error(f"classes={classes} but the labels file lists {len(labels)} labels", "labels")
    return labels[:classes]


def _check_outputs(data: DataConfig, classes: int, model: ClassifierForward) -> None:
    outputs = model.net.shapes[model.softmax_index].size
    if outputs != classes:
        raise data.error(f"classes={classes} but the net's [softmax] has {outputs} outputs", "classes")


def train_classifier(data_path: str | os.PathLike, cfg_path: str | os.PathLike,
                     weights: str | os.PathLike | None = None, *, clear: bool = False,
                     device: str | torch.device | None = None, workers: int = 2, seed: int = 0,
                     max_batches: int | None = None, log: Callable[[str], None] = print) -> ClassifierTrainResult:
    """Train a classifier as `darknet classifier train data cfg [weights] [-clear]`.

    The `.data` keys read: `classes` (2), `train` (data/train.list), `labels` (data/labels.list),
    `backup` (/backup/), `tree` (else the `[softmax]` layer's). `max_batches` overrides the cfg's.
    """
    data = read_data_file(data_path)
    if data.get_int("tag", 0):
        raise NotImplementedError("tag=1 (multi-label tag data) is not implemented")
    net = Darknet.from_cfg(cfg_path)
    if weights is not None:
        load_weights(net, weights)
    if clear:
        net.seen = 0   # DARKNET(network.c:load_network): -clear starts the counters again
    options = net.options
    if max_batches is not None:
        options.max_batches = max_batches
    if options.max_batches <= 0:
        raise ValueError("max_batches must be positive (DIVERGES: Darknet trains forever with max_batches=0)")
    if options.random:
        raise NotImplementedError("random=1 (classifier multi-scale training) is not implemented")
    model = ClassifierForward(net)
    classes = data.get_int("classes", 2)
    _check_outputs(data, classes, model)
    # DARKNET(classifier.c:train_classifier): a data file's tree= replaces the net's for the truths
    tree = WordTree.read(data.get_path("tree")) if data.has("tree") else model.softmax.tree
    paths = read_list(data.get_path("train", "data/train.list"))
    backup_dir = Path(data.get_str("backup", "/backup/"))
    backup_dir.mkdir(parents=True, exist_ok=True)
    net.to(select_device(device), memory_format=torch.channels_last)  # NHWC convolutions, as train_detector

    crop = crop_options(net)
    dataset = ClassificationDataset(paths, _labels(data, classes), (net.width, net.height), crop, tree)
    images_per_iteration = options.mini_batch * options.subdivisions
    loader = classification_train_loader(dataset, options.batch, options.subdivisions, options.max_batches,
                                         start_batch=net.seen // images_per_iteration, seed=seed, workers=workers)
    optimizer = DarknetSGD(net)
    base = cfg_base(cfg_path)
    log(base)
    log(f"Learning Rate: {options.learning_rate:g}, Momentum: {options.momentum:g}, Decay: {options.decay:g}")
    log(f"{len(paths)}")
    log(f"{crop.min} {crop.max}")
    result = ClassifierTrainResult(final_weights=backup_dir / f"{base}.weights")
    epoch = net.seen // len(paths)
    cost, tick = 0.0, time.perf_counter()
    for images, truths in loader:
        images, truths = fill_minibatch(images, truths, options.mini_batch)
        images = images.to(net.device).contiguous(memory_format=torch.channels_last)
        step = classifier_step(net, images, truths.to(net.device), optimizer, model=model)
        cost += step.loss.cost
        if step.learning_rate is None:
            continue
        entry = _log_entry(net, cost / images_per_iteration, step.learning_rate, result.history,
                           time.perf_counter() - tick, len(paths))
        if not math.isfinite(entry.loss):
            raise TrainingError(f"loss is {entry.loss} at iteration {entry.batch}; the last good weights are "
                                f"the latest backup in {backup_dir}")
        result.history.append(entry)
        log(entry.line())
        if net.seen // len(paths) > epoch:
            epoch = net.seen // len(paths)
            save_weights(net, backup_dir / f"{base}_{epoch}.weights")
        if entry.batch % BACKUP_EVERY == 0:
            save_weights(net, backup_dir / f"{base}.backup")
        cost, tick = 0.0, time.perf_counter()
    result.skipped_samples = loader.skipped_count
    save_weights(net, result.final_weights)
    return result


def _log_entry(net: Darknet, loss: float, rate: float, history: list[ClassifierIterationLog], seconds: float,
               list_size: int) -> ClassifierIterationLog:
    batch = net.seen // (net.options.mini_batch * net.options.subdivisions)
    # DARKNET(classifier.c:train_classifier): avg_loss starts at the first loss, then .9*avg + .1*loss
    previous = history[-1].avg_loss if history else loss
    return ClassifierIterationLog(batch, loss, previous * 0.9 + loss * 0.1, rate, seconds, net.seen,
                                  epoch=float(np.float32(net.seen) / np.float32(list_size)))


# ---------------------------------------------------------------------------- validation

@dataclass(frozen=True)
class ClassifierAccuracy:
    """Top-1 and top-k accuracy over `images` validation images."""

    top1: float
    topk: float
    k: int
    images: int


def leaf_mask(tree: WordTree, leaves_path: str | os.PathLike | None = None) -> np.ndarray:
    """(n,) bool: the nodes whose probability counts, the tree's leaves or those a `leaves=` file names.

    DARKNET(tree.c:change_leaves): with a leaves file, exactly the nodes whose wnid it lists.
    """
    if leaves_path is None:
        return tree.leaf.copy()
    return np.isin(np.array(tree.name), read_names(leaves_path))


def top_k(probs: Tensor, k: int) -> Tensor:
    """(B, k) indices of the k largest values of probs (B, n), highest first; on ties the lower index
    first (DARKNET(utils.c:top_k))."""
    return torch.sort(probs, dim=1, descending=True, stable=True).indices[:, :k]


@torch.no_grad()
def validate_classifier(net: Darknet, data_path: str | os.PathLike, *, workers: int = 2,
                        batch: int = VALID_BATCH, log: Callable[[str], None] = print) -> ClassifierAccuracy:
    """`darknet classifier valid data cfg weights`: top-1/top-k accuracy on the `valid=` list.

    .data keys: `classes` (2), `valid` (data/train.list), `labels` (data/labels.list), `top` (1),
    `leaves`. Prints, per image, Darknet's two lines (path, true class, first two probabilities;
    the running accuracies).
    """
    data = read_data_file(data_path)
    classes = data.get_int("classes", 2)
    topk = data.get_int("top", 1)
    labels = _labels(data, classes)
    paths = read_list(data.get_path("valid", "data/train.list"))
    # DARKNET(parser.c:parse_network_cfg): net->hierarchy is the tree of a [softmax] layer
    tree = net.hierarchy
    if tree is not None:
        leaves = torch.from_numpy(leaf_mask(tree, data.get_path("leaves") if data.has("leaves") else None))
    top1_hits = topk_hits = 0
    with network_mode(net, False):
        for indices, images in classification_valid_loader(paths, (net.width, net.height), batch, workers):
            probs = net(images.to(net.device)).flatten(1).float().cpu()
            if tree is not None:
                # DARKNET(classifier.c:validate_classifier_single): hierarchy_predictions with only_leaves=1
                probs = tree.hierarchy_predictions(probs, dim=1) * leaves
            best = top_k(probs[:, :classes], topk)
            for index, row, order in zip(indices.tolist(), probs, best.tolist()):
                truth = class_of_path(paths[index], labels)
                top1_hits += order[0] == truth
                topk_hits += truth in order
                seen = np.float32(index + 1)
                log(f"{paths[index]}, {truth}, {float(row[0]):f}, {float(row[1]):f}, ")
                log(f"{index}: top 1: {np.float32(top1_hits) / seen:f}, top {topk}: {np.float32(topk_hits) / seen:f}")
    return ClassifierAccuracy(top1_hits / len(paths), topk_hits / len(paths), topk, len(paths))
