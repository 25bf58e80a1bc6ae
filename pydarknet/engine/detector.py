"""`detector train`: the detection task of the training loop, for every head ([region], [yolo], [Gaussian_yolo],
YOLOv1's [detection]).

DARKNET(detector.c:train_detector): random images of the `train=` list, augmented (multi-scale with `random=1`);
printed per iteration `N: loss, avg avg, rate rate, seconds seconds, images images`. Backups with Darknet's names
and schedule: `<cfg>.backup` every 100 iterations, `<cfg>_<N>.weights` every 100 below 1000 and every 10000,
`<cfg>_final.weights` at the end.

Whose Darknet trains the net (`training_dialect`): a cfg that uses a key or a section only AlexeyAB's Darknet reads
(`darknet_keys`: e.g. [yolo] `iou_loss`, `scale_x_y`, [net] `mosaic`, [Gaussian_yolo]) trains as ALEXEYAB whatever
dialect is asked, since pjreddie's Darknet would ignore those keys; any other cfg trains in the dialect given
(the CLI's `-ab`), PJREDDIE by default. The dialect picks the [yolo] loss (pjreddie's or AlexeyAB's) and the data.
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, Callable

from torch import Tensor, nn

from ..darknet_keys import ALIASES, PJREDDIE_KEYS, readers
from ..data.check import check_dataset, require_same_classes
from ..data.dataset import detector_training_loader
from ..data.files import DataConfig
from ..dialect import ALEXEYAB, PJREDDIE, Dialect
from ..heads.detection.loss import detection_input_gradient, detection_loss
from ..heads.detector import DetectionHead, detection_head
from ..heads.region.loss import check_trainable, region_input_gradient, region_loss
from ..heads.yolo.gaussian_loss import gaussian_yolo_loss
from ..heads.yolo.loss import yolo_loss
from ..network import Darknet
from .step import LayerTensors, TrainingForward
from .tasks import Task

BACKUP_EVERY = 100          # DARKNET(detector.c:train_detector): <cfg>.backup
NUMBERED_EVERY = 10000      # DARKNET(detector.c:train_detector): <cfg>_<N>.weights ...
NUMBERED_EARLY = 1000       # ... and every 100 below this


class AlexeyABBackups:
    """DARKNET(AlexeyAB detector.c:train_detector): `<cfg>_<N>.weights` every `saveweights=` iterations of the .data
    file (default 1000, 10000 from max_batches 10000 on) and `<cfg>_last.weights` every `savelast=` (100), each
    counted from the run's first iteration or at a multiple; `_last` only while saveweights > savelast."""

    def __init__(self, data: DataConfig, max_batches: int, start: int):
        self.save_after = data.get_int("saveweights", 1000 if max_batches < 10000 else 10000)
        self.save_last_after = data.get_int("savelast", 100)
        self.saved_at = self.saved_last_at = start   # iter_save, iter_save_last

    def header_line(self) -> str:
        return (f"Weights are saved after: {self.save_after} iterations. Last weights (*_last.weight) are stored "
                f"every {self.save_last_after} iterations. ")

    def names(self, batch: int, base: str) -> list[str]:
        names = []
        if batch >= self.saved_at + self.save_after or batch % self.save_after == 0:
            self.saved_at = batch
            names.append(f"{base}_{batch}.weights")
        last = self.save_last_after
        if self.save_after > last and (batch >= self.saved_last_at + last or (batch % last == 0 and batch > 1)):
            self.saved_last_at = batch
            names.append(f"{base}_last.weights")
        return names


def backup_names(batch: int, base: str) -> list[str]:
    """The backup files pjreddie's Darknet writes after iteration `batch`."""
    names = []
    if batch % BACKUP_EVERY == 0:
        names.append(f"{base}.backup")
    if batch % NUMBERED_EVERY == 0 or (batch < NUMBERED_EARLY and batch % BACKUP_EVERY == 0):
        names.append(f"{base}_{batch}.weights")
    return names


