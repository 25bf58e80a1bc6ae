"""The one training loop (DARKNET(detector.c:train_detector), DARKNET(classifier.c:train_classifier)).

One iteration = one Darknet "batch": `subdivisions` mini-batches whose gradients accumulate, then one
update. The loop owns what every task shares: seeding, DDP, AMP, progress, the iteration line, the
loss chart, the safety checks and the backups; the task's `Task` (engine/detector.py,
engine/classifier.py) supplies the loss, the data, the backup schedule and the line's figures.
Backups go to the .data `backup` folder and are written atomically; resuming continues at the `seen`
of the weights file. One run at a time per backup folder (`fileio.FolderLock`, `<backup>/.pydarknet.lock`).

Several GPUs: launched under torchrun (see `cli/detector.py`), every process trains its own mini-batches and
DistributedDataParallel averages the gradients; as Darknet, the learning rate is scaled by the GPU count.

AlexeyAB's additions, in every dialect: the hours left in the iteration line, `-map` (engine/training_map.py:
the mAP while training, `<cfg>_best.weights`, the mAP on the chart), `<backup>/<cfg>_log.csv` (engine/run_log.py),
the chart served as MJPEG (`mjpeg_port`). Ctrl-C ends the run with `TrainingInterrupted`, naming the last weights
written.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
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

from ..data.files import DataConfig, read_data_file, read_list
from ..dialect import ALEXEYAB, Dialect
from ..errors import CfgError, DataError, TrainingError
from ..choices import TRAINING_DECODER
from ..network import Darknet, network_mode, select_device
from ..summary import layer_table, loading_weights_line, saving_weights_line
from ..fileio import FolderLock, output_folder_problem, remove_stale_temporaries
from ..weights import load_weights, save_weights
from .chart import save_chart
from .ema import WeightsEma
from .lr import get_current_batch
from .run_log import LogRow, RunLog
from .sgd import DarknetSGD
from .step import train_step
from .tasks import Task
from .training_map import NOT_MEASURED, MapDuringTraining

CHART_EVERY = 10            # iterations between redraws of <backup>/chart.png
ETA_ALPHA = 0.01            # DARKNET(AlexeyAB detector.c:train_detector): alpha_time of the hours-left average
NO_ETA = -1.0               # DARKNET(AlexeyAB detector.c:train_detector): avg_time = -1 until an iteration is timed
CHART_JPEG_QUALITY = 70     # DARKNET(AlexeyAB image_opencv.cpp:draw_train_loss): send_mjpeg(.., 500000, 70)
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
    hours_left: float | None = None   # detector only: AlexeyAB's estimate before this iteration (-1: none yet)

    def line(self, alexeyab: bool = False) -> str:
        """The iteration line: pjreddie's, with AlexeyAB's hours left appended for a detector; AlexeyAB's own
        with `alexeyab`."""
        if self.epoch is not None:
            # DARKNET(classifier.c:train_classifier): "%ld, %.3f: %f, %f avg, %f rate, %lf seconds, %ld images"
            return (f"{self.batch}, {self.epoch:.3f}: {self.loss:f}, {self.avg_loss:f} avg, {self.rate:f} rate, "
                    f"{self.seconds:f} seconds, {self.images} images")
        hours = f", {self.hours_left:f} hours left"
        if alexeyab:
            # DARKNET(AlexeyAB detector.c:train_detector):
            # "\n %d: %f, %f avg loss, %f rate, %lf seconds, %d images, %f hours left\n"
            return (f" {self.batch}: {self.loss:f}, {self.avg_loss:f} avg loss, {self.rate:f} rate, "
                    f"{self.seconds:f} seconds, {self.images} images{hours}")
        # DARKNET(detector.c:train_detector): "%ld: %f, %f avg, %f rate, %lf seconds, %d images"
        # DIVERGES: AlexeyAB's ", %f hours left" follows, so that every dialect has an ETA
        return (f"{self.batch}: {self.loss:f}, {self.avg_loss:f} avg, {self.rate:f} rate, {self.seconds:f} seconds, "
                f"{self.images} images{hours}")

    def title(self, max_batches: int, last_map: float, best_map: float) -> str:
        """AlexeyAB's short line before the iteration line (its terminal's first line)."""
        # DARKNET(AlexeyAB detector.c:train_detector): "%d/%d: loss=%0.1f map=%0.2f best=%0.2f hours left=%0.1f"
        # DIVERGES: without the screen clear before it and the bell after it
        scores = f" map={last_map:0.2f} best={best_map:0.2f}" if last_map > 0 else ""
        return f"{self.batch}/{max_batches}: loss={self.loss:0.1f}{scores} hours left={self.hours_left:0.1f}"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run; the message names the last weights written (exit code 130 on the command line).
    A KeyboardInterrupt still, so that `except Exception` does not swallow a Ctrl-C."""


