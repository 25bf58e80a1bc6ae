"""`detector train`: Darknet's training loop (DARKNET(detector.c:train_detector)) around `train_step`.

One iteration = one Darknet "batch": `subdivisions` mini-batches whose gradients accumulate, then one
update. Printed per iteration, as Darknet: `N: loss, avg avg, rate rate, seconds seconds, images images`.
Backups go to the .data `backup` folder with Darknet's names and schedule, written atomically:
`<cfg>.backup` every 100 iterations, `<cfg>_<N>.weights` every 100 below 1000 and every 10000, and
`<cfg>_final.weights` at the end. Resuming from a backup continues at its `seen`.

Several GPUs: launched under torchrun (see `cli/detector.py`), every process trains its own mini-batches and
DistributedDataParallel averages the gradients; as Darknet, the learning rate is scaled by the GPU count.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from ..cfg import resolve_path
from ..data.augment import AugmentOptions
from ..data.dataset import DetectionDataset, train_loader
from ..data.files import read_data_file
from ..errors import TrainingError
from ..network import Darknet, select_device
from ..weights import load_weights, save_weights
from .chart import save_chart
from .sgd import DarknetSGD
from .step import StepResult, TrainingForward, train_step

BACKUP_EVERY = 100          # DARKNET(detector.c:train_detector): <cfg>.backup
NUMBERED_EVERY = 10000      # DARKNET(detector.c:train_detector): <cfg>_<N>.weights ...
NUMBERED_EARLY = 1000       # ... and every 100 below this
CHART_EVERY = 10            # iterations between redraws of <backup>/chart.png


@dataclass
class IterationLog:
    """One Darknet iteration (one update): what Darknet prints for it."""

    batch: int            # get_current_batch after the update
    loss: float           # cost summed over the mini-batches / images per iteration
    avg_loss: float       # Darknet's running average: .9*avg + .1*loss
    rate: float
    seconds: float
    images: int

    def line(self) -> str:
        # DARKNET(detector.c:train_detector): "%ld: %f, %f avg, %f rate, %lf seconds, %d images"
        return (f"{self.batch}: {self.loss:f}, {self.avg_loss:f} avg, {self.rate:f} rate, "
                f"{self.seconds:f} seconds, {self.images} images")


@dataclass
class TrainResult:
    final_weights: Path
    history: list[IterationLog] = field(default_factory=list)
    skipped_samples: int = 0


def cfg_base(cfg_path: str | os.PathLike) -> str:
    """DARKNET(utils.c:basecfg): the cfg file name up to its first dot."""
    return Path(cfg_path).name.split(".")[0]


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
    region = net.region
    return AugmentOptions(jitter=region.options.jitter, hue=net.options.hue, saturation=net.options.saturation,
                          exposure=net.options.exposure, max=region.options.max)


def _distributed() -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise; initialises the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), world


def train_detector(data_path: str | os.PathLike, cfg_path: str | os.PathLike,
                   weights: str | os.PathLike | None = None, *, clear: bool = False,
                   device: str | torch.device | None = None, amp: bool = False, workers: int = 2,
                   seed: int = 0, max_batches: int | None = None, show_progress: bool = True,
                   verbose: bool = True, log: Callable[[str], None] = print,
                   on_iteration: Callable[[Darknet, IterationLog], None] | None = None) -> TrainResult:
    """Train a YOLOv2/YOLO9000 detector as `darknet detector train data cfg [weights] [-clear]`.

    `max_batches` overrides the cfg's. `verbose` prints the region stats line of every mini-batch,
    as Darknet does. `on_iteration(net, log)` runs after every update (e.g. to compute mAP).
    Returns the path of `<cfg>_final.weights` and the per-iteration log.
    """
    rank, world = _distributed()
    data = read_data_file(data_path, required=("train",))
    # DARKNET(detector.c:train_detector): the backup folder is relative to the working directory
    backup_dir = Path(data.get_str("backup", "backup"))
    backup_dir.mkdir(parents=True, exist_ok=True)
    net = Darknet.from_cfg(cfg_path, seed=seed)
    if net.region is None:
        raise ValueError(f"{cfg_path}: detector training needs a [region] layer")
    if weights is not None:
        load_weights(net, weights)
    if clear:
        net.seen = 0  # DARKNET(network.c:load_network): -clear starts the counters again
    if max_batches is not None:
        net.options.max_batches = max_batches
    net.options.learning_rate *= world  # DARKNET(detector.c:train_detector): rate times the GPU count
    device = _device_for_rank(device, rank, world)
    net.to(device, memory_format=torch.channels_last)  # NHWC convolutions: faster on oneDNN and cuDNN
    model = TrainingForward(net)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=any(flags.stopbackward for flags in net.flags))

    options = net.options
    images_per_iteration = options.mini_batch * options.subdivisions * world
    train_list = resolve_path(data.get_str("train"), data_path)
    dataset = DetectionDataset.from_list(train_list, net.region.options.classes, size=(net.width, net.height),
                                         options=augment_options(net))
    start = net.seen // (options.mini_batch * options.subdivisions)
    loader = train_loader(dataset, options.batch, options.subdivisions, options.max_batches, start_batch=start,
                          random=bool(net.region.options.random), seed=seed * 1000 + rank, workers=workers)
    optimizer = DarknetSGD(net)
    base = cfg_base(cfg_path)
    if rank == 0:
        log(base)
        log(f"Learning Rate: {options.learning_rate:g}, Momentum: {options.momentum:g}, Decay: {options.decay:g}")
    result = TrainResult(final_weights=backup_dir / f"{base}_final.weights")
    progress = tqdm(total=max(options.max_batches - start, 0), disable=not show_progress or rank != 0,
                    unit="batch", dynamic_ncols=True)
    write = progress.write if show_progress else log
    cost = 0.0
    tick = time.perf_counter()
    for images, truths in loader:
        step = _step(model, net, images, truths, optimizer, device, amp)
        cost += step.loss.cost
        if rank == 0 and verbose:
            write(step.loss.stats_line())  # DARKNET(region_layer.c:forward_region_layer): per mini-batch
        if step.learning_rate is None:
            continue
        entry = _log_entry(net, cost / images_per_iteration * world, result.history, step.learning_rate,
                           time.perf_counter() - tick, images_per_iteration)
        if not math.isfinite(entry.loss):
            raise TrainingError(f"loss is {entry.loss} at iteration {entry.batch}; the last good weights are "
                                f"the latest backup in {backup_dir} (nothing was saved after the NaN)")
        result.history.append(entry)
        if rank == 0:
            write(entry.line())
            progress.update(1)
            for name in backup_names(entry.batch, base):
                save_weights(net, backup_dir / name)
            if on_iteration is not None:
                on_iteration(net, entry)
            if entry.batch % CHART_EVERY == 0:
                _save_chart(backup_dir, result.history, options.max_batches)
        cost = 0.0
        tick = time.perf_counter()
    progress.close()
    result.skipped_samples = loader.skipped_count
    if rank == 0:
        save_weights(net, result.final_weights)
        _save_chart(backup_dir, result.history, options.max_batches)
    return result


def _save_chart(backup_dir: Path, history: list[IterationLog], max_batches: int) -> None:
    if history:
        save_chart(backup_dir / "chart.png", [e.batch for e in history], [e.loss for e in history],
                   [e.avg_loss for e in history], max_batches=max_batches)


def _device_for_rank(device, rank: int, world: int) -> torch.device:
    if world > 1 and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return select_device(device)


def _step(model, net: Darknet, images, truths, optimizer: DarknetSGD, device, amp: bool) -> StepResult:
    images, truths = fill_minibatch(images, truths, net.options.mini_batch)
    images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
    return train_step(net, images, truths.to(device, non_blocking=True), optimizer, record=False, model=model,
                      amp=amp)


def fill_minibatch(images, truths, size: int):
    """DIVERGES: a mini-batch short of skipped (bad) samples is topped up by repeating good ones,
    so every update still averages over Darknet's batch size."""
    if images.shape[0] == size:
        return images, truths
    index = torch.arange(size) % images.shape[0]
    return images[index], truths[index]


def _log_entry(net: Darknet, loss: float, history: list[IterationLog], rate: float, seconds: float,
               images_per_iteration: int) -> IterationLog:
    batch = net.seen // (net.options.mini_batch * net.options.subdivisions)
    previous = history[-1].avg_loss if history else loss
    # DARKNET(detector.c:train_detector): avg_loss starts at the first loss, then .9*avg + .1*loss
    return IterationLog(batch, loss, previous * 0.9 + loss * 0.1, rate, seconds, batch * images_per_iteration)