def alexeyab_only_keys(net: Darknet) -> list[str]:
    """The cfg's keys and sections that only AlexeyAB's Darknet reads, as "file:line [kind] key" ("[kind]" alone
    for a section pjreddie's Darknet does not know)."""
    found = []
    for section in [net.net_section, *(info.section for info in net.info)]:
        if ALIASES.get(section.kind, section.kind) not in PJREDDIE_KEYS:
            found.append(f"{section.where()} [{section.kind}]")
            continue
        found += [f"{section.where(key)} [{section.kind}] {key}" for key in section.options
                  if readers(section.kind, key) == ["AlexeyAB"]]
    return found


def training_dialect(net: Darknet, dialect: Dialect | None = None) -> Dialect:
    """ALEXEYAB for a cfg using keys or sections only AlexeyAB's Darknet reads, else `dialect` (default PJREDDIE)."""
    if alexeyab_only_keys(net):
        return ALEXEYAB
    return dialect if dialect is not None else PJREDDIE


class _HeadLoss(ABC):
    """What one detection head adds to the task: its loss layer(s) `top` (an index, or the [yolo] indices), its
    loss on what `TrainingForward(net, top)` outputs, and the gradient into the loss layers' inputs."""

    top: int | list[int]

    def __init__(self, net: Darknet, head: DetectionHead, dialect: Dialect):
        self.net, self.head, self.dialect = net, head, dialect

    @abstractmethod
    def loss(self, output: LayerTensors, truths: Tensor) -> Any: ...

    @abstractmethod
    def input_gradient(self, output: LayerTensors, loss: Any) -> LayerTensors: ...


class _RegionLoss(_HeadLoss):
    """The last `[region]` layer (GPU semantics)."""

    def __init__(self, net: Darknet, head: DetectionHead, dialect: Dialect):
        super().__init__(net, head, dialect)
        self.region = head.layers[0]
        self.top = list(net.layers).index(self.region)
        check_trainable(self.region.options, self.region.tree, f"{net.cfg_path} [region] (layer {self.top})")

    def loss(self, output: Tensor, truths: Tensor) -> Any:
        region = self.region
        return region_loss(output, truths, region.options, self.net.seen, region.tree, region.class_map)

    def input_gradient(self, output: Tensor, loss: Any) -> Tensor:
        return region_input_gradient(output, loss.delta)


class _YoloLoss(_HeadLoss):
    """Every `[yolo]` (or `[Gaussian_yolo]`) layer: each one's delta goes into its input as it is.

    DARKNET(AlexeyAB yolo_layer.c:backward_yolo_layer): ``axpy(1, l.delta, state.delta)``, no logistic derivative
    (the x, y, objectness and class deltas act on the raw conv outputs); its GPU build scales by
    ``loss_scale·delta_normalizer`` (1 unless set in the cfg).
    """

    def __init__(self, net: Darknet, head: DetectionHead, dialect: Dialect):
        super().__init__(net, head, dialect)
        self.top = [list(net.layers).index(layer) for layer in head.layers]

    def loss(self, output: dict[int, Tensor], truths: Tensor) -> Any:
        return yolo_loss(self.net, output, truths, self.net.seen, self.dialect)

    def input_gradient(self, output: dict[int, Tensor], loss: Any) -> dict[int, Tensor]:
        return {index: -delta for index, delta in loss.deltas.items()}


class _GaussianYoloLoss(_YoloLoss):
    """Every `[Gaussian_yolo]` layer (AlexeyAB's only), backward as [yolo]'s."""

    def loss(self, output: dict[int, Tensor], truths: Tensor) -> Any:
        return gaussian_yolo_loss(self.net, output, truths, self.net.seen)


class _DetectionLoss(_HeadLoss):
    """YOLOv1's last `[detection]` layer, DARKNET(detection_layer.c:forward_detection_layer)."""

    def __init__(self, net: Darknet, head: DetectionHead, dialect: Dialect):
        super().__init__(net, head, dialect)
        self.layer = head.layers[0]
        self.top = list(net.layers).index(self.layer)

    def loss(self, output: Tensor, truths: Tensor) -> Any:
        return detection_loss(self.layer, output, truths, self.net.seen)

    def input_gradient(self, output: Tensor, loss: Any) -> Tensor:
        return detection_input_gradient(self.layer, output, loss.delta)


