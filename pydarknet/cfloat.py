"""C `float` arithmetic: Darknet keeps rates, scales and decays as 32-bit floats between operations."""
from __future__ import annotations

import numpy as np


def f32(x: float) -> float:
    """`x` rounded to float32, as a Python float (where Darknet stores a value in a C `float`)."""
    return float(np.float32(x))
