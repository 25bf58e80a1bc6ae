"""Files written so that a crash never leaves half of one: atomic writes, and the cleanup of the
temporaries a killed write leaves behind (weights files, backups, the loss chart).

No torch here.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"   # `.<name>.<random>.tmp` beside the file being written


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, rename it over `path`, and flush
    the folder, so that after a crash `path` holds either the old or the new bytes, never a mix.

    The file gets the mode `fopen` would give it: an existing file's, else 0666 less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp creates 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | os.PathLike,
                             names: tuple[str, ...] = ("*.weights", "*.backup", "chart.png")) -> list[Path]:
    """Remove the temporary files that a killed `write_atomically` of a file matching `names` left in
    `folder` (a training run's backups and chart); returns them."""
    stale = sorted({path for name in names for path in Path(folder).glob(f".{name}.*{TEMPORARY_SUFFIX}")})
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read it is to set it
        os.umask(umask)
        return 0o666 & ~umask
