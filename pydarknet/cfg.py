"""Darknet `.cfg` files as plain data: sections of `key=value` options with typed getters.

No torch here. Reading follows DARKNET(parser.c:read_cfg): every space, tab and newline is removed
from a line before it is looked at, lines starting with `#` or `;` are comments, `[name]` opens a
section. Unlike Darknet, a line that is not `key=value` and a value that does not parse are errors
naming the file and line, not a message followed by a silent default.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import darknet_keys
from .errors import CfgError, MissingFileError, UnsupportedError
from .fileio import TEXT_FILE_MAX_BYTES, check_regular_file

_REQUIRED = object()
INT_LIMIT = 2 ** 31 - 1   # DARKNET(option_list.c:option_find_int): values go through atoi into a C int
_INTEGER = re.compile(r"[+-]?[0-9]+")


class _OutOfRange(ValueError):
    """A value that parses but is not one Darknet could hold; the message says why."""


class UnusedFieldWarning(UserWarning):
    """An option no builder read that changes nothing at inference: Darknet prints "Unused field" for these."""


@dataclass
class Option:
    value: str
    lineno: int


@dataclass
class Section:
    """One `[kind]` block of a cfg file.

    `kind` is the name between the brackets ("convolutional", "net", ...). Every getter marks the key
    as used, so that `unused()` can report the options nobody read.
    """

    kind: str
    lineno: int
    path: str = "<string>"
    options: dict[str, Option] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def where(self, key: str | None = None) -> str:
        line = self.options[key].lineno if key in self.options else self.lineno
        place = f"{self.path}:{line}" if line else self.path
        return f"{place} [{self.kind}]" if self.kind else place

    def error(self, message: str, key: str | None = None) -> CfgError:
        return CfgError(f"{self.where(key)}: {message}")

    def has(self, key: str) -> bool:
        return key in self.options

    def raw(self, key: str, default=_REQUIRED) -> str:
        self.used.add(key)
        if key in self.options:
            return self.options[key].value
        if default is _REQUIRED:
            raise self.error(f"missing required option '{key}'")
        return default

    def _convert(self, key: str, default, convert, type_name: str, bounds: "Bounds"):
        text = self.raw(key, default)
        if text is default:
            return default  # defaults are the code's, not the user's: only read values are checked
        try:
            value = convert(text)
        except _OutOfRange as exc:
            raise self.error(f"option '{key}={text}' {exc}", key) from None
        except ValueError:
            raise self.error(f"option '{key}={text}' is not {type_name}", key) from None
        problem = bounds.violation(value)
        if problem:
            raise self.error(f"option '{key}={text}' {problem}", key)
        return value

    def get_int(self, key: str, default=_REQUIRED, *, minimum: int | None = None,
                maximum: int | None = None) -> int:
        return self._convert(key, default, _parse_int, "an integer", Bounds(minimum, maximum))

    def get_float(self, key: str, default=_REQUIRED, *, minimum: float | None = None,
                  maximum: float | None = None, nonzero: bool = False) -> float:
        """A finite number (NaN and inf are errors in every float option)."""
        return self._convert(key, default, _parse_float, "a number", Bounds(minimum, maximum, nonzero))

    def get_str(self, key: str, default=_REQUIRED, *, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key, default)
        if choices is not None and value is not default and value not in choices:
            raise self.error(f"option '{key}={value}' is not one of {', '.join(choices)}", key)
        return value

    def get_ints(self, key: str, default=_REQUIRED, *, minimum: int | None = None,
                 maximum: int | None = None) -> list[int]:
        return self._convert(key, default, lambda t: [_parse_int(v) for v in _split_list(t)],
                             "a list of integers", Bounds(minimum, maximum))

    def get_floats(self, key: str, default=_REQUIRED, *, minimum: float | None = None,
                   maximum: float | None = None) -> list[float]:
        return self._convert(key, default, lambda t: [_parse_float(v) for v in _split_list(t)],
                             "a list of numbers", Bounds(minimum, maximum))

    def unused(self) -> list[str]:
        return [key for key in self.options if key not in self.used]

    def check_unused(self) -> list[str]:
        """Darknet's "Unused field" report, judged by what each Darknet does with the key.

        A key that pjreddie's or AlexeyAB's Darknet reads for this section and that changes a shape, the
        weights or an output at inference (`darknet_keys.INFERENCE_KEYS`) raises UnsupportedError naming
        file:line: building without it would silently give another net. The other keys nobody read change
        nothing at inference and stay an UnusedFieldWarning: a key Darknet reads only for training (returned,
        "file:line [kind] key", for the training engine to note), or a key no Darknet reads, with the
        closest key Darknet reads there (a typo can silently disable a feature).
        """
        training: list[str] = []
        for key in self.unused():
            readers = darknet_keys.readers(self.kind, key)
            who = " and ".join(f"{name}'s" for name in readers) + (" Darknets" if len(readers) > 1 else " Darknet")
            reads = "read" if len(readers) > 1 else "reads"
            if darknet_keys.changes_inference(self.kind, key):
                raise UnsupportedError(f"{self.where(key)}: '{key}' is read by {who} for [{self.kind}] "
                                       f"and changes its output; pydarknet does not implement it")
            if readers:
                training.append(f"{self.where(key)} {key}")
                note = f"{who} {reads} it only for training, GPU streams or printing: nothing at inference"
            else:
                close = difflib.get_close_matches(key, sorted(darknet_keys.known_keys(self.kind)), n=1)
                note = f"no Darknet reads it for [{self.kind}]" + (f"; did you mean '{close[0]}'?" if close else "")
            warnings.warn(f"{self.where(key)}: Unused field '{key}' ({note})", UnusedFieldWarning, stacklevel=3)
        return training


@dataclass(frozen=True)
class Bounds:
    """Inclusive limits on an option's value (each element, for lists)."""

    minimum: float | None = None
    maximum: float | None = None
    nonzero: bool = False

    def violation(self, value) -> str | None:
        for item in value if isinstance(value, list) else [value]:
            if self.minimum is not None and item < self.minimum:
                return f"must be at least {self.minimum}"
            if self.maximum is not None and item > self.maximum:
                return f"must be at most {self.maximum}"
            if self.nonzero and item == 0:
                return "must not be 0"
        return None


