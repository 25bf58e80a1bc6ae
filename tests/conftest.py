"""Shared fixtures: where the Darknet reference pack lives, and the skip when it is absent."""
import os
import signal
from pathlib import Path

import pytest

REFERENCE_ENV = "PYDARKNET_REFERENCE"
DEFAULT_REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
REFERENCE_YOLO_ENV = "PYDARKNET_REFERENCE_YOLO"
DEFAULT_REFERENCE_YOLO = Path(__file__).resolve().parent.parent.parent / "shared" / "reference-yolo"


def _pack_dir(env: str, default: Path) -> Path | None:
    """$env, else `default`, when a reference pack (a folder with its README.md) is there; else None."""
    path = Path(os.environ.get(env, default))
    return path if (path / "README.md").is_file() else None


def reference_dir() -> Path | None:
    """The reference pack directory, or None when it is not on this machine."""
    return _pack_dir(REFERENCE_ENV, DEFAULT_REFERENCE)


def _pack_or_skip(env: str, default: Path, what: str) -> Path:
    path = _pack_dir(env, default)
    if path is None:
        pytest.skip(f"{what} not found at ${env} or {default}")
    return path


@pytest.fixture(scope="session")
def reference() -> Path:
    return _pack_or_skip(REFERENCE_ENV, DEFAULT_REFERENCE, "Darknet reference pack")


def reference_yolo_dir() -> Path | None:
    """AlexeyAB's YOLO reference pack directory (yolov3/v4/v7-tiny, yolov4), or None when it is not here."""
    return _pack_dir(REFERENCE_YOLO_ENV, DEFAULT_REFERENCE_YOLO)


@pytest.fixture(scope="session")
def reference_yolo() -> Path:
    return _pack_or_skip(REFERENCE_YOLO_ENV, DEFAULT_REFERENCE_YOLO, "AlexeyAB's YOLO reference pack")


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def interruptible_by_ctrl_c() -> None:
    """`preexec_fn` of a child a test stops with SIGINT: SIGINT back to its default action, as a terminal's
    Ctrl-C finds it. A shell without job control starts background jobs (`pytest ... &`) with SIGINT ignored,
    the children inherit that, and Python then installs no KeyboardInterrupt handler: the child ignores Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped, with the reason, on machines without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """A 10-frame 160x120 clip (tests/video_clip.py)."""
    from video_clip import write_clip

    return write_clip(tmp_path_factory.mktemp("video") / "clip.avi")


@pytest.fixture(autouse=True)
def _no_stale_sigchld_handler():
    """After each test, SIGCHLD back to its default (ignored) when a DataLoader left torch's handler installed.

    torch installs a Python SIGCHLD handler for its data-loading workers and never removes it, so every later
    child exit in the pytest process (the CLI subprocesses of later tests) is delivered to a Python handler, on
    the main thread's alternate signal stack. In the full CI run (2026-12-07) such a delivery, while
    test_kill_resume waited for the `detector train` it had killed, ended pytest with a kernel SIGSEGV
    (si_code SI_KERNEL, the signal frame could not be written); with the default disposition nothing is
    delivered. The handler only matters while a loader's workers live; torch reinstalls it for the next one.
    """
    yield
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGCHLD) not in (signal.SIG_DFL, None):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        from torch.utils.data._utils import signal_handling   # private: its "installed once" flag

        signal_handling._SIGCHLD_handler_set = False
