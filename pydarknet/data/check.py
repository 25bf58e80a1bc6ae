"""The dataset check a Darknet user needs before iteration 1 or before an evaluation: are the listed images
there, does the label-path rule find their labels, are those labels well formed, which classes do they use.

`check_dataset` stats each listed image and reads its first bytes (no decoding), finds each label file by
the dialect's rule and parses it, and returns a `DatasetReport` whose `lines()` are a few printed lines.
When the rule finds no label for some images but the other Darknet's rule does, the report says so and how
to switch (`-ab`). `check_classes` compares `classes=` of a .data file with the cfg's detection head.
Label files are parsed by training's rules (`labels.parse_labels`). No torch and no image decoding: a
100k-image list is checked in seconds.
"""
from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..cfg import read_cfg
from ..errors import DataError
from .files import read_list
from .labels import LabelError, parse_labels

if TYPE_CHECKING:
    from ..dialect import Dialect

PathLike = str | os.PathLike

# The first bytes of the image formats `image.load_image` decodes (stb_image's, and OpenCV's / Pillow's extras)
IMAGE_SIGNATURES = (b"\xff\xd8",                 # JPEG SOI
                    b"\x89PNG\r\n\x1a\n", b"BM", b"GIF87a", b"GIF89a", b"8BPS", b"#?RADIANCE", b"#?RGBE",
                    b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"II*\0", b"MM\0*")
SIGNATURE_BYTES = max(len(signature) for signature in IMAGE_SIGNATURES)
WEBP = (b"RIFF", b"WEBP")   # RIFF at 0, WEBP at 8
HEAD_SECTIONS = {"region": 20, "yolo": 20, "Gaussian_yolo": 20, "detection": 1}   # kind -> Darknet's classes default
EXAMPLES = 3   # problem files named in a report line


@dataclass
class DatasetReport:
    """What `check_dataset` found in one image list; the lists hold image paths (label paths for the empty ones,
    the error for the invalid ones)."""

    list_path: str
    dialect: str
    listed: int
    classes: int
    missing_images: list[str] = field(default_factory=list)
    unreadable_images: list[str] = field(default_factory=list)   # not a regular file, or no image signature
    missing_labels: list[str] = field(default_factory=list)      # images whose label file the rule does not find
    no_label_rule: list[str] = field(default_factory=list)       # images pjreddie's rule gives no label path for
    empty_labels: list[str] = field(default_factory=list)
    invalid_labels: list[str] = field(default_factory=list)     # `file:line: why` of the first bad line of each
    labelled: int = 0                                            # images with a label file holding objects
    objects: int = 0
    class_counts: dict[int, int] = field(default_factory=dict)
    other_dialect: Dialect | None = None   # the other Darknet's, whose rule is tried on the images without a label
    other_rule_finds: int = 0   # of the images without a label, how many the other dialect's rule finds
    images_checked: bool = True

    @property
    def readable(self) -> int:
        return self.listed - len(self.missing_images) - len(self.unreadable_images)

    @property
    def usable(self) -> int:
        """Readable images with a label file (empty or not): what training and mAP can use."""
        return self.readable - len(self.missing_labels) - len(self.no_label_rule)

    def lines(self, labels: bool = True) -> list[str]:
        """The few lines printed before training or evaluation (`labels=False`: the images only)."""
        lines = [f"Dataset {self.list_path}: {self.listed} images listed, " + (
            f"{self.readable} readable" + _problems((("missing", self.missing_images),
                                                     ("not an image file", self.unreadable_images)))
            if self.images_checked else "not read (the labels only are)")]
        if not labels:
            return lines
        lines.append(f" labels ({self.dialect}'s rule): {self.labelled} found with {self.objects} objects"
                     + _problems((("missing", self.missing_labels), ("no label path rule applies", self.no_label_rule),
                                  ("empty", self.empty_labels), ("invalid", self.invalid_labels))))
        lines.append(f" {self._classes_line()}")
        if self.other_rule_finds:
            other = self.other_dialect
            lines.append(f"Warning: {len(self.missing_labels) + len(self.no_label_rule)} images have no label by "
                         f"{self.dialect}'s rule, but {other.name}'s rule finds {self.other_rule_finds} of "
                         f"them ({other.label_rule_text}): {other.cli_choice}")
        return lines

    def _classes_line(self) -> str:
        never = [k for k in range(self.classes) if k not in self.class_counts]
        line = f"classes seen: {len(self.class_counts)} of classes={self.classes}"
        if never:
            line += f" (never seen: {_first(map(str, never), 10)})"
        return line

    def require_usable(self, what: str) -> None:
        """A DataError when no listed image is readable and has a label file: `what` has nothing to work on."""
        if self.usable <= 0:
            raise DataError(f"{self.list_path}: no listed image is readable and has a label file by "
                            f"{self.dialect}'s rule: nothing to {what}")


