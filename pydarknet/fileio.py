"""Files written so that a crash never leaves half of one: atomic writes, and the cleanup of the
temporaries a killed write leaves behind (weights files, backups, the loss chart); and the checks made
on a user's paths before they are opened (a FIFO would block `open()`, a device never ends).

No torch here.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from .errors import DarknetError, DataError, MissingFileError

TEMPORARY_SUFFIX = ".tmp"   # `.<name>.<writer's pid>.<random>.tmp` beside the file being written
LOCK_NAME = ".pydarknet.lock"   # in a backup folder: held by the training run writing there, holds its pid
# The largest text file (.data, .names, image list, label file) read into memory: 1 GiB is ten times
# ImageNet's training list (1.28 M paths); `names=/dev/zero` is refused before this, as a device.
TEXT_FILE_MAX_BYTES = 2 ** 30


def kind_of(path: str | os.PathLike) -> str | None:
    """What `path` is when it is not a regular file ("a directory", "a FIFO", "a device", "a socket"),
    None for a regular file (or a link to one); `FileNotFoundError` when nothing is there.

    `os.stat` never blocks, where `open()` of a FIFO waits for a writer forever.
    """
    return _kind(os.stat(path).st_mode)


def _kind(mode: int) -> str | None:
    """`kind_of` of a file whose `st_mode` is `mode`."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a regular file"


def check_regular_file(path: str | os.PathLike, what: str, max_bytes: int | None = None) -> int:
    """The size of `path`, a regular file the user named as `what` ("weights file", "names file");
    `MissingFileError` when it is not there, `DataError` naming it when it is a directory, FIFO or
    device, or larger than `max_bytes`."""
    try:
        status = os.stat(path)   # once: this runs for every image and label file read
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such {what}") from None
    except OSError as exc:
        raise MissingFileError(f"{path}: cannot read {what}: {exc.strerror}") from None
    kind, size = _kind(status.st_mode), status.st_size
    if kind is not None:
        raise DataError(f"{path}: {what} is {kind}, not a regular file")
    if max_bytes is not None and size > max_bytes:
        raise DataError(f"{path}: {what} of {size} bytes is larger than the {max_bytes} bytes read as text")
    return size


def output_folder_problem(path: str | os.PathLike) -> str | None:
    """Why `path` cannot be made a folder (it or a parent is a file, ...), None when it can."""
    path = Path(path)
    for folder in (path, *path.parents):
        try:
            kind = kind_of(folder)
        except (FileNotFoundError, NotADirectoryError):   # not there, or below a file: look at the parent
            continue
        except OSError as exc:
            return f"{folder}: {exc.strerror}"
        if kind == "a directory":
            return None
        what = "a file" if kind is None else kind
        return f"{folder} is {what}, not a folder" if folder == path else f"{folder} (a parent) is {what}"
    return None


def write_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, rename it over `path`, and flush
    the folder, so that after a crash `path` holds either the old or the new bytes, never a mix.

    The file gets the mode `fopen` would give it: an existing file's, else 0666 less the umask.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(path)
    # the writer's pid in the name: `remove_stale_temporaries` leaves a living writer's temporary alone
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
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
    `folder` (a training run's backups and chart); returns them. A temporary whose writer (the pid in
    its name) is still running is left alone: another process may be writing it right now."""
    found = {path for name in names for path in Path(folder).glob(f".{name}.*{TEMPORARY_SUFFIX}")}
    stale = sorted(path for path in found if not _writer_alive(path))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _writer_alive(temporary: Path) -> bool:
    """Whether the process that named `temporary` (`.<name>.<pid>.<random>.tmp`) still runs; False for
    a name without a pid (written before pids were recorded)."""
    parts = temporary.name[:-len(TEMPORARY_SUFFIX)].rsplit(".", 2)
    return len(parts) == 3 and parts[1].isdigit() and process_alive(int(parts[1]))


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists (a zombie counts, and a pid reused by another process does too)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)   # signal 0: only the existence and permission checks
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    return True


class FolderBusyError(DarknetError):
    """Another training run holds the folder's lock; the message names its pid."""


class FolderLock:
    """One training run per backup folder: an exclusive `flock` on `<folder>/.pydarknet.lock`, which
    holds the pid of the run that has it (for the message the next run gets).

    The kernel drops the lock when its holder ends, even by kill -9, so a lock is never stale (a killed
    run leaves the file, which the next run takes over). A context manager: the lock is taken on entry
    (`FolderBusyError` when another open file holds it, in this process or another) and released, its
    file removed, on exit.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "training run"):
        self.path = Path(folder) / LOCK_NAME
        self.what = what
        self._file = None

    def __enter__(self) -> FolderLock:
        import fcntl

        while True:
            file = open(self.path, "a+")   # created if missing, never truncated before the lock is ours
            try:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                file.seek(0)
                holder = file.read(32).strip() or "unknown"
                file.close()
                # DIVERGES: Darknet lets two runs write the same backups, each overwriting the other's
                raise FolderBusyError(f"{self.path.parent}: another {self.what} (pid {holder}) is writing its "
                                      f"backups here (it holds {self.path}); wait for it to end, or give this run "
                                      f"another backup= folder") from None
            except BaseException:
                file.close()
                raise
            if _same_file(file, self.path):
                break
            file.close()   # the previous holder removed it between our open and our lock: take the new one
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()}\n")
        file.flush()
        self._file = file
        return self

    def __exit__(self, *_exc) -> None:
        if self._file is not None:
            self.path.unlink(missing_ok=True)   # while still locked: an opener that waits sees it gone, retries
            self._file.close()   # closing the last descriptor releases the flock
            self._file = None


def _same_file(file, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(file.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read it is to set it
        os.umask(umask)
        return 0o666 & ~umask
