"""`classifier train`: the `[softmax]` (and WordTree) task of the training loop.

DARKNET(classifier.c:train_classifier): every iteration draws `batch` random images of the `train=`
list, labels each from its path (`labels=` list, hierarchical with a WordTree, see
`data.classification`), trains them as `subdivisions` mini-batches and updates once. The loss is the
`[softmax]` layer's cross-entropy; a `[cost]` layer after it adds its L2 delta. Printed per iteration:
`batch, epoch: loss, avg avg, rate rate, seconds seconds, images images`. Backups in the .data
`backup` folder: `<cfg>_<epoch>.weights` after each epoch (one pass over the list in images),
`<cfg>.backup` every 1000 iterations and `<cfg>.weights` at the end.

Example::

    result = train_classifier("cfg/imagenet1k.data", "cfg/darknet19.cfg")
    accuracy = validate_classifier(load_network("cfg/darknet19.cfg", result.final_weights), "cfg/imagenet1k.data")
"""
from __future__ import annotations

from typing import Callable

import os

import numpy as np
from torch import Tensor

from ..data.classification import ClassificationDataset, CropOptions, class_labels, classification_train_loader
from ..data.files import DataConfig, read_list
from ..errors import CfgError
from ..layers.softmax import SoftmaxLayer
from ..layers.structure import CostLayer
from ..losses.softmax import ClassifierLoss, classifier_loss
from ..network import Darknet
from ..tree import WordTree
from .tasks import Task
from .sgd import DarknetSGD
from .step import StepResult, TrainingForward, train_step

BACKUP_EVERY = 1000      # DARKNET(classifier.c:train_classifier): <cfg>.backup


class ClassifierForward(TrainingForward):
    """A classifier up to its last `[softmax]` layer (only `[cost]` layers may follow it).

    forward(images (B, 3, H, W)) -> (softmax input (B, C, H', W'), probabilities (B, n = C*H'*W')).
    """

    def __init__(self, net: Darknet):
        softmax = [i for i, layer in enumerate(net.layers) if isinstance(layer, SoftmaxLayer)]
        if not softmax:
            raise CfgError(f"{net.cfg_path}: classifier training needs a [softmax] layer")
        super().__init__(net, softmax[-1])
        after = list(net.layers[self.top + 1:])
        if not all(isinstance(layer, CostLayer) for layer in after):
            raise CfgError(f"{net.cfg_path}: only [cost] layers may follow the last [softmax] in classifier training")
        self.cost_layers: list[CostLayer] = after

    @property
    def softmax(self) -> SoftmaxLayer:
        return self.net.layers[self.top]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        logits, probs = super().forward(images)
        return logits, probs.flatten(1)


def crop_options(net: Darknet) -> CropOptions:
    """The training crop settings of a net's `[net]` section."""
    options, w = net.options, net.width
    # DARKNET(classifier.c:train_classifier): args.min/max = ratio * w, truncated (ratios derived in NetOptions)
    return CropOptions(min=int(options.min_ratio * w), max=int(options.max_ratio * w), angle=options.angle,
                       aspect=options.aspect, hue=options.hue, saturation=options.saturation,
                       exposure=options.exposure)


class ClassifierTask(Task):
    """The last `[softmax]` layer's cross-entropy (plus `[cost]` layers) on `(B, n)` class truths."""

    backup_default = "/backup/"   # DARKNET(classifier.c:train_classifier): the .data default

    def __init__(self, net: Darknet):
        super().__init__(net)
        self.model = ClassifierForward(net)
        self.top = self.model.top
        self.paths: list[str] = []
        self.crop: CropOptions | None = None
        self.epochs_done = 0

    def forward_module(self) -> ClassifierForward:
        return self.model

    def loss(self, output: Tensor, truths: Tensor) -> ClassifierLoss:
        if truths.shape != output.shape:
            raise CfgError(f"truths of shape {tuple(truths.shape)} for outputs of shape {tuple(output.shape)}")
        tree = self.model.softmax.tree is not None
        return classifier_loss(output, truths.to(output), tree, self.model.cost_layers)

    def input_gradient(self, output: Tensor, loss: ClassifierLoss) -> Tensor:
        # DARKNET(softmax_layer.c:backward_softmax_layer): the delta reaches the softmax input unchanged
        return -loss.delta

    def open_data(self, data: DataConfig, data_path: str | os.PathLike, *, start_batch: int, seed: int,
                  workers: int, decoder: str, stride: int = 1, log: Callable[[str], None] = print):
        net, options = self.net, self.net.options
        if data.get_int("tag", 0):
            raise data.error("tag=1 (multi-label tag data) is not implemented", "tag")
        if options.random:
            raise net.net_section.error("random=1 (classifier multi-scale training) is not implemented", "random")
        classes = data.get_int("classes", 2)
        outputs = net.shapes[self.top].size
        if outputs != classes:
            raise data.error(f"classes={classes} but the net's [softmax] has {outputs} outputs", "classes")
        # DARKNET(classifier.c:train_classifier): a data file's tree= replaces the net's for the truths
        tree = WordTree.read(data.get_path("tree")) if data.has("tree") else self.model.softmax.tree
        self.paths = read_list(data.get_path("train", "data/train.list"))
        self.crop = crop_options(net)
        self.epochs_done = net.seen // len(self.paths)
        dataset = ClassificationDataset(self.paths, class_labels(data, classes), (net.width, net.height),
                                        self.crop, tree, decoder)
        return classification_train_loader(dataset, options.batch, options.subdivisions, options.max_batches,
                                           start_batch=start_batch, seed=seed, workers=workers, stride=stride)

    def header_lines(self) -> list[str]:
        return [f"{len(self.paths)}", f"{self.crop.min} {self.crop.max}"]

    def printed_images(self, world: int) -> int:
        return self.net.seen   # DARKNET(classifier.c:train_classifier): *net->seen

    def epoch(self) -> float:
        return float(np.float32(self.net.seen) / np.float32(len(self.paths)))

    def backup_names(self, batch: int, base: str) -> list[str]:
        names = []
        epochs = self.net.seen // len(self.paths)
        if epochs > self.epochs_done:
            self.epochs_done = epochs
            names.append(f"{base}_{epochs}.weights")
        if batch % BACKUP_EVERY == 0:
            names.append(f"{base}.backup")
        return names

    def final_name(self, base: str) -> str:
        return f"{base}.weights"


def classifier_step(net: Darknet, images: Tensor, truths: Tensor, optimizer: DarknetSGD, *,
                    model: ClassifierForward | None = None, **options) -> StepResult:
    """`train_step` with the classifier task: images (B, 3, H, W), truths (B, n)."""
    task = ClassifierTask(net)
    if model is not None:
        task.model = model
    return train_step(net, images, truths, optimizer, task=task, model=model, **options)


def train_classifier(data_path: str | os.PathLike, cfg_path: str | os.PathLike,
                     weights: str | os.PathLike | None = None, **options):
    """Train a classifier as `darknet classifier train data cfg [weights] [-clear]`.

    The `.data` keys read: `classes` (2), `train` (data/train.list), `labels` (data/labels.list),
    `backup` (/backup/), `tree` (else the `[softmax]` layer's). Options as `engine.train.train`.
    """
    from .train import train

    return train(ClassifierTask, data_path, cfg_path, weights, **options)
