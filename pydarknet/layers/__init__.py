"""Layer modules; importing this package registers every section builder."""
from . import conv, pool, region, softmax, structure  # noqa: F401  (registration side effects)
from .base import DarknetLayer

__all__ = ["DarknetLayer"]
