"""Darknet detection label files: one `class x y w h` line per object.

x, y are the box centre and w, h its size, all relative to the image (0..1). They are returned in
Darknet's truth order `(x, y, w, h, class)` as float32 rows. Boxes reaching outside the image are
kept as written: like Darknet, clipping happens in `augment.correct_boxes`, after the image has been
placed on the network canvas.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import DataError, MissingFileError
from ..fileio import TEXT_FILE_MAX_BYTES, check_regular_file

# DARKNET(data.c:correct_boxes): the x, y, w, h written for a classification-only truth (a label line
# with x == y == 0: a class without a box, YOLO9000's ImageNet labels)
CLASSIFICATION_ONLY_VALUE = 999999.0
# DARKNET(region_layer.c:forward_region_layer): `x > 100000 && y > 100000` marks a truth row as
# classification-only; what has a box lies at or below this
CLASSIFICATION_ONLY_ABOVE = 100000.0


class LabelError(DataError):
    """A malformed label file; the message names the file and line."""


def parse_labels(text: str, classes: int, path: str | os.PathLike = "<string>",
                 classification_only: bool = True) -> np.ndarray:
    """Parse label text into truths (N, 5) float32 `(x, y, w, h, class)`, boxes cxcywh relative.

    A line with x == 0 and y == 0 becomes a classification-only row `(999999, 999999, 999999, 999999,
    class)`; where such rows cannot be trained (`classification_only=False`: a net without a WordTree)
    the line is an error. Raises LabelError naming `path` and the line for a line that is not five
    numbers, a class id outside 0..classes-1, a non-finite value or a negative size.
    """
    rows = [_parse_line(line, lineno, classes, path)
            for lineno, line in enumerate(text.splitlines(), start=1) if line.strip()]
    truths = np.array(rows, dtype=np.float32).reshape(-1, 5)
    classification_only = _classification_only_rows(truths, text, path, allowed=classification_only)
    truths[classification_only, :4] = CLASSIFICATION_ONLY_VALUE  # DARKNET(data.c:correct_boxes): x==0&&y==0
    return truths


def read_labels(path: str | os.PathLike, classes: int, classification_only: bool = True) -> np.ndarray:
    """Read a label file into truths (N, 5) float32 `(x, y, w, h, class)`; see `parse_labels`."""
    check_regular_file(path, "label file", TEXT_FILE_MAX_BYTES)   # a FIFO would block, a device never end
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise MissingFileError(f"cannot read label file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise LabelError(f"{path}: label file is not text") from None
    return parse_labels(text, classes, path, classification_only)


def _classification_only_rows(truths: np.ndarray, text: str, path, allowed: bool) -> np.ndarray:
    """(N,) bool: the rows with x == 0 and y == 0 (DARKNET(data.c:correct_boxes)'s marker)."""
    marked = (truths[:, 0] == 0) & (truths[:, 1] == 0)
    if marked.any() and not allowed:
        lines = [lineno for lineno, line in enumerate(text.splitlines(), start=1) if line.strip()]
        raise LabelError(f"{path}:{lines[int(np.flatnonzero(marked)[0])]}: x = y = 0 marks a classification-only "
                         f"label, which only a net with a WordTree ([region] tree=) can train")
    return marked


def _parse_line(line: str, lineno: int, classes: int, path) -> tuple[float, float, float, float, int]:
    fields = line.split()
    where = f"{path}:{lineno}"
    # DIVERGES: Darknet's fscanf loop stops silently at the first malformed token and keeps what it read
    if len(fields) != 5:
        raise LabelError(f"{where}: expected 'class x y w h', got {line.strip()!r}")
    try:
        class_id = int(fields[0])
        x, y, w, h = (float(v) for v in fields[1:])
    except ValueError:
        raise LabelError(f"{where}: expected an integer class and four numbers, got {line.strip()!r}") from None
    if not 0 <= class_id < classes:
        raise LabelError(f"{where}: class id {class_id} is outside 0..{classes - 1}")
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise LabelError(f"{where}: non-finite box value in {line.strip()!r}")
    if w < 0 or h < 0:
        # DIVERGES: Darknet turns a negative size into a zero-width box and drops it without a word
        raise LabelError(f"{where}: negative box size in {line.strip()!r}")
    return x, y, w, h, class_id
