"""Process settings for running nets on the CPU, applied by the CLI before torch loads (and by the
benchmarks, so that they time what a user's command gets).

* `OMP_WAIT_POLICY=PASSIVE` unless set: OpenMP's default is to spin between parallel regions, and on a
  machine whose cores anything else also uses (a data loader, another job) the spinning threads steal
  them: yolov2-voc batch 1 took 0.95 s with the default against 0.23 s passive, back to back, and a
  `detector train` iteration of yolov2-tiny-voc 3.3 against 1.9 s beside one other job. OpenMP reads
  it once, when torch loads it, so this must run first; an explicit value in the environment wins.
* A short spin instead (`spin_between_layers`) for the commands that run one image at a time, where nothing
  else in the process wants the cores between two layers: a sleeping thread is woken (futex, an
  interrupt between cores) at every parallel region, dozens per forward.
* glibc keeps freed memory (see `keep_freed_memory`), unless $GLIBC_TUNABLES is set.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc <malloc.h>
KEEP_FREED_BYTES = 2**31 - 1
# libgomp's busy-wait, in its spins (~10 ns each by its own estimate), before an idle thread sleeps: long enough to
# bridge the gap between two layers' parallel regions, short enough to leave a shared core soon after. Batch 1,
# 2 threads, AMD EPYC (AVX2), interleaved with OpenCV DNN, ratios of time to it: yolov2-tiny-voc 1.27 (passive),
# 1.22 (3000), 1.20 (5000), 0.93 (10000), 0.95 (20000); beside one busy process: 0.90, 0.96, 1.02, 1.13, 1.34
ONE_IMAGE_SPIN_COUNT = "10000"
# whether the user chose OpenMP's wait: then neither setting here touches it
WAIT_CHOSEN_BY_USER = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ


def tune_process() -> bool:
    """Apply both settings; returns whether glibc's were applied (torch must not be loaded yet for the
    OpenMP one to take effect)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return keep_freed_memory()


def spin_between_layers() -> bool:
    """For a command that runs one image at a time (`detector test`, `classifier predict`, `serve`): let OpenMP's
    threads spin `ONE_IMAGE_SPIN_COUNT` times before they sleep (libgomp honours an explicit GOMP_SPINCOUNT
    over OMP_WAIT_POLICY). Batch 1, quiet, 2 threads, ratios of time to OpenCV DNN: yolov2-voc 1.02 -> 0.87-0.90,
    yolov2-tiny-voc 1.26 -> 0.93, yolov4-tiny 1.39 -> 0.93-1.0. Not for training or `detector valid` / `map`,
    whose decoding threads or data loaders want the cores the spinning takes (`detector valid` of yolov2-tiny-voc:
    2.7-3.5 images/s passive against 2.2-2.3 spinning).
    Returns whether it applied: not where the user chose OpenMP's wait, nor once torch is loaded (libgomp has
    read its settings by then)."""
    if WAIT_CHOSEN_BY_USER or "torch" in sys.modules:
        return False
    os.environ["GOMP_SPINCOUNT"] = ONE_IMAGE_SPIN_COUNT
    return True


def keep_freed_memory() -> bool:
    """Make glibc reuse freed feature maps instead of returning them to the OS; False if not applied.

    By default glibc serves large allocations (from 128 KiB, a threshold it raises up to 32 MiB) with a
    fresh mmap and unmaps them on free, so every forward page-faults its activations in again: 40k
    faults and 20% of the time of a yolov2-voc forward at batch 1 (270k faults, 20% at batch 8).
    Skipped when $GLIBC_TUNABLES is set (the user's own malloc settings; its
    `glibc.malloc.mmap_threshold` and `glibc.malloc.trim_threshold` do the same).
    """
    if "GLIBC_TUNABLES" in os.environ or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(libc.mallopt(M_MMAP_THRESHOLD, KEEP_FREED_BYTES) and libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