@dataclass
class TrainResult:
    final_weights: Path
    history: list[IterationLog] = field(default_factory=list)
    skipped_samples: int = 0
    seconds: float = 0.0                 # the whole run, from the start of the loop
    log_csv: Path | None = None          # <backup>/<cfg>_log.csv
    last_map: float | None = None        # -map: the last mAP measured (0..1), and the best
    best_map: float | None = None
    best_weights: Path | None = None     # -map: <backup>/<cfg>_best.weights, if written

    def summary_lines(self) -> list[str]:
        """What the command prints when training ends: iterations, time, mAP, where the weights are."""
        done = self.history[-1].batch if self.history else 0
        lines = [f"Trained {len(self.history)} iterations (to iteration {done}) in {self.seconds / 3600:.2f} hours "
                 f"({self.seconds:.0f} seconds)"]
        if self.last_map is not None:
            lines.append(f"mAP@0.50: last {self.last_map * 100:.2f} %, best {self.best_map * 100:.2f} %"
                         + (f" in {self.best_weights}" if self.best_weights else ""))
        lines.append(f"Weights: {self.final_weights}; log: {self.log_csv}")
        # DARKNET(AlexeyAB detector.c:train_detector): its last line
        lines.append("If you want to train from the beginning, then use flag in the end of training command: -clear ")
        return lines


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


@dataclass
class TrainingExtras:
    """AlexeyAB's `detector train` options (each has its default without them).

    calc_map: `-map`; map_epochs: `-mAP_epochs`; chart: where chart.png goes (None: `<backup>/chart.png`);
    mjpeg_port: serve the chart as an MJPEG stream on 127.0.0.1 (`-mjpeg_port`); dialect: whose Darknet trains
    (None: the task's choice, else PJREDDIE): the mAP's detections and report, the iteration lines.
    """

    calc_map: bool = False
    map_epochs: int = 4
    chart: str | os.PathLike | None = None
    mjpeg_port: int | None = None
    dialect: Dialect | None = None


