"""Multi-scale training (`random=` of the detection layer): every 10 steps the network size is drawn again,
and Darknet says so with its `Resizing` line.

Two rules, one per Darknet:
- pjreddie (examples/detector.c:train_detector): a square side of 320..608 in steps of 32, whatever the
  cfg's size, and 608 for the last 200 steps; it prints `Resizing` then the side.
- AlexeyAB (src/detector.c:train_detector): the cfg's width and height times or divided by a factor of
  1..`random` (1.4 for `random=1`), rounded to multiples of `resize_step`; the largest sizes at the first
  draw of a run and for the last 100 steps; it prints `Resizing, random_coef = 1.40` then `W x H`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .augment import rand_scale

MULTISCALE_EVERY = 10               # DARKNET(detector.c:train_detector): steps between size changes
MULTISCALE_DIMS = (320, 608, 32)    # DARKNET(detector.c:train_detector): (rand()%10+10)*32
MULTISCALE_FINAL_BATCHES = 200      # DARKNET(detector.c:train_detector): last steps train at 608
ALEXEYAB_RANDOM_COEF = 1.4          # DARKNET(AlexeyAB detector.c:train_detector): the factor of `random=1`
ALEXEYAB_FINAL_BATCHES = 100        # DARKNET(AlexeyAB detector.c:train_detector): last steps at the largest size


@dataclass(frozen=True)
class Resize:
    """A multi-scale draw: the network size from this step on, and the line Darknet prints for it."""

    w: int
    h: int
    line: str


def multiscale_dim(rng: np.random.Generator, count: int, current_batch: int, max_batches: int) -> int | None:
    """The new square network size before training step `count` of this run, or None to keep it.

    DARKNET(detector.c:train_detector): `count` restarts at 0 when training resumes, so the first
    step always picks a size; the draw is made even when the final-608 rule overrides it.
    """
    if count % MULTISCALE_EVERY:
        return None
    low, high, step = MULTISCALE_DIMS
    dim = int(rng.integers(low // step, high // step + 1)) * step
    return high if current_batch + MULTISCALE_FINAL_BATCHES > max_batches else dim


def pjreddie_multiscale(rng: np.random.Generator, count: int, step: int, max_batches: int,
                        size: tuple[int, int]) -> Resize | None:
    """pjreddie's rule (`multiscale_dim`); `size`, the cfg's, plays no part in it."""
    dim = multiscale_dim(rng, count, step, max_batches)
    # DARKNET(detector.c:train_detector): printf("Resizing\n"); printf("%d\n", dim)
    return None if dim is None else Resize(dim, dim, f"Resizing\n{dim}")


@dataclass(frozen=True)
class AlexeyabMultiscale:
    """AlexeyAB's rule for a detection layer's `random=` (a factor; 1 means 1.4) and [net] `resize_step`."""

    random: float
    resize_step: float = 32

    @property
    def coefficient(self) -> float:
        # DARKNET(AlexeyAB detector.c:train_detector): rand_coef = 1.4 unless random != 1
        return ALEXEYAB_RANDOM_COEF if self.random == 1 else self.random

    def __call__(self, rng: np.random.Generator, count: int, step: int, max_batches: int,
                 size: tuple[int, int]) -> Resize | None:
        if count % MULTISCALE_EVERY:
            return None
        scale = rand_scale(rng, self.coefficient)   # DARKNET(AlexeyAB utils.c:rand_scale): as pjreddie's
        # DARKNET(AlexeyAB detector.c:train_detector): the first draw of a run (avg_loss < 0) and the last 100
        # steps use the largest size (the first "to check there is enough memory")
        largest = count == 0 or step > max_batches - ALEXEYAB_FINAL_BATCHES
        w, h = self.scaled(self.coefficient, size) if largest else self.size_for(scale, size)
        # DARKNET(AlexeyAB detector.c:train_detector): printf("Resizing, random_coef = %.2f \n"), then "\n %d x %d \n"
        return Resize(w, h, f"Resizing, random_coef = {self.coefficient:.2f} \n\n {w} x {h} ")

    def size_for(self, scale: float, size: tuple[int, int]) -> tuple[int, int]:
        """The network size for a drawn factor `scale` of the cfg's `size` (w, h)."""
        w, h = self.scaled(scale, size)
        # DARKNET(AlexeyAB detector.c:train_detector): `+ 1` inside the rounding makes a factor just under 1 round
        # up past the cfg's size: then the cfg's size itself
        if scale < 1 and (w > size[0] or h > size[1]):
            w, h = size
        return w, h

    def scaled(self, scale: float, size: tuple[int, int]) -> tuple[int, int]:
        """`roundl(scale * side / resize_step + 1) * resize_step` of each side, at least one step."""
        # DARKNET(AlexeyAB parser.c:parse_net_options): resize_step is read as a float into an int
        step = int(self.resize_step)
        w, h = (_c_roundl(np.float32(scale) * np.float32(side) / np.float32(step) + np.float32(1)) * step
                for side in size)
        return max(w, step), max(h, step)


def _c_roundl(value: float) -> int:
    """C's roundl: halves away from zero."""
    return int(math.copysign(math.floor(abs(float(value)) + 0.5), value))
