"""Layer modules; importing this package registers their section builders (the heads register in `heads`)."""
from . import conv, local, pointwise, pool, softmax, structure  # noqa: F401  (registration side effects)
from .base import DarknetLayer

__all__ = ["DarknetLayer"]