def train(task_type: type[Task], data_path: str | os.PathLike, cfg_path: str | os.PathLike,
          weights: str | os.PathLike | None = None, *, clear: bool = False,
          device: str | torch.device | None = None, amp: bool | torch.dtype = False, workers: int = 2, seed: int = 0,
          max_batches: int | None = None, decoder: str = TRAINING_DECODER, show_progress: bool = True,
          verbose: bool = True, log: Callable[[str], None] = print,
          on_iteration: Callable[[Darknet, IterationLog], None] | None = None,
          extras: TrainingExtras | None = None) -> TrainResult:
    """Train the net of `cfg_path` for the task `task_type` as `darknet <task> train data cfg [weights]`.

    The net is initialised from `seed` (then overwritten by `weights` where given); images are drawn
    and augmented from `seed` too, so a run is reproducible. `max_batches` overrides the cfg's;
    `clear` starts `seen` again; `decoder` decodes the images (`image.load_image`; OpenCV by default,
    "stb" for Darknet's exact pixels); `verbose` prints the per-mini-batch line of the task (region stats);
    `on_iteration(net, log)` runs after every update (e.g. to compute mAP); `extras`: AlexeyAB's options
    (`TrainingExtras`: -map, -mAP_epochs, -chart, -mjpeg_port, the dialect). The progress bar is drawn
    only on a terminal. Returns the final weights' path, the per-iteration log, the skipped samples, the time,
    the mAP figures. Ctrl-C raises `TrainingInterrupted` naming the last weights written.

    One run per backup folder: a second run into the folder of a running one stops (FolderBusyError
    naming the first's pid) before it loads anything.
    """
    rank, world = _distributed(device)
    data = read_data_file(data_path)
    backup_dir = backup_folder(data, task_type.backup_default)
    if data.has("train"):   # before the weights are loaded: a missing list must not wait for them
        read_list(data.get_path("train"))
    with FolderLock(backup_dir) if rank == 0 else nullcontext():
        return _train(task_type, data, data_path, cfg_path, weights, backup_dir, rank, world, clear=clear,
                      device=device, amp=amp, workers=workers, seed=seed, max_batches=max_batches, decoder=decoder,
                      show_progress=show_progress, verbose=verbose, log=log, on_iteration=on_iteration,
                      extras=extras or TrainingExtras())


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
           on_iteration, extras: TrainingExtras) -> TrainResult:
    """`train` once the backup folder is this run's."""
    net = Darknet.from_cfg(cfg_path, seed=seed)
    task = task_type(net, extras.dialect) if extras.dialect is not None else task_type(net)
    dialect = task.dialect
    if max_batches is not None:
        net.options.max_batches = max_batches
    # before the weights are loaded: the valid list and the names -map needs
    monitor = (MapDuringTraining(net, data, dialect, epochs=extras.map_epochs, log=log, workers=workers)
               if extras.calc_map and rank == 0 else None)
    if rank == 0:
        task.check_data(data, data_path, log)
        messages.info("\n".join(layer_table(net)))   # DARKNET(parser.c:parse_network_cfg): on stderr
    if weights is not None:
        load_weights(net, weights)
        if rank == 0:
            messages.info(loading_weights_line(weights))
    if clear:
        net.seen = 0  # DARKNET(network.c:load_network): -clear starts the counters again
    options = net.options
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
    if monitor is not None:
        monitor.last_measured = start   # DARKNET(AlexeyAB detector.c:train_detector): iter_map = the first iteration
    # DARKNET(detector.c:train_detector): with N GPUs the iteration counter advances by N per round
    loader = task.open_data(data, data_path, start_batch=start, seed=seed * 1000 + rank, workers=workers,
                            decoder=decoder, stride=world, log=log if rank == 0 else _silent)
    optimizer = DarknetSGD(net)
    rng = np.random.default_rng(seed)   # the `random` learning-rate policy
    base = cfg_base(cfg_path)
    if rank == 0:
        for line in _header_lines(net, task, base):
            log(line)
    result = TrainResult(final_weights=backup_dir / task.final_name(base), log_csv=backup_dir / f"{base}_log.csv")
    keeper = WeightsKeeper(net, weights)
    ema = WeightsEma(net, options.ema_alpha) if options.ema_alpha else None
    run = _Run(net, task, dialect, backup_dir, base, keeper, monitor, result, log, world, extras, ema) \
        if rank == 0 else None
    progress = tqdm(total=max(options.max_batches - start, 0), unit="batch", dynamic_ncols=True,
                    disable=not (show_progress and rank == 0 and sys.stderr.isatty()))
    write = log if progress.disable else progress.write
    cost = 0.0
    began = tick = time.perf_counter()
    images = None
    try:
        with run or nullcontext(), CtrlC() as ctrl_c:
            for images, truths in loader:
                ctrl_c.check()
                images, truths = fill_minibatch(images, truths, options.mini_batch)
                images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
                step = train_step(net, images, truths.to(device, non_blocking=True), optimizer, task=task, rng=rng,
                                  record=False, model=model, amp=amp)
                cost += step.loss.cost
                line = task.mini_batch_line(step.loss) if verbose and rank == 0 else None
                if line is not None:
                    write(line)
                ctrl_c.check()
                if step.learning_rate is None:
                    continue
                # DARKNET(network.c:sync_nets): seen gains the other GPUs' images, so it counts the global batch
                # DIVERGES: at every iteration, where Darknet syncs every 4th (seen lags by up to 3 rounds there)
                net.seen += (world - 1) * options.images_per_update
                entry = _log_entry(net, task, cost / options.images_per_update, result.history,
                                   step.learning_rate, time.perf_counter() - tick, world,
                                   run.hours_left if run is not None else NO_ETA)
                if not math.isfinite(entry.loss):
                    raise TrainingError(f"loss is {entry.loss} at iteration {entry.batch}; the last good weights are "
                                        f"{keeper.last_good_text()} (nothing was saved after it)")
                result.history.append(entry)
                for ema_line in ema.after_update(entry.batch) if ema is not None else []:
                    if rank == 0:
                        write(ema_line)
                if run is not None:
                    run.iteration(entry, images, write, tick)
                    progress.update(1)
                    if on_iteration is not None:
                        on_iteration(net, entry)
                cost = 0.0
                tick = time.perf_counter()
            progress.close()
            result.skipped_samples = loader.skipped_count
            if run is not None:
                keeper.save(result.final_weights, get_current_batch(net.seen, options.images_per_update), images)
                run.draw_chart()
    except KeyboardInterrupt:
        progress.close()
        done = result.history[-1].batch if result.history else start
        raise TrainingInterrupted(f"Interrupted after iteration {done}: {keeper.last_written_text()}") from None
    result.seconds = time.perf_counter() - began
    return result


