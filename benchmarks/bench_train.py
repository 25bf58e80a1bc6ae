"""Training speed: images/s of yolov2-tiny-voc and yolov2-voc at 416, batch 8, and of data loading.

A step is the project's `train_step` (pydarknet/engine/step.py): training-mode forward, the real
region loss (`region_loss`), Darknet's region backward (`region_input_gradient`) through the net,
and a `DarknetSGD` update; on synthetic random images and truths (1-6 boxes per image), with
random initial weights (the speed does not depend on them). The nets' steps are timed interleaved,
medians over --runs steps after --warmup steps, on the CPU with --threads threads, and on CUDA
(float32, and bfloat16 autocast) when present; each with the net and images in the default (NCHW)
and in the channels_last memory format.

Data loading is timed on its own: decoding and Darknet's augmentation of synthetic JPEGs
(`pydarknet/data/synth.py`) at 416, in this process and through `train_loader` with its workers.

The C Darknet is timed beside pydarknet, on the whole `detector train` loop, by bench_train_loop.py.

Usage: python benchmarks/bench_train.py [--out results/bench/train.json] [--runs 3]
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import common  # before torch: sets OMP_WAIT_POLICY, which OpenMP reads when torch loads it
import torch
from common import (
    Timing,
    devices,
    interleave,
    print_table,
    reference_cfg,
    set_threads,
    timed,
    write_json,
)
from torch import Tensor

from pydarknet.data.augment import AugmentOptions
from pydarknet.data.dataset import DetectionDataset, SampleKey, train_loader
from pydarknet.data.files import read_list
from pydarknet.data.synth import make_synth
from pydarknet.engine.sgd import DarknetSGD
from pydarknet.engine.step import train_step
from pydarknet.engine.tasks import task_for
from pydarknet.heads.region.loss import MAX_TRUTHS, PRIOR_SEEN
from pydarknet.network import Darknet

NETS = ("yolov2-tiny-voc", "yolov2-voc")
BATCH = 8
SIZE = 416
MAX_BOXES = 6
PAST_WARM_UP = PRIOR_SEEN   # seen of every timed step: the region loss's prior pull is over, as in most training


def training_net(name: str, device: torch.device) -> Darknet:
    """The cfg's net with random weights, set to train on mini-batches of BATCH at SIZE."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the original cfgs repeat batch= and subdivisions= in [net]
        net = Darknet.from_cfg(reference_cfg(name))
    # DARKNET(detector.c:train_detector): the [net] section of these cfgs is set up for testing (batch=1)
    net.options = dataclasses.replace(net.options, batch=BATCH, subdivisions=1)
    if (net.width, net.height) != (SIZE, SIZE):
        raise ValueError(f"{name}: expected a {SIZE}x{SIZE} cfg, got {net.width}x{net.height}")
    return net.to(device)


def random_truths(batch: int, classes: int, generator: torch.Generator) -> Tensor:
    """(batch, MAX_TRUTHS, 5) rows x, y, w, h, class: 1..MAX_BOXES boxes per image, then zero rows."""
    truths = torch.zeros(batch, MAX_TRUTHS, 5)
    for image in range(batch):
        boxes = int(torch.randint(1, MAX_BOXES + 1, (1,), generator=generator))
        wh = 0.05 + 0.5 * torch.rand(boxes, 2, generator=generator)
        xy = wh / 2 + (1 - wh) * torch.rand(boxes, 2, generator=generator)   # boxes inside the image
        truths[image, :boxes] = torch.cat((xy, wh, torch.randint(0, classes, (boxes, 1), generator=generator)), 1)
    return truths


@dataclasses.dataclass(frozen=True)
class Mode:
    device: torch.device
    amp: bool              # bfloat16 autocast
    channels_last: bool

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def __str__(self) -> str:
        return " ".join([self.device.type] + ["bf16 autocast"] * self.amp + ["channels_last"] * self.channels_last)


def modes(device: torch.device) -> list[Mode]:
    """float32 and, on CUDA or a CPU with AVX512-BF16/AMX, bfloat16 autocast; each in NCHW and in channels_last."""
    bf16_cpu = device.type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    amps = (False, True) if device.type == "cuda" or bf16_cpu else (False,)
    return [Mode(device, amp, channels_last) for amp in amps for channels_last in (False, True)]


