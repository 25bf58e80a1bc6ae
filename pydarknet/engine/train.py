"""The one training loop (DARKNET(detector.c:train_detector), DARKNET(classifier.c:train_classifier)).

One iteration = one Darknet "batch": `subdivisions` mini-batches whose gradients accumulate, then one
update. The loop owns what every task shares: seeding, DDP, AMP, progress, the iteration line, the
loss chart, the safety checks and the backups; the task's `Task` (engine/detector.py,
engine/classifier.py) supplies the loss, the data, the backup schedule and the line's figures.
Backups go to the .data `backup` folder and are written atomically; resuming continues at the `seen`
of the weights file. One run at a time per backup folder (`fileio.FolderLock`, `<backup>/.pydarknet.lock`).

Several GPUs: launched under torchrun (see `cli/detector.py`), every process trains its own mini-batches and
DistributedDataParallel averages the gradients; as Darknet, the learning rate is scaled by the GPU count.
"""
from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ..data.files import DataConfig, read_data_file
from ..errors import CfgError, DataError, TrainingError
from ..choices import TRAINING_DECODER
from ..network import Darknet, network_mode, select_device
from ..summary import layer_table, loading_weights_line, saving_weights_line
from ..fileio import FolderLock, output_folder_problem, remove_stale_temporaries
from ..weights import load_weights, save_weights
from .chart import save_chart
from .lr import get_current_batch
from .sgd import DarknetSGD
from .step import train_step
from .tasks import Task

CHART_EVERY = 10            # iterations between redraws of <backup>/chart.png
messages = logging.getLogger("pydarknet")   # Darknet's stderr messages (layer table, weights files); -q hides them


@dataclass
class IterationLog:
    """One Darknet iteration (one update): what Darknet prints for it."""

    batch: int            # get_current_batch after the update
    loss: float           # cost summed over the mini-batches / images per iteration
    avg_loss: float       # Darknet's running average: .9*avg + .1*loss
    rate: float
    seconds: float
    images: int           # the figure Darknet prints (see Task.printed_images)
    epoch: float | None = None   # classifier only: images seen / images in the list

    def line(self) -> str:
        figures = (f"{self.loss:f}, {self.avg_loss:f} avg, {self.rate:f} rate, {self.seconds:f} seconds, "
                   f"{self.images} images")
        if self.epoch is None:
            # DARKNET(detector.c:train_detector): "%ld: %f, %f avg, %f rate, %lf seconds, %d images"
            return f"{self.batch}: {figures}"
        # DARKNET(classifier.c:train_classifier): "%ld, %.3f: %f, %f avg, %f rate, %lf seconds, %ld images"
        return f"{self.batch}, {self.epoch:.3f}: {figures}"


@dataclass
class TrainResult:
    final_weights: Path
    history: list[IterationLog] = field(default_factory=list)
    skipped_samples: int = 0


def cfg_base(cfg_path: str | os.PathLike) -> str:
    """DARKNET(utils.c:basecfg): the cfg file name up to its first dot."""
    return Path(cfg_path).name.split(".")[0]


def check_iterations_left(net: Darknet, weights_path: str | os.PathLike | None) -> None:
    """Raise TrainingError when training `net` would run no iteration: the `seen` loaded from
    `weights_path` is already at or past `max_batches` (e.g. a full file that a Darknet user meant
    to fine-tune from, where Darknet itself silently writes an untrained `_final.weights`).

    Call it after `-clear` and any max_batches override have been applied.
    """
    done = get_current_batch(net.seen, net.options.images_per_update)
    if done >= net.options.max_batches:
        # DIVERGES: Darknet's `while (get_current_batch(net) < net->max_batches)` just runs 0 iterations
        raise TrainingError(
            f"{weights_path}: seen = {net.seen} images is iteration {done}, already at max_batches = "
            f"{net.options.max_batches}: training would run no iteration; add -clear to start from "
            f"iteration 0 (or raise max_batches)")


def train(task_type: type[Task], data_path: str | os.PathLike, cfg_path: str | os.PathLike,
          weights: str | os.PathLike | None = None, *, clear: bool = False,
          device: str | torch.device | None = None, amp: bool | torch.dtype = False, workers: int = 2, seed: int = 0,
          max_batches: int | None = None, decoder: str = TRAINING_DECODER, show_progress: bool = True,
          verbose: bool = True, log: Callable[[str], None] = print,
          on_iteration: Callable[[Darknet, IterationLog], None] | None = None) -> TrainResult:
    """Train the net of `cfg_path` for the task `task_type` as `darknet <task> train data cfg [weights]`.

    The net is initialised from `seed` (then overwritten by `weights` where given); images are drawn
    and augmented from `seed` too, so a run is reproducible. `max_batches` overrides the cfg's;
    `clear` starts `seen` again; `decoder` decodes the images (`image.load_image`; OpenCV by default,
    "stb" for Darknet's exact pixels); `verbose` prints the per-mini-batch line of the task (region stats);
    `on_iteration(net, log)` runs after every update (e.g. to compute mAP). The progress bar is drawn
    only on a terminal. Returns the final weights' path, the per-iteration log and the skipped samples.

    One run per backup folder: a second run into the folder of a running one stops (FolderBusyError
    naming the first's pid) before it loads anything.
    """
    rank, world = _distributed(device)
    data = read_data_file(data_path)
    backup_dir = backup_folder(data, task_type.backup_default)
    with FolderLock(backup_dir) if rank == 0 else nullcontext():
        return _train(task_type, data, data_path, cfg_path, weights, backup_dir, rank, world, clear=clear,
                      device=device, amp=amp, workers=workers, seed=seed, max_batches=max_batches, decoder=decoder,
                      show_progress=show_progress, verbose=verbose, log=log, on_iteration=on_iteration)