def _header_lines(net: Darknet, task: Task, base: str) -> list[str]:
    """The notes on keys read but not applied, then what Darknet prints before iteration 1."""
    options = net.options
    # DIVERGES: Darknet applies these; say so before iteration 1
    lines = [f"Note: {key}: Darknet reads it for training (or GPU streams, printing); pydarknet does not apply it"
             for key in net.training_only_keys]
    return [*lines, base, f"Learning Rate: {options.learning_rate:g}, Momentum: {options.momentum:g}, "
                          f"Decay: {options.decay:g}", *task.header_lines()]


class CtrlC:
    """While open, a first Ctrl-C (SIGINT) is raised as KeyboardInterrupt at the next `check()` (once the mini-batch
    in hand is trained), not wherever the main process is, e.g. halfway through receiving a batch from a data
    loading worker (whose serving thread would then print a ConnectionResetError); a second Ctrl-C raises at once.
    Forked data-loading workers inherit the handler and ignore the signal: the main process ends them.
    Leaves SIGINT alone outside the main thread and where it is not Python's default handler (e.g. ignored).
    """

    def __enter__(self) -> "CtrlC":
        self.pressed = False
        self.owner = os.getpid()
        replace = (threading.current_thread() is threading.main_thread()
                   and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        self.previous = signal.signal(signal.SIGINT, self._pressed) if replace else None
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)

    def _pressed(self, _signum, _frame) -> None:
        if os.getpid() != self.owner:   # a forked worker: ignore, the main process stops it
            return
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True

    def check(self) -> None:
        if self.pressed:
            raise KeyboardInterrupt


