"""`Darknet(nn.Module)`: a network built at run time from the sections of a Darknet cfg."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields

import torch
from torch import Tensor, nn

from . import layers as _layers  # noqa: F401  (registers the section builders)
from .cfg import Section, read_cfg
from .layers.region import RegionLayer, YoloLayer
from .layers.softmax import SoftmaxLayer
from .registry import BuildContext, Shape, builder_for


@dataclass
class NetOptions:
    """The `[net]` section, with DARKNET(parser.c:parse_net_options) defaults and names."""

    batch: int = 1
    subdivisions: int = 1
    width: int = 0
    height: int = 0
    channels: int = 0
    learning_rate: float = 0.001
    momentum: float = 0.9
    decay: float = 0.0001
    policy: str = "constant"
    burn_in: int = 0
    power: float = 4.0
    max_batches: int = 0
    step: int = 1
    scale: float = 1.0
    steps: list[int] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)
    gamma: float = 1.0
    angle: float = 0.0
    aspect: float = 1.0
    saturation: float = 1.0
    exposure: float = 1.0
    hue: float = 0.0
    min_crop: int = 0
    max_crop: int = 0
    random: int = 0
    time_steps: int = 1
    notruth: int = 0
    adam: int = 0
    B1: float = 0.9
    B2: float = 0.999
    eps: float = 1e-7
    center: int = 0
    clip: float = 0.0
    letter_box: int = 0   # AlexeyAB's key: letterbox the input in its `-ab` mode (pjreddie always letterboxes)

    @classmethod
    def from_section(cls, s: Section) -> "NetOptions":
        values = {}
        for f in fields(cls):
            default = f.default if f.default is not MISSING else f.default_factory()
            getter = {int: s.get_int, float: s.get_float, str: s.get_str}.get(type(default))
            if getter is None:
                getter = s.get_ints if f.name == "steps" else s.get_floats
            values[f.name] = getter(f.name, default)
        s.get_int("inputs", 0)
        s.get_float("max_ratio", 0)
        s.get_float("min_ratio", 0)
        options = cls(**values)
        if options.subdivisions < 1 or options.batch < options.subdivisions:
            raise s.error(f"batch={options.batch} must be at least subdivisions={options.subdivisions} >= 1")
        return options

    @property
    def mini_batch(self) -> int:
        """DARKNET(parser.c:parse_net_options): Darknet's net->batch is batch/subdivisions."""
        return self.batch // self.subdivisions


@dataclass
class LayerFlags:
    """Options any section may carry (DARKNET(parser.c:parse_network_cfg), after each layer)."""

    stopbackward: int = 0
    dontsave: int = 0
    dontload: int = 0
    learning_rate: float = 1.0   # a per-layer learning-rate scale
    onlyforward: int = 0

    @classmethod
    def from_section(cls, s: Section) -> "LayerFlags":
        flags = cls(**{f.name: (s.get_float if isinstance(f.default, float) else s.get_int)(f.name, f.default)
                       for f in fields(cls)})
        for unsupported in ("numload", "truth", "smooth", "dontloadscales"):
            if s.get_float(unsupported, 0):
                raise s.error(f"'{unsupported}' is not supported", unsupported)
        return flags


