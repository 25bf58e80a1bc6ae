"""`<backup>/<cfg>_log.csv`: one row per training iteration, for a spreadsheet or pandas.

Columns: iteration, loss, avg_loss, rate, images, seconds, hours_left, map, best_map (the last two filled only
on the iterations where `-map` measured the mAP, 0..1). A resumed run keeps the rows up to the iteration it
resumes from and appends its own; a run from iteration 0 starts the file again. Each row is flushed as it is
written, so a killed run leaves every finished iteration in the file.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

COLUMNS = ("iteration", "loss", "avg_loss", "rate", "images", "seconds", "hours_left", "map", "best_map")


@dataclass(frozen=True)
class LogRow:
    iteration: int
    loss: float
    avg_loss: float
    rate: float
    images: int
    seconds: float
    hours_left: float
    map: float | None = None
    best_map: float | None = None


class RunLog:
    """The CSV of a run; `rows` are those kept from earlier runs (for the chart of a resumed run)."""

    def __init__(self, path: Path, start: int):
        self.path = path
        self.rows = _earlier_rows(path, start) if start > 0 else []
        self._file = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        for row in self.rows:
            self._write(row)
        self._file.flush()

    def add(self, row: LogRow) -> None:
        self.rows.append(row)
        self._write(row)
        self._file.flush()

    def _write(self, row: LogRow) -> None:
        self._writer.writerow(["" if value is None else value for value in
                               (row.iteration, row.loss, row.avg_loss, row.rate, row.images, row.seconds,
                                row.hours_left, row.map, row.best_map)])

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "RunLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _earlier_rows(path: Path, start: int) -> list[LogRow]:
    """The rows of `path` up to iteration `start` (none when it is missing or not this log's layout)."""
    try:
        with path.open(newline="") as file:
            records = list(csv.DictReader(file))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []
    try:
        rows = [_row(record) for record in records]
    except (KeyError, TypeError, ValueError):   # another file under this name: start it again
        return []
    return [row for row in rows if row.iteration <= start]


def _row(record: dict[str, str]) -> LogRow:
    def optional(key: str) -> float | None:
        return float(record[key]) if record[key] else None
    return LogRow(int(record["iteration"]), float(record["loss"]), float(record["avg_loss"]), float(record["rate"]),
                  int(record["images"]), float(record["seconds"]), float(record["hours_left"]), optional("map"),
                  optional("best_map"))