def _parse_int(text: str) -> int:
    # DIVERGES: Darknet's atoi reads "3x" as 3; Python's int would also take "1_0" and non-ASCII digits
    if not _INTEGER.fullmatch(text):
        raise ValueError(text)
    value = int(text)
    if abs(value) > INT_LIMIT:
        raise _OutOfRange(f"does not fit in the 32-bit integer Darknet reads (at most {INT_LIMIT})")
    return value


def _parse_float(text: str) -> float:
    if "_" in text or not text.isascii():  # Python's float takes "1_0" and non-ASCII digits; atof does not
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfRange("is not a finite number")
    return value


def _split_list(text: str) -> list[str]:
    # DARKNET(parser.c:parse_region): lists are comma separated; a trailing comma is tolerated
    return [v for v in text.split(",") if v != ""]


def parse_cfg_text(text: str, path: str = "<string>") -> list[Section]:
    """Split cfg text into sections. Raises CfgError naming `path` and the line for malformed lines."""
    sections: list[Section] = []
    for lineno, line in enumerate(text.split("\n"), start=1):  # DARKNET(utils.c:fgetl): lines end at \n only
        line = "".join(line.split())  # DARKNET(utils.c:strip): all whitespace removed, even inside
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise CfgError(f"{path}:{lineno}: malformed section header '{line}'")
            sections.append(Section(kind=line[1:-1], lineno=lineno, path=path))
            continue
        if not sections:
            raise CfgError(f"{path}:{lineno}: option '{line}' appears before any [section]")
        key, sep, value = line.partition("=")
        if not sep or not key or not value:
            raise CfgError(f"{path}:{lineno}: expected key=value, got '{line}'")
        section = sections[-1]
        if key in section.options:
            # DARKNET(option_list.c:option_find): the first occurrence wins
            warnings.warn(f"{path}:{lineno}: duplicate option '{key}' in [{section.kind}], "
                          f"keeping line {section.options[key].lineno}", UnusedFieldWarning, stacklevel=2)
            continue
        section.options[key] = Option(value, lineno)
    return sections


def read_cfg(path: str | os.PathLike) -> list[Section]:
    """Read a Darknet cfg file into sections (the first one must be [net] or [network])."""
    path = Path(path)
    sections = parse_cfg_text(read_text_file(path, "cfg file", CfgError), str(path))
    if not sections:
        raise CfgError(f"{path}: config file has no sections")
    if sections[0].kind not in ("net", "network"):
        raise CfgError(f"{path}:{sections[0].lineno}: first section must be [net] or [network], "
                       f"got [{sections[0].kind}]")
    return sections


def read_text_file(path: str | os.PathLike, what: str, error: type[Exception],
                   max_bytes: int = TEXT_FILE_MAX_BYTES) -> str:
    """A user's text file as UTF-8; bytes that are not UTF-8 raise `error` naming the file and line.

    DIVERGES: Darknet's fgetl reads `names=/dev/zero` until memory runs out and blocks on a FIFO; a user's
    text file must be a regular file of at most `max_bytes` (checked before it is opened).
    """
    from ._resources import shipped_or_given

    path = shipped_or_given(path)   # the API finds the shipped cfg/ and data/ files as the CLI does
    check_regular_file(path, what, max_bytes)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MissingFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start})") from None


def resolve_path(name: str, relative_to: str | os.PathLike | None = None) -> Path:
    """Find a file named inside a cfg or .data file.

    DARKNET(parser.c:parse_region): paths are opened relative to the working directory, so that is
    tried first; then, so that cfgs also work from elsewhere, relative to the referring file's folder
    and to that folder's parent (Darknet's layout keeps `cfg/` beside `data/`); last, among the
    `cfg/` and `data/` files shipped with pydarknet, so `cfg/coco.data` is found from any directory.
    """
    from ._resources import shipped_root

    candidates = [Path(name)]
    if not Path(name).is_absolute():
        if relative_to is not None:
            base = Path(relative_to).resolve().parent
            candidates += [base / name, base.parent / name]
        candidates.append(shipped_root() / name)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    referrer = f" (referenced by {relative_to})" if relative_to is not None else ""
    raise MissingFileError(f"cannot find '{name}'{referrer}; tried {tried}")