class _Run:
    """What rank 0 does after each iteration: the lines, backups, -map, the log and the chart (and its stream)."""

    def __init__(self, net: Darknet, task: Task, dialect: Dialect, backup_dir: Path, base: str,
                 keeper: WeightsKeeper, monitor: MapDuringTraining | None, result: TrainResult,
                 log: Callable[[str], None], world: int, extras: TrainingExtras, ema: WeightsEma | None):
        self.net, self.task, self.backup_dir, self.base, self.keeper = net, task, backup_dir, base, keeper
        self.ema = ema
        self.monitor, self.result, self.log, self.world = monitor, result, log, world
        self.alexeyab = dialect is ALEXEYAB
        self.chart_path = Path(extras.chart) if extras.chart is not None else backup_dir / "chart.png"
        self.mjpeg_port = extras.mjpeg_port
        self.hours_left = NO_ETA   # avg_time
        self.stream = None

    def __enter__(self) -> "_Run":
        if self.mjpeg_port is not None:
            from ..serve.mjpeg import MjpegServer   # only when asked: the server is not needed to train

            self.stream = MjpegServer(self.mjpeg_port, host="127.0.0.1").__enter__()
            self.log(f"The chart is served at http://127.0.0.1:{self.mjpeg_port}/ (MJPEG)")
        # opened last: nothing above can fail with it open
        self.run_log = RunLog(self.result.log_csv, get_current_batch(self.net.seen, self.net.options.images_per_update))
        return self

    def __exit__(self, *exc) -> None:
        self.run_log.close()
        if self.stream is not None:
            self.stream.__exit__(*exc)

    def iteration(self, entry: IterationLog, images: torch.Tensor, write: Callable[[str], None],
                  tick: float) -> None:
        """Print the iteration, write its backups, measure the mAP when due, log it, redraw the chart."""
        max_batches = self.net.options.max_batches
        monitor = self.monitor
        if monitor is not None:
            for line in monitor.status_lines():
                write(line)
        if self.alexeyab:
            write(entry.title(max_batches, monitor.last if monitor else NOT_MEASURED,
                              monitor.best if monitor else NOT_MEASURED))
        write(entry.line(self.alexeyab))
        for name in self.task.backup_names(entry.batch, self.base):
            self.keeper.save(self.backup_dir / name, entry.batch, images)
            if name.endswith("_last.weights") and self.ema is not None and self.ema.initialized:
                # DARKNET(AlexeyAB detector.c:train_detector): the average beside each _last.weights
                ema_path = self.backup_dir / f"{self.base}_ema.weights"
                with self.ema.swapped_in():
                    self.keeper.save(ema_path, entry.batch, images, training_state=False)
                write(f" EMA weights are saved to the file: {ema_path} ")
        measured = monitor is not None and monitor.due(entry.batch)
        if measured and monitor.measure(entry.batch):
            self.result.best_weights = self.backup_dir / f"{self.base}_best.weights"
            self.keeper.save(self.result.best_weights, entry.batch, images)
        if monitor is not None and monitor.measured:
            self.result.last_map, self.result.best_map = monitor.last, monitor.best
        self.run_log.add(LogRow(entry.batch, entry.loss, entry.avg_loss, entry.rate, entry.images, entry.seconds,
                                entry.hours_left, monitor.last if measured else None,
                                monitor.best if measured else None))
        self._estimate(entry.batch, time.perf_counter() - tick)
        if measured or entry.batch % CHART_EVERY == 0:
            self.draw_chart()

    def _estimate(self, iteration: int, seconds: float) -> None:
        """AlexeyAB's hours left: the time of this iteration (its mAP included) for the iterations left,
        averaged over iterations with weight ETA_ALPHA."""
        # DARKNET(AlexeyAB detector.c:train_detector): ((max_batches - iteration) / ngpus) is an int division
        left = (self.net.options.max_batches - iteration) // self.world * seconds / 3600
        self.hours_left = left if self.hours_left < 0 else ETA_ALPHA * left + (1 - ETA_ALPHA) * self.hours_left

    def draw_chart(self) -> None:
        rows = self.run_log.rows
        if not rows:
            return
        measured = [row for row in rows if row.map is not None]
        try:
            image = save_chart(self.chart_path, [r.iteration for r in rows], [r.loss for r in rows],
                               [r.avg_loss for r in rows], self.net.options.max_batches,
                               max_loss=self.net.options.max_chart_loss,
                               map_iterations=[r.iteration for r in measured], maps=[r.map for r in measured],
                               hours_left=self.hours_left if self.hours_left >= 0 else None)
        except OSError as error:   # the chart is a convenience: training goes on without it
            warnings.warn(f"cannot write {self.chart_path}: {error}", RuntimeWarning, stacklevel=2)
            return
        if self.stream is not None:
            from ..serve.mjpeg import encode_jpeg

            self.stream.publish(encode_jpeg(image, CHART_JPEG_QUALITY))


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
        self.written: Path | None = None   # the last file this run wrote

    def last_written_text(self) -> str:
        if self.written is not None:
            return f"the last weights written are in {self.written}"
        return "no weights were written" + (f" (the run started from {self.last_good})" if self.last_good else "")

    def last_good_text(self) -> str:
        return (f"in {self.last_good}" if self.last_good is not None
                else "nowhere: this run has written no weights file yet and started from none")

    def save(self, path: Path, batch: int, probe: torch.Tensor | None, training_state: bool = True) -> None:
        """Write the net's weights to `path`; `training_state=False`: weights to keep but not to resume from (the
        EMA average), never named as the last good ones."""
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
        if training_state:
            self.last_good = self.written = path

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


def _silent(_line: str) -> None:
    """The log of the processes other than rank 0: Darknet prints once per run."""


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
               world: int, hours_left: float) -> IterationLog:
    batch = get_current_batch(net.seen, net.options.images_per_update)
    previous = history[-1].avg_loss if history else loss
    # DARKNET(detector.c:train_detector): avg_loss starts at the first loss, then .9*avg + .1*loss
    return IterationLog(batch, loss, previous * 0.9 + loss * 0.1, rate, seconds, task.printed_images(world),
                        task.epoch(), hours_left)
