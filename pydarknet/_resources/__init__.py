"""Where the `cfg/` and `data/` files shipped with pydarknet live.

In a source checkout (and an editable install) they are the repository's top-level `cfg/` and
`data/` folders; a wheel installs the same files here, as `pydarknet/_resources/{cfg,data}` (see
pyproject.toml), so that `cfg/coco.data` or `data/dog.jpg` are found by name from any directory.
"""
from __future__ import annotations

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parent.parent


def shipped_root() -> Path:
    """The folder holding the shipped `cfg/` and `data/`: this package in a wheel, else the checkout."""
    return _HERE if (_HERE / "cfg").is_dir() else _CHECKOUT


def shipped_or_given(path: str | os.PathLike) -> str | os.PathLike:
    """`path` if it exists (or is absolute, or climbs with '..'), else the shipped file of that name when there
    is one, else `path` unchanged (so that whoever opens it reports it missing).

    What the CLI's arguments do (`cli.common.ShippedFile`), for the API: `load_network("cfg/yolov2.cfg")`,
    `read_names("data/voc.names")`, `load_image("data/dog.jpg")` work from any directory, and from a wheel.
    """
    given = Path(path)
    if given.is_absolute() or ".." in given.parts or given.exists():
        return path
    shipped = shipped_root() / given
    return shipped if shipped.is_file() else path
