"""What a task adds to the one training loop: one `Task` per training task (detector, classifier).

DARKNET(network.c:train_network_datum) is shared by `detector train` and `classifier train`; what
differs is the loss layer, its data, the backup schedule and the printed line. A task gives:
the module DDP wraps (the net up to its loss layer, or layers: a [yolo] net has 2-3), the loss and the gradient
it sends into each loss layer's input, the training data, the backups due after an iteration, and the lines printed.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable

from torch import Tensor, nn

from ..dialect import PJREDDIE, Dialect

if TYPE_CHECKING:
    from ..data.files import DataConfig
    from ..network import Darknet


class Task(ABC):
    """A training task. `top` is the index of the (last) loss layer; `backup_default` the folder used when
    the .data file has no `backup=` (relative to the working directory, as Darknet opens it)."""

    top: int
    backup_default: str
    dialect: Dialect = PJREDDIE   # whose Darknet trains: its loss, data, schedule and lines

    def __init__(self, net: Darknet):
        self.net = net

    @abstractmethod
    def forward_module(self) -> nn.Module:
        """images (B, 3, H, W) -> (the loss layer's input, the loss layer's output), or for several loss layers
        ({index: input}, {index: output}) (`step.TrainingForward`)."""

    @abstractmethod
    def loss(self, output: Tensor, truths: Tensor) -> Any:
        """The loss of one mini-batch (`output` as `forward_module` returns it): an object with `cost` (float) and
        Darknet's negative gradient (`delta`, or `deltas` by layer index)."""

    @abstractmethod
    def input_gradient(self, output: Tensor, loss: Any) -> Tensor:
        """The gradient of the cost with respect to the loss layer's input (Darknet's backward delta, negated); a dict
        by layer index for several loss layers."""

    def mini_batch_line(self, loss: Any) -> str | None:
        """What Darknet prints after each mini-batch, if anything."""
        return None

    def check_data(self, data: DataConfig, data_path: str | os.PathLike, log: Callable[[str], None]) -> None:
        """The checks of the training data that need no weights (run before they are loaded: 8-14 s for a big
        net); an error when there is nothing to train on. None by default."""
        return None

    @abstractmethod
    def open_data(self, data: DataConfig, data_path: str | os.PathLike, *, start_batch: int, seed: int,
                  workers: int, decoder: str, stride: int = 1, log: Callable[[str], None] = print):
        """The training loader (yielding (images, truths) mini-batches, with `skipped_count`) for the
        iterations start_batch, start_batch + stride, ... below max_batches; images are decoded with
        `decoder` (see `image.load_image`); `log` prints Darknet's lines while loading (multi-scale `Resizing`)."""

    def header_lines(self) -> list[str]:
        """Lines Darknet prints after the learning-rate line, once the data is open."""
        return []

    @abstractmethod
    def printed_images(self, world: int) -> int:
        """The `images` figure of the iteration line."""

    def epoch(self) -> float | None:
        """Epochs trained (classifier line), or None when the line has none."""
        return None

    @abstractmethod
    def backup_names(self, batch: int, base: str) -> list[str]:
        """The weights files due after iteration `batch`, in the backup folder."""

    @abstractmethod
    def final_name(self, base: str) -> str:
        """The weights file written at the end of training."""


def task_for(net: Darknet) -> Task:
    """The task of a net: a detector if it has a detection head ([region], [yolo], [Gaussian_yolo], [detection]),
    else a `[softmax]` classifier."""
    from .classifier import ClassifierTask
    from .detector import DetectorTask

    return DetectorTask(net) if any(layer.outputs_detections for layer in net.layers) else ClassifierTask(net)
