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


# The C programs, CPU builds of the user's own (never part of this repository), by the variable naming each
C_PROGRAMS = {"C Darknet (pjreddie)": "DARKNET_PJREDDIE", "C Darknet (AlexeyAB)": "DARKNET_ALEXEYAB"}


def c_darknet_binaries() -> dict[str, Path]:
    """The C Darknet binaries the environment names (a line for each one it does not)."""
    found = {}
    for name, variable in C_PROGRAMS.items():
        if os.environ.get(variable):
            found[name] = Path(os.environ[variable]).resolve()
        else:
            print(f"{name}: skipped (set ${variable} to a CPU build of it)")
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


def interleave(cases: dict[Key, Callable[[], float]], warmup: int, runs: int) -> dict[Key, list[float]]:
    """Call every case in turn (A B C A B C ...), `warmup` rounds discarded; seconds per case.

    Interleaving spreads slow phases of a shared machine (other jobs, thermal) over all cases alike.
    """
    seconds: dict[Key, list[float]] = {name: [] for name in cases}
    for round_ in range(warmup + runs):
        for name, case in cases.items():
            elapsed = case()
            if round_ >= warmup:
                seconds[name].append(elapsed)
    return seconds


def environment() -> dict:
    """What the figures depend on, stored with them."""
    return {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.processor()
            or platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"), "malloc_keeps_freed_memory": MALLOC_TUNED,
            "mkldnn": torch.backends.mkldnn.is_available(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "load_average_start": START_LOAD, "load_average": os.getloadavg()}


def print_table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(str(cell).rjust(w) if i else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))


def write_json(path: str | os.PathLike | None, result: dict) -> None:
    """Write `result` (with the environment) to `path`; `result["summary"]` holds the headline figures."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**result, "environment": environment()}, indent=2) + "\n")
    print(f"results written to {path}")
