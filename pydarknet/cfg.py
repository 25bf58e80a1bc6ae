"""Darknet `.cfg` files as plain data: sections of `key=value` options with typed getters.

No torch here. Reading follows DARKNET(parser.c:read_cfg): every space, tab and newline is removed
from a line before it is looked at, lines starting with `#` or `;` are comments, `[name]` opens a
section. Unlike Darknet, a line that is not `key=value` and a value that does not parse are errors
naming the file and line, not a message followed by a silent default.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CfgError, MissingFileError

_REQUIRED = object()


class UnusedFieldWarning(UserWarning):
    """An option no builder read: Darknet prints "Unused field" for these."""


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

    def _convert(self, key: str, default, convert, type_name: str):
        text = self.raw(key, default)
        if text is default:
            return default
        try:
            return convert(text)
        except ValueError:
            raise self.error(f"option '{key}={text}' is not {type_name}", key) from None

    def get_int(self, key: str, default=_REQUIRED) -> int:
        return self._convert(key, default, int, "an integer")

    def get_float(self, key: str, default=_REQUIRED) -> float:
        return self._convert(key, default, float, "a number")

    def get_str(self, key: str, default=_REQUIRED) -> str:
        return self.raw(key, default)

    def get_ints(self, key: str, default=_REQUIRED) -> list[int]:
        return self._convert(key, default, lambda t: [int(v) for v in _split_list(t)], "a list of integers")

    def get_floats(self, key: str, default=_REQUIRED) -> list[float]:
        return self._convert(key, default, lambda t: [float(v) for v in _split_list(t)], "a list of numbers")

    def unused(self) -> list[str]:
        return [key for key in self.options if key not in self.used]

    def warn_unused(self) -> None:
        for key in self.unused():
            warnings.warn(f"{self.where(key)}: Unused field '{key}'", UnusedFieldWarning, stacklevel=3)


def _split_list(text: str) -> list[str]:
    # DARKNET(parser.c:parse_region): lists are comma separated; a trailing comma is tolerated
    return [v for v in text.split(",") if v != ""]


def parse_cfg_text(text: str, path: str = "<string>") -> list[Section]:
    """Split cfg text into sections. Raises CfgError naming `path` and the line for malformed lines."""
    sections: list[Section] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
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
    try:
        text = path.read_text()
    except OSError as exc:
        raise MissingFileError(f"cannot read cfg file {path}: {exc.strerror}") from None
    sections = parse_cfg_text(text, str(path))
    if not sections:
        raise CfgError(f"{path}: config file has no sections")
    if sections[0].kind not in ("net", "network"):
        raise CfgError(f"{path}:{sections[0].lineno}: first section must be [net] or [network], "
                       f"got [{sections[0].kind}]")
    return sections


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
