"""What the benchmark scripts share: thread setup, the reference pack, timing and reporting.

Import this module before torch: it sets OMP_WAIT_POLICY, which OpenMP reads only once, when torch
loads it.
"""
from __future__ import annotations

import json
import lzma
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

# OMP_WAIT_POLICY=PASSIVE and glibc keeping freed memory, as the CLI gets them (pydarknet/runtime.py;
# OpenCV DNN allocates its blobs once, so without the latter the comparison would time page zeroing)
from pydarknet.runtime import tune_process  # noqa: E402  (imports no torch)

MALLOC_TUNED = tune_process()

import torch  # noqa: E402  (after OMP_WAIT_POLICY, see above)

REPO = Path(__file__).resolve().parent.parent
REFERENCE_ENV = "PYDARKNET_REFERENCE"
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference"
REFERENCE_YOLO_ENV = "PYDARKNET_REFERENCE_YOLO"   # AlexeyAB's pack: yolov3-tiny, yolov4-tiny (cfgs and weights)
DEFAULT_REFERENCE_YOLO = REPO.parent / "shared" / "reference-yolo"
WEIGHTS_CACHE = Path(tempfile.gettempdir()) / "pydarknet-bench-weights"
THREADS = 2
START_LOAD = os.getloadavg()   # 1, 5 and 15 min load averages before the benchmark: was the machine busy?
Key = TypeVar("Key", bound=Hashable)


def reference_dir(yolo: bool = False) -> Path:
    """The Darknet reference pack (cfgs and xz-compressed weights); $PYDARKNET_REFERENCE overrides. With
    `yolo`, AlexeyAB's YOLO pack ($PYDARKNET_REFERENCE_YOLO overrides)."""
    env, default = (REFERENCE_YOLO_ENV, DEFAULT_REFERENCE_YOLO) if yolo else (REFERENCE_ENV, DEFAULT_REFERENCE)
    path = Path(os.environ.get(env, default))
    if not (path / "README.md").is_file():
        raise SystemExit(f"reference pack not found at {path}; set ${env}")
    return path


def reference_cfg(name: str, yolo: bool = False) -> Path:
    return reference_dir(yolo) / "darknet" / "cfg" / f"{name}.cfg"


def reference_weights(name: str, yolo: bool = False) -> Path:
    """weights/<name>.weights.xz of the pack (AlexeyAB's YOLO pack with `yolo`), decompressed once into a
    temp cache (never into the repo)."""
    target = WEIGHTS_CACHE / f"{name}.weights"
    if not target.exists():
        WEIGHTS_CACHE.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        with lzma.open(reference_dir(yolo) / "weights" / f"{name}.weights.xz") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)
        partial.replace(target)   # a run killed mid-way leaves no truncated weights behind
    return target


def random_weights(cfg: Path, seed: int = 0, obj_bias: float = -5.5, cls_bias: float = -3.5) -> Path:
    """Weights for a cfg no pack has weights for (yolov2 at 608, yolov4), made once into the temp cache (never
    into the repo; yolov4's are 245 MB), named by the cfg's content hash and `seed`.

    `Darknet.from_cfg(cfg, seed=seed)`; for a net with [yolo] heads, as the AlexeyAB pack's weights (its README
    §3): batch-norm statistics from one training-mode forward of data/dog.jpg, so the activations neither explode
    nor vanish, and the convs feeding a [yolo] layer with weights 1/sqrt(fan_in) and biases `obj_bias` on the
    objectness, `cls_bias` on the classes, so that a `detector test` finds a few boxes, as with trained weights,
    instead of thousands (then NMS and printing, not the net, would be timed). The forward's time does not depend
    on the values.
    """
    import hashlib

    import numpy as np
    from torch import nn

    from pydarknet.heads.yolo.layer import YoloLayer
    from pydarknet.image import load_image, network_input
    from pydarknet.layers.conv import ConvolutionalLayer
    from pydarknet.network import Darknet
    from pydarknet.weights import save_weights

    digest = hashlib.sha256(Path(cfg).read_bytes()).hexdigest()[:12]
    target = WEIGHTS_CACHE / f"{Path(cfg).stem}-{digest}-seed{seed}.weights"
    if target.exists():
        return target
    print(f"making random weights for {cfg} (seed {seed}) into {target} ...", flush=True)
    net = Darknet.from_cfg(cfg, seed=seed)
    layers = list(net.layers)
    heads = [(conv, head) for conv, head in zip(layers, layers[1:])
             if isinstance(conv, ConvolutionalLayer) and isinstance(head, YoloLayer)]
    if heads:
        with torch.no_grad():
            for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
                bn.reset_running_stats()
                bn.momentum = 1.0   # the running statistics become this one image's
            net.train()
            image = network_input(load_image(REPO / "data" / "dog.jpg"), net.width, net.height, letterbox=False)
            net(torch.from_numpy(np.ascontiguousarray(image))[None])
            net.eval()
            for conv, head in heads:
                conv.op.weight.mul_(0.5 ** 0.5)   # He's sqrt(2/fan_in) -> 1/sqrt(fan_in)
                biases = torch.zeros(len(head.mask), 5 + head.classes)
                biases[:, 4], biases[:, 5:] = obj_bias, cls_bias
                conv.biases().copy_(biases.reshape(-1))
        net.weights_version = (0, 2, 5)   # AlexeyAB's header
    WEIGHTS_CACHE.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    save_weights(net, partial)
    partial.replace(target)
    return target