def backup_folder(data: DataConfig, default: str) -> Path:
    """The .data file's backup folder (`default` without `backup=`), created if missing; a DataError naming
    the .data line when it cannot be a folder (a file is there) or cannot be created or written in."""
    # DARKNET(detector.c:train_detector): the backup folder is relative to the working directory
    value = data.get_str("backup", default)
    path = Path(value)
    problem = output_folder_problem(path)
    try:
        if problem is None:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem = f"cannot create the folder: {error.strerror or error}"
    if problem is None and not os.access(path, os.W_OK | os.X_OK):
        problem = "cannot write in the folder: permission denied"
    if problem is not None:
        # DIVERGES: Darknet trains, then fails at its first backup ("Couldn't open file") hours later
        raise DataError(f"{data.where('backup')}: backup={value}: {problem}")
    return path


def _train(task_type: type[Task], data: DataConfig, data_path, cfg_path, weights, backup_dir: Path, rank: int,
           world: int, *, clear, device, amp, workers, seed, max_batches, decoder, show_progress, verbose, log,
           on_iteration) -> TrainResult:
    """`train` once the backup folder is this run's."""
    net = Darknet.from_cfg(cfg_path, seed=seed)
    task = task_type(net)
    if rank == 0:
        messages.info("\n".join(layer_table(net)))   # DARKNET(parser.c:parse_network_cfg): on stderr
    if weights is not None:
        load_weights(net, weights)
        if rank == 0:
            messages.info(loading_weights_line(weights))
    if clear:
        net.seen = 0  # DARKNET(network.c:load_network): -clear starts the counters again
    options = net.options
    if max_batches is not None:
        options.max_batches = max_batches
    if options.max_batches <= 0:
        raise CfgError(f"{cfg_path}: max_batches must be positive "
                       f"(DIVERGES: Darknet trains forever with max_batches=0)")
    check_iterations_left(net, weights)
    options.learning_rate *= world  # DARKNET(detector.c:train_detector): rate times the GPU count
    device = _device_for_rank(device, rank, world)
    net.to(device, memory_format=torch.channels_last)  # NHWC convolutions: faster on oneDNN and cuDNN
    model = task.forward_module()
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, find_unused_parameters=any(flags.stopbackward for flags in net.flags))

    if rank == 0:
        for stale in remove_stale_temporaries(backup_dir):   # left by a run killed while writing a backup
            log(f"Removed {stale}, an unfinished write of a killed run")
    start = get_current_batch(net.seen, options.images_per_update)
    # DARKNET(detector.c:train_detector): with N GPUs the iteration counter advances by N per round
    loader = task.open_data(data, data_path, start_batch=start, seed=seed * 1000 + rank, workers=workers,
                            decoder=decoder, stride=world)
    optimizer = DarknetSGD(net)
    rng = np.random.default_rng(seed)   # the `random` learning-rate policy
    base = cfg_base(cfg_path)
    if rank == 0:
        for key in net.training_only_keys:   # DIVERGES: Darknet applies these; say so before iteration 1
            log(f"Note: {key}: Darknet reads it for training (or GPU streams, printing); pydarknet does not apply it")
        for line in [base, f"Learning Rate: {options.learning_rate:g}, Momentum: {options.momentum:g}, "
                           f"Decay: {options.decay:g}", *task.header_lines()]:
            log(line)
    result = TrainResult(final_weights=backup_dir / task.final_name(base))
    keeper = WeightsKeeper(net, weights)
    progress = tqdm(total=max(options.max_batches - start, 0), unit="batch", dynamic_ncols=True,
                    disable=not (show_progress and rank == 0 and sys.stderr.isatty()))
    write = log if progress.disable else progress.write
    cost = 0.0
    tick = time.perf_counter()
    images = None
    for images, truths in loader:
        images, truths = fill_minibatch(images, truths, options.mini_batch)
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        step = train_step(net, images, truths.to(device, non_blocking=True), optimizer, task=task, rng=rng,
                          record=False, model=model, amp=amp)
        cost += step.loss.cost
        line = task.mini_batch_line(step.loss) if verbose and rank == 0 else None
        if line is not None:
            write(line)
        if step.learning_rate is None:
            continue
        # DARKNET(network.c:sync_nets): seen gains the other GPUs' images, so it counts the global batch
        # DIVERGES: at every iteration, where Darknet syncs every 4th (seen lags by up to 3 rounds there)
        net.seen += (world - 1) * options.images_per_update
        entry = _log_entry(net, task, cost / options.images_per_update, result.history, step.learning_rate,
                           time.perf_counter() - tick, world)
        if not math.isfinite(entry.loss):
            raise TrainingError(f"loss is {entry.loss} at iteration {entry.batch}; the last good weights are "
                                f"{keeper.last_good_text()} (nothing was saved after it)")
        result.history.append(entry)
        if rank == 0:
            write(entry.line())
            progress.update(1)
            for name in task.backup_names(entry.batch, base):
                keeper.save(backup_dir / name, entry.batch, images)
            if on_iteration is not None:
                on_iteration(net, entry)
            if entry.batch % CHART_EVERY == 0:
                _save_chart(backup_dir, result.history, options.max_batches)
        cost = 0.0
        tick = time.perf_counter()
    progress.close()
    result.skipped_samples = loader.skipped_count
    if rank == 0:
        keeper.save(result.final_weights, get_current_batch(net.seen, options.images_per_update), images)
        _save_chart(backup_dir, result.history, options.max_batches)
    return result