_HEAD_LOSSES: dict[str, type[_HeadLoss]] = {"region": _RegionLoss, "yolo": _YoloLoss,
                                             "Gaussian_yolo": _GaussianYoloLoss, "detection": _DetectionLoss}


class DetectorTask(Task):
    """The loss of the net's detection head on box truths: the last `[region]`'s (`(B, T, 5)` rows
    ``x, y, w, h, class``), every `[yolo]`/`[Gaussian_yolo]` layer's, or the last `[detection]`'s.

    `dialect`: whose Darknet trains the net; None: decided by `training_dialect` (PJREDDIE unless the cfg uses
    AlexeyAB-only keys). Attributes: `head` (`heads.detector.DetectionHead`), `dialect` (the one that applies),
    `top` (the index of the last loss layer).
    """

    backup_default = "backup"   # DARKNET(detector.c:train_detector): relative to the working directory

    def __init__(self, net: Darknet, dialect: Dialect | None = None):
        super().__init__(net)
        self.head = detection_head(net, "detector training")
        self.dialect = training_dialect(net, dialect)
        self.alexeyab_backups: AlexeyABBackups | None = None   # AlexeyAB's schedule, once the data is open
        self.head_loss = _HEAD_LOSSES[self.head.kind](net, self.head, self.dialect)
        top = self.head_loss.top
        self.top = top if isinstance(top, int) else max(top)

    def forward_module(self) -> nn.Module:
        return TrainingForward(self.net, self.head_loss.top)

    def loss(self, output: LayerTensors, truths: Tensor) -> Any:
        return self.head_loss.loss(output, truths)

    def input_gradient(self, output: LayerTensors, loss: Any) -> LayerTensors:
        return self.head_loss.input_gradient(output, loss)

    def mini_batch_line(self, loss: Any) -> str:
        # DARKNET(region_layer.c:forward_region_layer, AlexeyAB yolo_layer.c:forward_yolo_layer): printed per
        # mini-batch (one line per loss layer)
        return loss.stats_line()

    def check_data(self, data: DataConfig, data_path: str | os.PathLike, log: Callable[[str], None]) -> None:
        """`classes=` of the .data file against the head's (an error naming both files), then the train list's
        images and labels by the dialect's rule, printed in a few lines; an error when none is usable."""
        if data.has("classes"):
            head_section = self.net.info[list(self.net.layers).index(self.head.layers[-1])].section
            require_same_classes(data.where("classes"), data.classes, self.head.classes,
                                 head_section.where("classes"))
        report = check_dataset(data.get_path("train"), self.head.classes, self.dialect, data_path=data_path)
        for line in report.lines():
            log(line)
        report.require_usable("train")

    def open_data(self, data: DataConfig, data_path: str | os.PathLike, *, start_batch: int, seed: int,
                  workers: int, decoder: str, stride: int = 1, log: Callable[[str], None] = print):
        if self.dialect is ALEXEYAB:
            self.alexeyab_backups = AlexeyABBackups(data, self.net.options.max_batches, start_batch)
            log(self.alexeyab_backups.header_line())
        return detector_training_loader(self.net, data.get_path("train"), dialect=self.dialect,
                                        start_batch=start_batch, seed=seed, workers=workers, decoder=decoder,
                                        stride=stride, log=log)

    def printed_images(self, world: int) -> int:
        # DARKNET(detector.c:train_detector): i*imgs, imgs = batch * subdivisions * ngpus
        images = self.net.options.images_per_update
        return self.net.seen // images * images * world

    def backup_names(self, batch: int, base: str) -> list[str]:
        if self.alexeyab_backups is not None:
            return self.alexeyab_backups.names(batch, base)
        return backup_names(batch, base)

    def final_name(self, base: str) -> str:
        return f"{base}_final.weights"