# The C programs, CPU builds of the user's own (never part of this repository), by the variable naming each
C_PROGRAMS = {"C Darknet (pjreddie)": "DARKNET_PJREDDIE", "C Darknet (AlexeyAB)": "DARKNET_ALEXEYAB"}


def c_binary(name: str) -> Path | str:
    """The binary of C program `name` (a key of C_PROGRAMS) its variable names, or why there is none."""
    variable = C_PROGRAMS[name]
    if not os.environ.get(variable):
        return f"not run: ${variable} is not set (a CPU build of yours, see benchmarks/README.md)"
    binary = Path(os.environ[variable]).resolve()
    return binary if binary.is_file() else f"not run: ${variable} = {binary} is not built"


def c_darknet_binaries() -> dict[str, Path]:
    """The C Darknet binaries the environment names (a line for each one it does not)."""
    found = {}
    for name in C_PROGRAMS:
        binary = c_binary(name)
        if isinstance(binary, Path):
            found[name] = binary
        else:
            print(f"{name}: {binary}")
    return found


def set_child_threads(threads: int = THREADS) -> None:
    """Give the commands a whole-process benchmark starts (pydarknet's and the C programs' OpenMP) `threads`
    threads, unless $OMP_NUM_THREADS says otherwise."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def set_threads(threads: int = THREADS) -> None:
    torch.set_num_threads(threads)


def devices() -> list[torch.device]:
    """CPU, and CUDA when there is one."""
    return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes, with the device's queued work finished before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


@dataclass
class Timing:
    """Wall times of one measured case, warm-up runs excluded; `items` per call (images, steps)."""

    name: str
    items: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def per_second(self) -> float:
        return self.items / self.median

    def as_dict(self) -> dict:
        return {**asdict(self), "median_s": self.median, "min_s": min(self.seconds),
                "items_per_s": self.per_second}


# Untimed rest before each call: onnxruntime's, OpenVINO's and OpenCV's thread pools spin for a while after a
# call, and without it slowed whichever case ran next (the same int8 case moved between 0.52x and 0.75x)
PAUSE_S = 0.1


def interleave(cases: dict[Key, Callable[[], float]], warmup: int, runs: int,
               pause: float = PAUSE_S) -> dict[Key, list[float]]:
    """Call every case in turn (A B C A B C ...), `warmup` rounds discarded, `pause` seconds of rest before each
    call; seconds per case.

    Interleaving spreads slow phases of a shared machine (other jobs, thermal) over all cases alike.
    """
    seconds: dict[Key, list[float]] = {name: [] for name in cases}
    for round_ in range(warmup + runs):
        for name, case in cases.items():
            time.sleep(pause)
            elapsed = case()
            if round_ >= warmup:
                seconds[name].append(elapsed)
    return seconds


# the /proc/cpuinfo flags the figures depend on: the vector units oneDNN, OpenVINO and OpenCV pick kernels by
CPU_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
             "amx_int8")


def cpu_line() -> str:
    """This machine's CPU as the tables are labelled with: model, cores, the vector flags of `CPU_FLAGS` it has,
    torch's CPU capability, whether oneDNN runs bf16 in hardware, and the load average."""
    from pydarknet.prepack import cpu_runs_bf16

    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return (f"CPU: {model}, {os.cpu_count()} cores; flags: {' '.join(f for f in CPU_FLAGS if f in flags) or '?'}; "
            f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}; bf16 in hardware: "
            f"{'yes' if cpu_runs_bf16() else 'no (emulated)'}; load average "
            + " ".join(f"{a:.2f}" for a in os.getloadavg()))


def environment() -> dict:
    """What the figures depend on, stored with them."""
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.processor()
            or platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "malloc_keeps_freed_memory": MALLOC_TUNED,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "cpu": cpu_line(), "load_average_start": START_LOAD, "load_average": os.getloadavg()}


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        # the first column and a trailing "note" (text) left-aligned, the figures right-aligned
        print("  ".join(str(cell).ljust(w) if i == 0 or header[i] == "note" else str(cell).rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())


def write_json(path: str | os.PathLike | None, result: dict) -> None:
    """Write `result` (with the environment) to `path`; `result["summary"]` holds the headline figures."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "environment": environment()}, indent=2) + "\n")
    print(f"results written to {path}")


if __name__ == "__main__":   # run_all.sh prints the machine first
    print(cpu_line())
