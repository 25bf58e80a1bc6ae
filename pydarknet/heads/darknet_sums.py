"""Darknet's float32 bookkeeping for the printed training lines: running sums, their averages and `mag_array` costs.

The lines print six (or two) decimals of float32 sums accumulated one value at a time, so the sums are taken in
float32 in Darknet's order (numpy's cumsum is sequential, unlike sum's pairwise reduction).
"""
from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from ..cfloat import running_sum


def float32_sum(values: Tensor) -> np.float32:
    """A C `float` accumulated over `values` in their (flattened) order."""
    return running_sum(values.detach().float().cpu().numpy().ravel())


def c_mean(values: Tensor, divisor: int) -> float:
    """DARKNET: a float running sum divided by an int, in float (0/0 gives nan)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(float32_sum(values) / np.float32(divisor))


SSE_LANES = 4   # float32 lanes of the SSE registers the -Ofast builds sum in


def squared_magnitude(delta: Tensor) -> np.float32:
    """`pow(mag_array(delta, n), 2)`: the float sum of squares, its sqrt stored in a float, squared in double and
    stored in a float.

    DARKNET(utils.c:mag_array): both Darknets are built -Ofast, where gcc sums the squares in four float lanes,
    adds the lanes as (0 + 2) + (1 + 3), then the last n % 4 squares one by one (n < 4: all one by one). The costs
    printed with two decimals are only Darknet's in that order.
    """
    squares = (delta.detach().float() ** 2).cpu().numpy().ravel()
    whole = len(squares) // SSE_LANES * SSE_LANES if len(squares) >= SSE_LANES else 0
    total = np.float32(0)
    if whole:
        lanes = np.cumsum(squares[:whole].reshape(-1, SSE_LANES), axis=0, dtype=np.float32)[-1]
        total = (lanes[0] + lanes[2]) + (lanes[1] + lanes[3])
    for square in squares[whole:]:
        total = np.float32(total + square)
    return np.float32(np.float64(np.sqrt(total)) ** 2)


def c_float(value: float, decimals: int = 6) -> str:
    """printf's %f (%.<decimals>f); DARKNET: a 0/0 average prints glibc's `-nan` (x86's default NaN is negative)."""
    return "-nan" if math.isnan(value) else f"{value:.{decimals}f}"