class WeightsKeeper:
    """Writes the run's weights files, never one that is not finite, and knows the last good one.

    A user cannot afford to lose a week of training: a diverged update must not overwrite the good
    backup, and a failed write (disk full, permission denied) must say which file still holds the
    last good weights. Weights count as good when every tensor is finite and so is the net's output
    on an image of the last mini-batch (huge but finite weights can already give a NaN forward).
    """

    def __init__(self, net: Darknet, start: str | os.PathLike | None):
        self.net = net
        self.last_good: Path | None = Path(start) if start is not None else None

    def last_good_text(self) -> str:
        return (f"in {self.last_good}" if self.last_good is not None
                else "nowhere: this run has written no weights file yet and started from none")

    def save(self, path: Path, batch: int, probe: torch.Tensor | None) -> None:
        problem = self._problem(probe)
        if problem:
            raise TrainingError(f"the weights are not finite after iteration {batch} ({problem}); {path} was not "
                                f"written; the last good weights are {self.last_good_text()}")
        messages.info(saving_weights_line(path))   # DARKNET(parser.c:save_weights_upto): before writing
        try:
            save_weights(self.net, path)
        except OSError as error:
            raise TrainingError(f"cannot write {path}: {error.strerror or error}; the last good weights are "
                                f"{self.last_good_text()}") from error
        self.last_good = path

    def _problem(self, probe: torch.Tensor | None) -> str | None:
        for name, tensor in self.net.state_dict().items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return name
        if probe is None:   # no mini-batch was trained: the weights are those loaded
            return None
        with torch.no_grad(), network_mode(self.net, False):
            output = self.net(probe[:1])
        outputs = output if isinstance(output, list) else [output]
        return None if all(bool(torch.isfinite(o).all()) for o in outputs) else "its output is not finite"


def train_detector(data_path: str | os.PathLike, cfg_path: str | os.PathLike,
                   weights: str | os.PathLike | None = None, **options) -> TrainResult:
    """Train a YOLOv2/YOLO9000 detector as `darknet detector train data cfg [weights] [-clear]`
    (the .data file needs `train=`). Options as `train`."""
    from .detector import DetectorTask

    return train(DetectorTask, data_path, cfg_path, weights, **options)


def _save_chart(backup_dir: Path, history: list[IterationLog], max_batches: int) -> None:
    if not history:
        return
    try:
        save_chart(backup_dir / "chart.png", [e.batch for e in history], [e.loss for e in history],
                   [e.avg_loss for e in history], max_batches=max_batches)
    except OSError as error:   # the chart is a convenience: training goes on without it
        warnings.warn(f"cannot write {backup_dir / 'chart.png'}: {error}", RuntimeWarning, stacklevel=2)


def _on_gpus(device) -> bool:
    """Whether a torchrun process trains on its own GPU: CUDA is there and `--device` does not say cpu."""
    return torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")


def _distributed(device) -> tuple[int, int]:
    """(rank, world size) under torchrun, (0, 1) otherwise; initialises the process group once."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if _on_gpus(device) else "gloo")
    return dist.get_rank(), world


def _device_for_rank(device, rank: int, world: int) -> torch.device:
    if world > 1 and _on_gpus(device):
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return select_device(device)


def fill_minibatch(images, truths, size: int):
    """DIVERGES: a mini-batch short of skipped (bad) samples is topped up by repeating good ones,
    so every update still averages over Darknet's batch size."""
    if images.shape[0] == size:
        return images, truths
    index = torch.arange(size) % images.shape[0]
    return images[index], truths[index]


def _log_entry(net: Darknet, task: Task, loss: float, history: list[IterationLog], rate: float, seconds: float,
               world: int) -> IterationLog:
    batch = get_current_batch(net.seen, net.options.images_per_update)
    previous = history[-1].avg_loss if history else loss
    # DARKNET(detector.c:train_detector): avg_loss starts at the first loss, then .9*avg + .1*loss
    return IterationLog(batch, loss, previous * 0.9 + loss * 0.1, rate, seconds, task.printed_images(world),
                        task.epoch())
