"""Process settings for running nets on the CPU, applied by the CLI before torch loads (and by the
benchmarks, so that they time what a user's command gets).

* `OMP_WAIT_POLICY=PASSIVE` unless set: OpenMP's default is to spin between parallel regions, and on a
  machine whose cores anything else also uses (a data loader, another job) the spinning threads steal
  them: yolov2-voc batch 1 took 0.95 s with the default against 0.23 s passive, back to back, and a
  `detector train` iteration of yolov2-tiny-voc 3.3 against 1.9 s beside one other job. OpenMP reads
  it once, when torch loads it, so this must run first; an explicit value in the environment wins.
* glibc keeps freed memory (see `keep_freed_memory`), unless $GLIBC_TUNABLES is set.
"""
from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc <malloc.h>
KEEP_FREED_BYTES = 2**31 - 1


def tune_process() -> bool:
    """Apply both settings; returns whether glibc's were applied (torch must not be loaded yet for the
    OpenMP one to take effect)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return keep_freed_memory()


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