def check_dataset(list_path: PathLike, classes: int, dialect: Dialect, *, data_path: PathLike | None = None,
                  labels: bool = True, images: bool = True) -> DatasetReport:
    """Check the images of a list file and (`labels=True`) their label files found by `dialect.label_path`.

    classes: `classes=` of the .data file (label class ids must lie in 0..classes-1). data_path: the .data
    file naming the list, for the messages. images=False: the images are not looked at (every listed one
    counts as readable), for a job that reads the labels only (calc_anchors). Raises the `read_list` errors
    (missing or empty list file).
    """
    from ..dialect import other_dialect

    name = f"{list_path}" + (f" (named by {data_path})" if data_path is not None else "")
    paths = read_list(list_path)
    report = DatasetReport(name, dialect.name, len(paths), classes, images_checked=images)
    readable = []
    for path in paths:
        problem = _image_problem(path) if images else None
        if problem == "missing":
            report.missing_images.append(path)
        elif problem:
            report.unreadable_images.append(path)
        else:
            readable.append(path)
    if labels:
        _check_labels(report, readable, classes, dialect)
        other = report.other_dialect = other_dialect(dialect)
        report.other_rule_finds = sum(_found_by(other, path) for path in report.missing_labels + report.no_label_rule)
    return report


def check_classes(data_path: PathLike, classes: int, cfg_path: PathLike) -> None:
    """A DataError naming both files when `classes=` of the .data file differs from the cfg's detection head's."""
    head = cfg_head(cfg_path)
    if head is not None:
        require_same_classes(str(data_path), classes, *head)


def require_same_classes(data_where: str, classes: int, head_classes: int, head_where: str) -> None:
    """A DataError naming both places (`file` or `file:line`) when the .data file's `classes=` is not the head's."""
    if head_classes != classes:
        raise DataError(f"{data_where}: classes={classes}, but {head_where} has classes={head_classes}: "
                        f"make them equal")


def cfg_head(cfg_path: PathLike) -> tuple[int, str] | None:
    """(classes, `file:line [kind]`) of the cfg's last detection head section ([region], [yolo], ...), None
    without one. Read from the text only: no net is built."""
    heads = [section for section in read_cfg(cfg_path) if section.kind in HEAD_SECTIONS]
    if not heads:
        return None
    head = heads[-1]
    return head.get_int("classes", HEAD_SECTIONS[head.kind]), head.where("classes")


def _image_problem(path: str) -> str | None:
    """None for an existing regular file starting with an image signature, else "missing" or why not."""
    try:
        with _regular_file(path) as descriptor:
            head = os.read(descriptor, max(SIGNATURE_BYTES, 12))
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as error:
        return error.strerror
    if head.startswith(IMAGE_SIGNATURES) or (head[:4] == WEBP[0] and head[8:12] == WEBP[1]):
        return None
    return "no image signature"


def _read_label(label: str) -> str | None:
    """The text of a label file, None when there is none (the error's text when it cannot be read)."""
    try:
        with _regular_file(label) as descriptor:
            chunks = []
            while chunk := os.read(descriptor, 1 << 16):
                chunks.append(chunk)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return b"".join(chunks).decode("utf-8", "replace")


@contextmanager
def _regular_file(path: str) -> Iterator[int]:
    """A descriptor of `path` open for reading; OSError "not a regular file" for a folder, FIFO or device."""
    # O_NONBLOCK: opening a FIFO must not wait for a writer
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise IsADirectoryError(errno.EISDIR, "not a regular file")
        yield descriptor
    finally:
        os.close(descriptor)


def _found_by(dialect: Dialect, image: str) -> bool:
    label = dialect.label_file(image)
    return label is not None and os.path.isfile(label)


def _check_labels(report: DatasetReport, images: list[str], classes: int, dialect: Dialect) -> None:
    counts = np.zeros(classes, np.int64)
    for image in images:
        label = dialect.label_file(image)
        if label is None:
            report.no_label_rule.append(image)
            continue
        try:
            text = _read_label(label)
            truths = None if text is None else parse_labels(text, classes, label)   # training's rules, line by line
        except (OSError, LabelError) as error:
            report.invalid_labels.append(str(error) if isinstance(error, LabelError) else f"{label}: {error.strerror}")
            continue
        if truths is None:
            report.missing_labels.append(image)
        elif len(truths) == 0:
            report.empty_labels.append(label)
        else:
            report.labelled += 1
            counts += np.bincount(truths[:, 4].astype(np.int64), minlength=classes)
    report.objects = int(counts.sum())
    report.class_counts = {int(k): int(counts[k]) for k in np.flatnonzero(counts)}


def _problems(kinds: tuple[tuple[str, list[str]], ...]) -> str:
    """`; 3 missing (first: a.jpg, b.jpg, c.jpg), 1 empty (first: x.txt)` for the non-empty kinds."""
    parts = [f"{len(items)} {kind} (first: {_first(items, EXAMPLES)})" for kind, items in kinds if items]
    return "; " + "; ".join(parts) if parts else ""


def _first(items, count: int) -> str:
    items = list(items)
    return ", ".join(items[:count]) + (", ..." if len(items) > count else "")
