"""`detector train`: the region (YOLOv2 / YOLO9000) task of the training loop.

DARKNET(detector.c:train_detector): random images of the `train=` list, augmented and letterboxed
(multi-scale with `random=1`); printed per iteration `N: loss, avg avg, rate rate, seconds seconds,
images images`. Backups with Darknet's names and schedule: `<cfg>.backup` every 100 iterations,
`<cfg>_<N>.weights` every 100 below 1000 and every 10000, `<cfg>_final.weights` at the end.
"""
from __future__ import annotations

import os

from torch import Tensor, nn

from ..data.augment import AugmentOptions
from ..data.dataset import DetectionDataset, train_loader
from ..data.files import DataConfig
from ..errors import UnsupportedError
from ..heads.detector import detection_head
from ..heads.region.loss import RegionLoss, check_trainable, region_input_gradient, region_loss
from ..network import Darknet, require_region
from .tasks import Task
from .step import TrainingForward

BACKUP_EVERY = 100          # DARKNET(detector.c:train_detector): <cfg>.backup
NUMBERED_EVERY = 10000      # DARKNET(detector.c:train_detector): <cfg>_<N>.weights ...
NUMBERED_EARLY = 1000       # ... and every 100 below this


def backup_names(batch: int, base: str) -> list[str]:
    """The backup files Darknet writes after iteration `batch`."""
    names = []
    if batch % BACKUP_EVERY == 0:
        names.append(f"{base}.backup")
    if batch % NUMBERED_EVERY == 0 or (batch < NUMBERED_EARLY and batch % BACKUP_EVERY == 0):
        names.append(f"{base}_{batch}.weights")
    return names


def augment_options(net: Darknet) -> AugmentOptions:
    """Augmentation settings: jitter and max from the [region] layer, colour from [net]."""
    region = require_region(net, "detector training")
    return AugmentOptions(jitter=region.options.jitter, hue=net.options.hue, saturation=net.options.saturation,
                          exposure=net.options.exposure, max=region.options.max)


class DetectorTask(Task):
    """The last `[region]` layer's loss (GPU semantics) on `(B, T, 5)` box truths."""

    backup_default = "backup"   # DARKNET(detector.c:train_detector): relative to the working directory

    def __init__(self, net: Darknet):
        super().__init__(net)
        head = detection_head(net, "detector training")
        if head.kind != "region":
            raise UnsupportedError(f"{net.cfg_path}: training a [{head.kind}] net is not implemented yet; "
                                   f"only [region] (YOLOv2) nets train")
        self.region = head.layers[0]
        self.top = list(net.layers).index(self.region)
        check_trainable(self.region.options, self.region.tree, f"{net.cfg_path} [region] (layer {self.top})")

    def forward_module(self) -> nn.Module:
        return TrainingForward(self.net, self.top)

    def loss(self, output: Tensor, truths: Tensor) -> RegionLoss:
        region = self.region
        return region_loss(output, truths, region.options, self.net.seen, region.tree, region.class_map)

    def input_gradient(self, output: Tensor, loss: RegionLoss) -> Tensor:
        return region_input_gradient(output, loss.delta)

    def mini_batch_line(self, loss: RegionLoss) -> str:
        return loss.stats_line()   # DARKNET(region_layer.c:forward_region_layer): printed per mini-batch

    def open_data(self, data: DataConfig, data_path: str | os.PathLike, *, start_batch: int, seed: int,
                  workers: int, decoder: str, stride: int = 1):
        net, options = self.net, self.net.options
        dataset = DetectionDataset.from_list(data.get_path("train"), self.region.options.classes,
                                             size=(net.width, net.height), options=augment_options(net),
                                             classification_only=self.region.tree is not None, decoder=decoder)
        dataset.require_a_sample()   # before iteration 1: a list whose labels are all missing trains nothing
        return train_loader(dataset, options.batch, options.subdivisions, options.max_batches,
                            start_batch=start_batch, random=bool(self.region.options.random), seed=seed,
                            workers=workers, stride=stride)

    def printed_images(self, world: int) -> int:
        # DARKNET(detector.c:train_detector): i*imgs, imgs = batch * subdivisions * ngpus
        images = self.net.options.images_per_update
        return self.net.seen // images * images * world

    def backup_names(self, batch: int, base: str) -> list[str]:
        return backup_names(batch, base)

    def final_name(self, base: str) -> str:
        return f"{base}_final.weights"