class Darknet(nn.Module):
    """A Darknet network.

    `forward` returns the last layer's output, in Darknet's memory layout: (B, C, H, W) for image
    layers, (B, num, 5+classes, H, W) (= `[b][n][entry][y][x]`) for `[region]`/`[yolo]`, and
    (B, outputs, 1, 1) for `[softmax]`/`[connected]`. For nets with several `[yolo]` heads it returns
    their outputs as a list, in cfg order. Only the outputs that a later route/shortcut reads are kept.
    """

    def __init__(self, sections: list[Section], cfg_path: str | os.PathLike | None = None):
        super().__init__()
        self.cfg_path = str(cfg_path) if cfg_path is not None else None
        self.net_section = sections[0]
        self.options = NetOptions.from_section(sections[0])
        self.seen = 0                     # images trained on, as in the weights header
        self.weights_version = (0, 2, 0)  # (major, minor, revision) of the file last loaded
        modules, self.shapes, self.sources, self.flags = self._build(sections[1:])
        self.layers = nn.ModuleList(modules)
        self.kinds = [s.kind for s in sections[1:]]
        self._free_after = self._free_schedule()
        self._heads = [i for i, layer in enumerate(self.layers) if isinstance(layer, YoloLayer)]
        for section in sections:
            section.warn_unused()

    @classmethod
    def from_cfg(cls, path: str | os.PathLike, seed: int | None = None) -> "Darknet":
        """Build a network from a Darknet cfg file (weights initialised as a fresh Darknet net,
        from `seed` when given, else from torch's global generator)."""
        net = cls(read_cfg(path), cfg_path=path)
        net.reset_parameters(seed)
        return net

    def _build(self, sections: list[Section]):
        modules, shapes, sources, flags = [], [], [], []
        for index, section in enumerate(sections):
            ctx = BuildContext(index=index, shapes=shapes, net=self.net_section, cfg_path=self.cfg_path)
            if index == 0 and not (ctx.input_shape.h and ctx.input_shape.w and ctx.input_shape.c):
                raise self.net_section.error("[net] needs width, height and channels")
            module, shape = builder_for(section)(section, ctx)
            flags.append(LayerFlags.from_section(section))
            modules.append(module)
            shapes.append(shape)
            sources.append(ctx.sources or [index - 1])
        return modules, shapes, sources, flags

    def _free_schedule(self) -> list[list[int]]:
        """For each layer: the outputs (by index; -1 = the input) that nothing reads after it."""
        final_reader = {j: j + 1 for j in range(-1, len(self.sources))}
        for index, sources in enumerate(self.sources):
            for source in sources:
                final_reader[source] = max(final_reader[source], index)
        schedule: list[list[int]] = [[] for _ in self.sources]
        for output, reader in final_reader.items():
            if reader < len(self.sources):
                schedule[reader].append(output)
        return schedule

    def reset_parameters(self, seed: int | None = None) -> None:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for layer in self.layers:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters(generator)

    # ------------------------------------------------------------------ properties
    @property
    def width(self) -> int:
        return self.options.width

    @property
    def height(self) -> int:
        return self.options.height

    @property
    def channels(self) -> int:
        return self.options.channels

    @property
    def output_shape(self) -> Shape:
        return self.shapes[-1]

    @property
    def region(self) -> RegionLayer | None:
        """The last `[region]` layer, the detector head of YOLOv2 nets, or None."""
        return next((layer for layer in reversed(self.layers) if isinstance(layer, RegionLayer)), None)

    @property
    def hierarchy(self):
        """DARKNET(parser.c:parse_network_cfg): net->hierarchy, the WordTree of a [softmax] layer, or None."""
        return next((layer.tree for layer in self.layers if isinstance(layer, SoftmaxLayer) and layer.tree), None)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        outputs = self.run(x, keep=set(self._heads))
        if len(self._heads) > 1:
            return [outputs[i] for i in self._heads]
        return outputs[len(self.layers) - 1]

    def forward_layers(self, x: Tensor) -> list[Tensor]:
        """Every layer's output (for inspection and parity checks; keeps them all in memory)."""
        outputs = self.run(x, keep=set(range(len(self.layers))))
        return [outputs[i] for i in range(len(self.layers))]

    def run(self, x: Tensor, keep: set[int] = frozenset(), upto: int | None = None) -> dict[int, Tensor]:
        """Run layers 0..upto-1 (all by default); returns the outputs in `keep` and the last one."""
        count = len(self.layers) if upto is None else upto
        outputs: dict[int, Tensor] = {-1: x}
        for index in range(count):
            outputs[index] = self.layers[index](*(outputs[source] for source in self.sources[index]))
            for done in self._free_after[index]:
                if done not in keep:
                    outputs.pop(done, None)
        return outputs

    def describe(self) -> str:
        """A layer table like the one Darknet prints while loading a cfg."""
        lines = ["layer     type              input               output"]
        previous = Shape(self.channels, self.height, self.width)
        for index, (kind, shape) in enumerate(zip(self.kinds, self.shapes)):
            source = self.shapes[self.sources[index][0]] if self.sources[index][0] >= 0 else previous
            lines.append(f"{index:5d} {kind:<15} {source.w:4d} x{source.h:4d} x{source.c:5d}  ->  "
                         f"{shape.w:4d} x{shape.h:4d} x{shape.c:5d}")
        return "\n".join(lines)

    def extra_repr(self) -> str:
        return f"input={self.channels}x{self.height}x{self.width}, seen={self.seen}"


@contextmanager
def network_mode(net: nn.Module, training: bool) -> Iterator[None]:
    """Training (batch statistics in BN) or eval mode for the duration, then the previous mode."""
    was_training = net.training
    net.train(training)
    try:
        yield
    finally:
        net.train(was_training)


def load_network(cfg: str | os.PathLike, weights: str | os.PathLike | None = None,
                 device: str | torch.device | None = None) -> Darknet:
    """Darknet's `load_network`: build from the cfg, load the weights if given, eval mode, on `device`."""
    net = Darknet.from_cfg(cfg)
    if weights is not None:
        from .weights import load_weights
        load_weights(net, weights)
    return net.to(select_device(device)).eval()


def select_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit choice wins (and fails clearly when unavailable)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device '{device}' was asked for, but CUDA is not available here")
    return device