def step_case(name: str, mode: Mode) -> Callable[[], float]:
    """One timed training step of `name` on a fixed synthetic batch."""
    device = mode.device
    net = training_net(name, device).to(memory_format=mode.memory_format)
    optimizer = DarknetSGD(net)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(BATCH, net.channels, SIZE, SIZE, generator=generator).to(device, memory_format=mode.memory_format)
    truths = random_truths(BATCH, net.region.options.classes, generator).to(device)
    task = task_for(net)
    model = task.forward_module()

    def step() -> None:
        # the training loop's path: no parity recording, past the warm-up, the loop's AMP switch
        train_step(net, images, truths, optimizer, task=task, model=model, record=False, amp=mode.amp,
                   seen=PAST_WARM_UP)

    return lambda: timed(step, device)


def step_timings(modes: list[Mode], warmup: int, runs: int) -> list[dict]:
    """Every net in every mode of one device, interleaved."""
    cases = {(name, mode): step_case(name, mode) for name in NETS for mode in modes}
    rows = []
    for (name, mode), seconds in interleave(cases, warmup, runs).items():
        timing = Timing(name, BATCH, seconds)
        rows.append({"mode": str(mode), "device": mode.device.type, "amp": mode.amp,
                     "channels_last": mode.channels_last, "batch": BATCH, "size": SIZE, **timing.as_dict()})
    return rows


def loading_timings(images: int, loader_batches: int, workers: int) -> dict:
    """Images/s of decode + augmentation, in this process and through `train_loader`'s workers."""
    with tempfile.TemporaryDirectory() as tmp:
        make_synth(Path(tmp) / "synth", train=images, valid=1, size=500)   # VOC-like image sides
        paths = read_list(Path(tmp) / "synth" / "train.txt")
        cfg_net = training_net("yolov2-voc", torch.device("cpu"))
        o, region = cfg_net.options, cfg_net.region.options
        dataset = DetectionDataset(paths, classes=5, size=(SIZE, SIZE), options=AugmentOptions(
            jitter=region.jitter, hue=o.hue, saturation=o.saturation, exposure=o.exposure, max=region.max))

        start = time.perf_counter()
        for index in range(len(dataset)):
            dataset[SampleKey(index, SIZE, SIZE, (0, index))]
        single = len(dataset) / (time.perf_counter() - start)

        batches = iter(train_loader(dataset, BATCH, 1, loader_batches + 1, workers=workers))
        next(batches)   # the clock starts once the workers are up
        start = time.perf_counter()
        loaded = sum(len(images) for images, _ in batches)
        through_loader = loaded / (time.perf_counter() - start)
    return {"images": images, "single_process_images_per_s": single,
            "loader_workers": workers, "loader_images": loaded, "loader_images_per_s": through_loader}


def report(rows: list[dict], loading: dict) -> dict:
    table, summary = [], {}
    for row in rows:
        mode = row["mode"]
        table.append([row["name"], mode, f"{row['median_s']:.2f}", f"{row['min_s']:.2f}",
                      f"{row['items_per_s']:.2f}"])
        summary[f"train {row['name']} {mode} images/s"] = row["items_per_s"]
    print(f"\ntraining step, batch {BATCH} at {SIZE} (forward + region loss + backward + SGD update)")
    print_table(table, ["net", "mode", "median s/step", "min s/step", "images/s"])
    print(f"\ndata loading at {SIZE} with augmentation: {loading['single_process_images_per_s']:.1f} images/s in one "
          f"process, {loading['loader_images_per_s']:.1f} images/s through train_loader "
          f"({loading['loader_workers']} workers)")
    summary["data loading images/s (one process)"] = loading["single_process_images_per_s"]
    summary[f"data loading images/s ({loading['loader_workers']} workers)"] = loading["loader_images_per_s"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--runs", type=int, default=3, help="timed steps per net (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per net first")
    parser.add_argument("--threads", type=int, default=common.THREADS, help="CPU threads")
    parser.add_argument("--loading-images", type=int, default=48, help="synthetic images for the loading timing")
    parser.add_argument("--workers", type=int, default=2, help="train_loader workers for the loading timing")
    args = parser.parse_args()
    set_threads(args.threads)

    rows = []
    for device in devices():
        rows += step_timings(modes(device), args.warmup, args.runs)
    loading = loading_timings(args.loading_images, max(1, args.loading_images // BATCH), args.workers)
    summary = report(rows, loading)
    write_json(args.out, {"train": rows, "loading": loading, "summary": summary, "runs": args.runs,
                          "warmup": args.warmup, "threads": args.threads})


if __name__ == "__main__":
    main()
