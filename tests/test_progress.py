"""progress(): tqdm on a terminal, plain periodic lines otherwise, nothing under -q."""
from __future__ import annotations

import logging
import sys

import pytest
from tqdm import tqdm

from pydarknet import progress as progress_module
from pydarknet.progress import PlainProgress, progress


@pytest.fixture(autouse=True)
def logger_at_info():
    """The level the CLI sets without -q (an earlier CLI test may have left -q's level behind)."""
    logger = logging.getLogger("pydarknet")
    level = logger.level
    logger.setLevel(logging.INFO)   # setLevel, not an attribute patch: it also clears the logger's cache
    yield logger
    logger.setLevel(level)


@pytest.fixture
def lines(monkeypatch, caplog, logger_at_info):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    monkeypatch.setattr(logger_at_info, "propagate", True)   # to caplog's root handler: a CLI run turns it off
    return caplog


def _messages(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "pydarknet"]


def test_plain_lines_at_each_tenth_and_at_the_end(lines):
    reporter = progress(range(25), desc="train images", unit="img")
    assert isinstance(reporter, PlainProgress)
    assert list(reporter) == list(range(25))
    done = [int(m.split(": ")[1].split("/")[0]) for m in _messages(lines)]
    # a line each time 25 * k // 10 is crossed: items 3, 5, 8, 10, 13, 15, 18, 20, 23, 25
    assert done == [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]
    assert _messages(lines)[-1].startswith("train images: 25/25 img (100%), ")


def test_plain_lines_every_interval_without_a_total(lines, monkeypatch):
    clock = iter([0.0, 1.0, 31.0, 32.0, 70.0, 71.0])
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    reporter = progress(total=None, desc="frames", unit="frame")
    for _ in range(4):
        reporter.update(1)          # at 1 s, 31 s, 32 s, 70 s
    reporter.close()                # at 71 s: the closing line
    assert _messages(lines) == ["frames: 2 frame, 31 s", "frames: 4 frame, 70 s", "frames: 4 frame, 71 s"]


def test_tqdm_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress(total=3)
    assert isinstance(bar, tqdm) and not bar.disable
    bar.close()


def test_quiet_or_disabled_shows_nothing(monkeypatch, lines):
    assert progress(total=3, enabled=False).disable
    logging.getLogger("pydarknet").setLevel(logging.WARNING)   # `pydarknet -q` (logger_at_info restores it)
    assert progress(total=3).disable
