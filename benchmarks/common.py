"""What the benchmark scripts share: thread setup, the reference pack, timing and reporting.

Import this module before torch: it sets OMP_WAIT_POLICY, which OpenMP reads only once, when torch
loads it.
"""
from __future__ import annotations

import ctypes
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

# OpenMP's default is to spin between parallel regions. On a 2-core machine that anything else also
# uses, the spinning threads steal the cores: yolov2-voc batch 1 measured 0.95 s with the default
# and 0.23 s with PASSIVE in back-to-back runs. An explicit OMP_WAIT_POLICY in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc <malloc.h>
KEEP_FREED_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Make glibc reuse freed feature maps instead of returning them to the OS; False if not applied.

    By default glibc serves large allocations (from 128 KiB, a threshold it raises up to 32 MiB) with a
    fresh mmap and unmaps them on free, so every forward page-faults its activations in again: 40k
    faults and 20% of the time of a yolov2-voc forward at batch 1 (270k faults, 20% at batch 8).
    OpenCV DNN allocates its blobs once, so without this the comparison would time the kernel's page
    zeroing. Skipped when $GLIBC_TUNABLES is set (the user's own malloc settings; its
    `glibc.malloc.mmap_threshold` and `glibc.malloc.trim_threshold` do the same).
    """
    if "GLIBC_TUNABLES" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))


MALLOC_TUNED = keep_freed_memory()

import torch  # noqa: E402  (after OMP_WAIT_POLICY, see above)

REPO = Path(__file__).resolve().parent.parent
REFERENCE_ENV = "PYDARKNET_REFERENCE"
DEFAULT_REFERENCE = REPO.parent / "shared" / "reference"
WEIGHTS_CACHE = Path(tempfile.gettempdir()) / "pydarknet-bench-weights"
THREADS = 2
START_LOAD = os.getloadavg()   # 1, 5 and 15 min load averages before the benchmark: was the machine busy?
Key = TypeVar("Key", bound=Hashable)


def reference_dir() -> Path:
    """The Darknet reference pack (cfgs and xz-compressed weights); $PYDARKNET_REFERENCE overrides."""
    path = Path(os.environ.get(REFERENCE_ENV, DEFAULT_REFERENCE))
    if not (path / "README.md").is_file():
        raise SystemExit(f"reference pack not found at {path}; set ${REFERENCE_ENV}")
    return path


def reference_cfg(name: str) -> Path:
    return reference_dir() / "darknet" / "cfg" / f"{name}.cfg"


def reference_weights(name: str) -> Path:
    """weights/<name>.weights.xz of the pack, decompressed once into a temp cache (never into the repo)."""
    target = WEIGHTS_CACHE / f"{name}.weights"
    if not target.exists():
        WEIGHTS_CACHE.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        with lzma.open(reference_dir() / "weights" / f"{name}.weights.xz") as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)
        partial.replace(target)   # a run killed mid-way leaves no truncated weights behind
    return target


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
