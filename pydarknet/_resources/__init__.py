"""Where the `cfg/` and `data/` files shipped with pydarknet live.

In a source checkout (and an editable install) they are the repository's top-level `cfg/` and
`data/` folders; a wheel installs the same files here, as `pydarknet/_resources/{cfg,data}` (see
pyproject.toml), so that `cfg/coco.data` or `data/dog.jpg` are found by name from any directory.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parent.parent


def shipped_root() -> Path:
    """The folder holding the shipped `cfg/` and `data/`: this package in a wheel, else the checkout."""
    return _HERE if (_HERE / "cfg").is_dir() else _CHECKOUT
