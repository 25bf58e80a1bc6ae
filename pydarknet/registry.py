"""Section name -> layer builder. One table serves building, forward, and weights io alike."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable

from .cfg import CfgError, Section
from .errors import UnsupportedError
from .options import LayerFlags

MAX_BUILD_BYTES_ENV = "PYDARKNET_MAX_BUILD_BYTES"
DEFAULT_MAX_BUILD_BYTES = 16 * 2 ** 30
FLOAT_BYTES = 4


@dataclass(frozen=True)
class Shape:
    """A layer's output as Darknet sees it: channels, height, width (flat outputs use h = w = 1)."""

    c: int
    h: int
    w: int

    @property
    def size(self) -> int:
        return self.c * self.h * self.w


@dataclass(frozen=True)
class LayerInfo:
    """What the network knows of one built layer besides its module."""

    index: int                # from 0, sections after [net]
    kind: str                 # the section name, as written ("conv" stays "conv")
    shape: Shape              # its output
    sources: list[int]        # the outputs its forward reads, in order (-1 = the network input)
    flags: LayerFlags
    section: Section          # where it came from (file:line for messages)


def build_bytes_limit() -> int:
    """The build estimate's bound: $PYDARKNET_MAX_BUILD_BYTES, else 16 GiB."""
    text = os.environ.get(MAX_BUILD_BYTES_ENV)
    if text is None:
        return DEFAULT_MAX_BUILD_BYTES
    try:
        return int(text)
    except ValueError:
        raise CfgError(f"${MAX_BUILD_BYTES_ENV}={text!r} is not a number of bytes") from None


@dataclass
class MemoryEstimate:
    """Bytes of parameters and activations (one image) of the layers built so far, refused past `limit`.

    Checked before torch allocates anything, so a cfg asking for terabytes fails at once, naming its line.
    """

    limit: int
    total: int = 0

    def reserve(self, section: Section, floats: int, what: str, key: str | None = None) -> None:
        self.total += floats * FLOAT_BYTES
        if self.total > self.limit:
            raise section.error(f"{what} brings the estimate of parameters + activations (one image) to "
                                f"{_size(self.total)}, above the {_size(self.limit)} bound (set "
                                f"${MAX_BUILD_BYTES_ENV} to raise it)", key)


def _size(count: int) -> str:
    for unit, name in ((2 ** 30, "GiB"), (2 ** 20, "MiB")):
        if count >= unit:
            return f"{count / unit:.3g} {name} ({count} bytes)"
    return f"{count} bytes"


@dataclass
class BuildContext:
    """What a builder may look at besides its own section: earlier layers and the [net] options."""

    index: int                       # this layer's index (sections after [net], from 0)
    layers: list[LayerInfo]          # layers 0 .. index-1
    input_shape: Shape               # the previous layer's output (the net's input for layer 0)
    memory: MemoryEstimate
    cfg_path: str | None = None      # for resolving tree=/map= files
    sources: list[int] = field(default_factory=list)  # set by builders that read other layers
    # None: build initialised modules; else a list that collects, in build order, the torch modules
    # built with their parameters allocated but not initialised (weights will be loaded into them)
    deferred_init: list | None = None

    def reserve(self, section: Section, floats: int, what: str, key: str | None = None) -> None:
        """Count `floats` float32 values (parameters, outputs, padded copies) in the build estimate."""
        self.memory.reserve(section, floats, what, key)

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


# DARKNET(AlexeyAB parser.c:string_to_layer_type): recurrent sections it parses, which pydarknet does not implement
RECURRENT_SECTIONS = ("rnn", "gru", "lstm", "crnn", "conv_lstm", "history", "contrastive")


def builder_for(section: Section) -> Builder:
    try:
        return _BUILDERS[section.kind]
    except KeyError:
        if section.kind in RECURRENT_SECTIONS:
            raise UnsupportedError(f"{section.where()}: [{section.kind}] (AlexeyAB's recurrent and contrastive "
                                   f"layers: {', '.join(RECURRENT_SECTIONS)}) is not implemented") from None
        raise CfgError(f"{section.where()}: unknown section [{section.kind}]; known: "
                       f"{', '.join(sorted(_BUILDERS))}") from None


def registered() -> list[str]:
    return sorted(_BUILDERS)
