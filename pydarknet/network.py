"""`Darknet(nn.Module)`: a network built at run time from the sections of a Darknet cfg."""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from . import heads as _heads  # noqa: F401  (registers the detection heads)
from . import layers as _layers  # noqa: F401  (registers the section builders)
from .cfg import Section, read_cfg
from .choices import DARKNET_BUILDS
from .errors import CfgError, DarknetError, WeightsError
from .heads.region.layer import RegionLayer
from .heads.yolo.gaussian import GaussianYoloLayer
from .heads.yolo.layer import YoloLayer
from .layers.softmax import SoftmaxLayer
from .options import LayerFlags, NetOptions
from .registry import BuildContext, LayerInfo, MemoryEstimate, Shape, build_bytes_limit, builder_for

__all__ = ["Darknet", "LayerFlags", "LayerInfo", "NetOptions", "load_network", "network_mode", "select_device"]


class Darknet(nn.Module):
    """A Darknet network.

    `forward` returns the last layer's output, in Darknet's memory layout: (B, C, H, W) for image
    layers, (B, num, 5+classes, H, W) (= `[b][n][entry][y][x]`) for `[region]`/`[yolo]`, and
    (B, outputs, 1, 1) for `[softmax]`/`[connected]`. For nets with several `[yolo]` heads it returns
    their outputs as a list, in cfg order. Only the outputs that a later route/shortcut reads are kept.
    """

    def __init__(self, sections: list[Section], cfg_path: str | os.PathLike | None = None,
                 max_build_bytes: int | None = None, *, initialise: bool = True):
        """`max_build_bytes` bounds the estimate of parameters + activations for one image at the input
        size (default: $PYDARKNET_MAX_BUILD_BYTES, else 16 GiB); a bigger net is a CfgError.

        `initialise=False` allocates the convolutional and connected weights without initialising them,
        for a weights file to fill (`load_network`): `load_weights` calls `initialise()` when the file
        leaves a layer unfilled; otherwise call it before using the net.
        """
        super().__init__()
        self._deferred_init: list[nn.Module] | None = None if initialise else []
        self.cfg_path = str(cfg_path) if cfg_path is not None else None
        self.net_section = sections[0]
        self.options = NetOptions.from_section(sections[0])
        # keys Darknet reads for training that no builder read, as "file:line [kind] key" (engine/train.py notes them)
        self.training_only_keys = sections[0].check_unused()
        self.seen = 0                     # images trained on, as in the weights header
        self._darknet_build = "gpu"
        self.weights_version = (0, 2, 0)  # (major, minor, revision) of the file last loaded
        limit = max_build_bytes if max_build_bytes is not None else build_bytes_limit()
        modules, self.info = self._build(sections[1:], MemoryEstimate(limit))
        self.layers = nn.ModuleList(modules)
        self._free_after = self._free_schedule()
        # the [yolo] (or [Gaussian_yolo]) layers, whose outputs `forward` returns together when there are several
        self._output_layers = [i for i, layer in enumerate(self.layers)
                               if isinstance(layer, (YoloLayer, GaussianYoloLayer))]

    @classmethod
    def from_cfg(cls, path: str | os.PathLike, seed: int | None = None,
                 max_build_bytes: int | None = None) -> "Darknet":
        """Build a network from a Darknet cfg file (weights initialised as a fresh Darknet net,
        from `seed` when given, else from torch's global generator)."""
        net = cls(read_cfg(path), cfg_path=path, max_build_bytes=max_build_bytes)
        net.reset_parameters(seed)
        return net

    def _build(self, sections: list[Section], memory: MemoryEstimate) -> tuple[list[nn.Module], list[LayerInfo]]:
        o = self.options
        shape = Shape(o.channels, o.height, o.width)
        if not (shape.c and shape.h and shape.w):
            raise self.net_section.error("[net] needs width, height and channels")
        if not sections:
            raise self.net_section.error("no layers follow [net]")
        memory.reserve(self.net_section, shape.size, "the input image")
        modules: list[nn.Module] = []
        info: list[LayerInfo] = []
        for index, section in enumerate(sections):
            ctx = BuildContext(index=index, layers=info, input_shape=shape, memory=memory, cfg_path=self.cfg_path,
                               deferred_init=self._deferred_init)
            module, shape = builder_for(section)(section, ctx)
            sources = ctx.sources or [index - 1]
            _check_reads_images(section, sources, modules, info)
            _check_region_is_last(section, modules, info)
            ctx.reserve(section, shape.size, f"the output {shape.c}x{shape.h}x{shape.w}")
            modules.append(module)
            info.append(LayerInfo(index, section.kind, shape, sources, LayerFlags.from_section(section), section))
            # DARKNET(parser.c:parse_network_cfg): option_unused after each layer, before the next one is built
            self.training_only_keys += section.check_unused()
        return modules, info

    def _free_schedule(self) -> list[list[int]]:
        """For each layer: the outputs (by index; -1 = the input) that nothing reads after it."""
        final_reader = {j: j + 1 for j in range(-1, len(self.info))}
        for layer in self.info:
            for source in layer.sources:
                final_reader[source] = max(final_reader[source], layer.index)
        schedule: list[list[int]] = [[] for _ in self.info]
        for output, reader in final_reader.items():
            if reader < len(self.info):
                schedule[reader].append(output)
        return schedule

    # Views of `info` for engine/ and weights.py, until they read `net.info[i]` directly.
    @property
    def shapes(self) -> list[Shape]:
        return [layer.shape for layer in self.info]

    @property
    def sources(self) -> list[list[int]]:
        return [layer.sources for layer in self.info]

    @property
    def flags(self) -> list[LayerFlags]:
        return [layer.flags for layer in self.info]

    @property
    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.info]

    def reset_parameters(self, seed: int | None = None) -> None:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for layer in self.layers:
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters(generator)

    @property
    def initialised(self) -> bool:
        """False for a net built with `initialise=False` whose weights are not initialised yet."""
        return self._deferred_init is None

    def initialise(self) -> None:
        """Give a net built with `initialise=False` the weights `from_cfg(path)` gives (no-op otherwise).

        Runs, in build order, the torch init its module constructors skipped, then `reset_parameters()`:
        the same draws from torch's global generator as `from_cfg(path)`, so after the same
        `torch.manual_seed` the values are bit-identical.
        """
        if self._deferred_init is None:
            return
        for module in self._deferred_init:
            module.reset_parameters()
        self._deferred_init = None
        self.reset_parameters()

    def mark_initialised(self) -> None:
        """Call after every weight of a net built with `initialise=False` was loaded (`load_weights`)."""
        self._deferred_init = None

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
        return self.info[-1].shape

    @property
    def darknet_build(self) -> str:
        """Whose numbers the net computes: "gpu" (default), a GPU/cuDNN build of pjreddie's Darknet, or "cpu",
        a stock CPU build: its inference batch norm ``(x-mean)/(sqrt(var)+.000001)`` (layers.conv.batch_norm_std;
        `fuse` folds it) and its [region] CPU forward, WordTree softmax included (heads.region.cpu_build).
        Set it before fusing or `InferenceNetwork`: a folded net keeps the build it was folded with.
        """
        return self._darknet_build

    @darknet_build.setter
    def darknet_build(self, build: str) -> None:
        if build not in DARKNET_BUILDS:
            raise ValueError(f"darknet_build must be one of {', '.join(DARKNET_BUILDS)}, got {build!r}")
        self._darknet_build = build
        for layer in self.layers:
            if hasattr(layer, "darknet_build"):   # the layers whose CPU build computes otherwise
                layer.darknet_build = build

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
        """Where the net's tensors are (the CPU for a net that holds none, e.g. only pooling layers)."""
        tensor = next(itertools.chain(self.parameters(), self.buffers()), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        outputs = self.run(x, keep=set(self._output_layers))
        if len(self._output_layers) > 1:
            return [outputs[i] for i in self._output_layers]
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
            outputs[index] = self.layers[index](*(outputs[source] for source in self.info[index].sources))
            for done in self._free_after[index]:
                if done not in keep:
                    outputs.pop(done, None)
        return outputs

    def extra_repr(self) -> str:
        return f"input={self.channels}x{self.height}x{self.width}, seen={self.seen}"


def _check_reads_images(section: Section, sources: list[int], modules: list[nn.Module],
                        info: list[LayerInfo]) -> None:
    """A layer may not read a [region]/[yolo] output: that is detections (B, n, entries, H, W), not an image.

    Layers after a detection head that read earlier layers (YOLOv3's route after [yolo]) are fine.
    """
    for source in sources:
        if source >= 0 and modules[source].outputs_detections:
            raise section.error(f"reads the output of layer {source} [{info[source].kind}], which holds "
                                f"detections, not an image: nothing may follow a detection layer except "
                                f"layers that read earlier ones (e.g. [route] layers=-4)")


def _check_region_is_last(section: Section, modules: list[nn.Module], info: list[LayerInfo]) -> None:
    """A [region] must be the last layer: refuse the layer that follows one.

    DIVERGES: Darknet builds it, then `detector test`/`valid` read `classes` from `net->layers[net->n-1]`
    (0 for a [route]: nothing is printed) and `detector train` reads jitter and the truth count there
    (examples/detector.c); we refuse at build time, naming the line. ([yolo] heads are followed by layers
    in YOLOv3, so they are not concerned.)
    """
    region = len(modules) - 1   # the layer before this one: the first layer after a [region] is refused
    if modules and isinstance(modules[region], RegionLayer):
        raise section.error(f"follows the [region] of layer {region} ({info[region].section.where()}): a [region] "
                            f"must be the last layer (Darknet's detector reads its classes from the last layer "
                            f"and would detect nothing)")


@contextmanager
def network_mode(net: nn.Module, training: bool) -> Iterator[None]:
    """Training (batch statistics in BN) or eval mode for the duration, then the previous mode."""
    was_training = net.training
    net.train(training)
    try:
        yield
    finally:
        net.train(was_training)


def require_region(net, purpose: str) -> RegionLayer:
    """The `[region]` layer of `net` (a Darknet or anything with its `region` and `cfg_path`), or a
    CfgError saying that `purpose` (e.g. "detection") needs one."""
    region = net.region
    if region is None:
        raise CfgError(f"{net.cfg_path}: {purpose} needs a [region] layer (YOLOv2); this cfg has none")
    return region


def load_network(cfg: str | os.PathLike, weights: str | os.PathLike | None = None,
                 device: str | torch.device | None = None, *, trained: bool = False,
                 darknet_build: str = "gpu") -> Darknet:
    """Darknet's `load_network`: build from the cfg, load the weights if given, eval mode, on `device`.

    `darknet_build`: "gpu" or "cpu" (a stock CPU build's numbers), see `Darknet.darknet_build`.

    `trained=True` (detection, evaluation) refuses a weights file that fills no layer: the net would
    run on its random initialisation. A partial file that fills some layers only warns, as in Darknet.
    """
    # DIVERGES: Darknet's parse_network_cfg initialises every layer before load_weights overwrites it;
    # built uninitialised, a file that fills every layer skips that work (most of the build time) and
    # draws nothing from torch's generator; load_weights initialises the net when the file falls short.
    net = Darknet(read_cfg(cfg), cfg_path=cfg, initialise=False)
    if weights is None:
        net.initialise()
    else:
        from .weights import load_weights
        report = load_weights(net, weights)
        if trained and report.layers_with_weights and not report.layers_loaded:
            raise WeightsError(f"{weights}: holds no layer's weights ({report.header.nbytes}-byte header, "
                               f"no body): {cfg} would run on random weights")
    net.darknet_build = darknet_build
    return net.to(select_device(device)).eval()


def select_device(device: str | torch.device | None = None) -> torch.device:
    """CUDA when present, else CPU; an explicit choice wins (and fails clearly when unavailable)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DarknetError(f"device '{device}' was asked for, but CUDA is not available here")
    return device
