"""C `float` arithmetic: Darknet keeps rates, scales and decays as 32-bit floats between operations."""
from __future__ import annotations

import numpy as np


def f32(x: float) -> float:
    """`x` rounded to float32, as a Python float (where Darknet stores a value in a C `float`)."""
    return float(np.float32(x))


def running_sum(values: np.ndarray, axis: int = -1) -> np.ndarray | np.float32:
    """A C `float` accumulated one value at a time along `axis` (0 for none): Darknet's ``sum += x[i]`` loops.

    numpy's cumsum is sequential, unlike sum's pairwise reduction, so its last element is the C loop's float.
    """
    values = np.asarray(values)
    if values.shape[axis] == 0:
        return values.sum(axis=axis, dtype=np.float32)   # zeros of the right shape
    return np.take(np.cumsum(values, axis=axis, dtype=np.float32), -1, axis=axis)
