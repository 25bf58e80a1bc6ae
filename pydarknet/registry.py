"""Section name -> layer builder. One table serves building, forward, and weights io alike."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .cfg import CfgError, Section


@dataclass(frozen=True)
class Shape:
    """A layer's output as Darknet sees it: channels, height, width (flat outputs use h = w = 1)."""

    c: int
    h: int
    w: int

    @property
    def size(self) -> int:
        return self.c * self.h * self.w


@dataclass
class BuildContext:
    """What a builder may look at besides its own section: earlier layers and the [net] options."""

    index: int                       # this layer's index (sections after [net], from 0)
    shapes: list[Shape]              # output shapes of layers 0 .. index-1
    net: Section                     # the [net] section
    cfg_path: str | None = None      # for resolving tree=/map= files
    sources: list[int] = field(default_factory=list)  # set by builders that read other layers

    @property
    def input_shape(self) -> Shape:
        if self.index == 0:
            return Shape(self.net.get_int("channels", 0), self.net.get_int("height", 0),
                         self.net.get_int("width", 0))
        return self.shapes[-1]

    def layer_index(self, section: Section, key: str, value: int) -> int:
        """Resolve a relative (negative) or absolute layer reference and check it exists."""
        index = self.index + value if value < 0 else value
        if not 0 <= index < self.index:
            raise section.error(f"{key}={value} refers to layer {index}, but only layers "
                                f"0..{self.index - 1} come before layer {self.index}", key)
        return index


Builder = Callable[[Section, BuildContext], tuple["object", Shape]]
_BUILDERS: dict[str, Builder] = {}


def register(*names: str) -> Callable[[Builder], Builder]:
    """Register a builder under every section name Darknet accepts for it (e.g. "maxpool", "max")."""
    def decorate(builder: Builder) -> Builder:
        for name in names:
            if name in _BUILDERS:
                raise ValueError(f"a builder for [{name}] is already registered")
            _BUILDERS[name] = builder
        return builder
    return decorate


def builder_for(section: Section) -> Builder:
    try:
        return _BUILDERS[section.kind]
    except KeyError:
        raise CfgError(f"{section.where()}: unknown section [{section.kind}]; known: "
                       f"{', '.join(sorted(_BUILDERS))}") from None


def registered() -> list[str]:
    return sorted(_BUILDERS)
