"""Progress of long jobs: a tqdm bar when stderr is a terminal, plain periodic lines otherwise.

A bar redrawn into a log file is megabytes of carriage returns; a file gets one line every tenth
of the job or every `PLAIN_INTERVAL_S` seconds instead, through the `pydarknet` logger (so `-q`
silences both forms).
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

log = logging.getLogger("pydarknet")

PLAIN_INTERVAL_S = 30.0   # longest silence of the plain reporter
PLAIN_STEPS = 10          # and a line at each tenth of a known total

T = TypeVar("T")


class PlainProgress:
    """The part of tqdm's interface the jobs use (iteration, `update`, `write`, `close`, `with`),
    reported as `"<desc>: <done>/<total> <unit> (<percent>%), <seconds> s"` lines."""

    def __init__(self, iterable: Iterable | None, total: int | None, desc: str, unit: str):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.done = 0
        self.start = self.last_line = time.monotonic()
        self.reported_step = 0
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        step = self.done * PLAIN_STEPS // self.total if self.total else 0
        if step > self.reported_step or now - self.last_line >= PLAIN_INTERVAL_S:
            self.reported_step = max(step, self.reported_step)
            self._line(now)

    def write(self, message: str) -> None:
        print(message)   # where tqdm.write puts it: stdout

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.done and self.reported_step < PLAIN_STEPS:   # the 100% line is not written twice
                self._line(time.monotonic())

    def _line(self, now: float) -> None:
        self.last_line = now
        of_total = f"/{self.total}" if self.total else ""
        percent = f" ({100 * self.done // self.total}%)" if self.total else ""
        prefix = f"{self.desc}: " if self.desc else ""
        log.info(f"{prefix}{self.done}{of_total} {self.unit}{percent}, {now - self.start:.0f} s")


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool = True) -> tqdm | PlainProgress:
    """A progress reporter over `iterable` (or `total` steps counted with `.update(n)`).

    tqdm on a terminal, `PlainProgress` lines otherwise; nothing when `enabled` is False or the
    `pydarknet` logger's own level is set above INFO (`pydarknet -q`). The logger's own level, not
    the effective one: a program that never configured logging still gets the bar on a terminal.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    shown = enabled and log.level <= logging.INFO
    if not shown or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc or None, unit=unit, disable=not shown)
    return PlainProgress(iterable, total, desc, unit)
