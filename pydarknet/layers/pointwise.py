"""AlexeyAB's layers that keep a map's layout and change its values: `[scale_channels]`, `[sam]`, `[implicit]`,
`[batchnorm]`, `[activation]`, and `[empty]` (alias `[silence]`), which changes nothing.

`[scale_channels]` and `[sam]` read the previous layer and the layer `from=`; the network passes them in that
order (`ctx.sources = [previous, from]`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..cfg import Section
from ..registry import BuildContext, Shape, register
from .activations import Activation, activation_from
from .base import DarknetLayer
from .conv import BN_EPS, BN_MOMENTUM

if TYPE_CHECKING:
    from ..network import Darknet


class ScaleChannelsLayer(DarknetLayer):
    """DARKNET(AlexeyAB scale_channels_layer.c:forward_scale_channels_layer): the `from` map times the previous
    layer's output, then the activation.

    scale_wh=0 (squeeze-and-excitation): previous (B, C, 1, 1) scales each channel of `from` (B, C, H, W);
    scale_wh=1 (spatial attention): previous (B, 1, H, W) scales every channel of `from` at each pixel.
    """

    def __init__(self, scale_wh: bool, activation: Activation):
        super().__init__()
        self.scale_wh = scale_wh
        self.activation = activation

    def forward(self, previous: Tensor, source: Tensor) -> Tensor:
        return self.activation(source * previous)   # [B, C|1, 1|H, 1|W] broadcast over [B, C, H, W]

    def extra_repr(self) -> str:
        return f"scale_wh={int(self.scale_wh)}"

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        # DARKNET(AlexeyAB scale_channels_layer.c:make_scale_channels_layer): "scale Layer: %d" with the from index
        return f"scale Layer: {net.sources[index][1]}"


class SamLayer(ScaleChannelsLayer):
    """DARKNET(AlexeyAB sam_layer.c:forward_sam_layer): spatial attention, the previous layer's output times the
    `from` map element by element (both (B, C, H, W)), then the activation: `ScaleChannelsLayer`'s product of
    equal shapes (a product is the same float either way round), and its table line (sam_layer.c:make_sam_layer)."""

    def __init__(self, activation: Activation):
        super().__init__(False, activation)

    def extra_repr(self) -> str:
        return ""


class ImplicitLayer(DarknetLayer):
    """DARKNET(AlexeyAB representation_layer.c:forward_implicit_layer): a learned constant, the input ignored.

    Output (B, filters, atoms, 1), the same `weights` for every image; initialised uniform in mean ± std.
    """

    def __init__(self, filters: int, atoms: int, mean: float, std: float):
        super().__init__()
        self.mean, self.std = mean, std
        self.weights = nn.Parameter(torch.full((filters, atoms, 1), mean))

    def forward(self, x: Tensor) -> Tensor:
        return self.weights.unsqueeze(0).expand(x.shape[0], -1, -1, -1).to(x.dtype)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        # DARKNET(AlexeyAB representation_layer.c:make_implicit_layer): mean + rand_uniform(-std, std)
        with torch.no_grad():
            noise = torch.rand(self.weights.shape, generator=generator)
            self.weights.copy_(self.mean + self.std * (2 * noise - 1))

    def darknet_tensors(self) -> list[Tensor]:
        return [self.weights]   # DARKNET(AlexeyAB parser.c:save_implicit_weights): nweights floats

    def trained_tensors(self) -> dict[str, nn.Parameter]:
        return {"weights": self.weights}   # DARKNET(AlexeyAB representation_layer.c:update_implicit_layer)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        shape = net.shapes[index]
        # DARKNET(AlexeyAB representation_layer.c:make_implicit_layer): "implicit Layer: filters x atoms ..."
        return f"implicit Layer: {shape.c} x {shape.h} \t mean={self.mean:.2f}, std={self.std:.2f} "


class BatchNormLayer(DarknetLayer):
    """`[batchnorm]`: DARKNET(batchnorm_layer.c:forward_batchnorm_layer), the batch norm of a conv without the conv:
    scales·(x − mean)/sqrt(variance + eps) + biases, rolling statistics at inference (same constants as the conv's)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(x)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        self.bn.reset_parameters()   # DARKNET(batchnorm_layer.c:make_batchnorm_layer): scales 1, biases 0

    def darknet_tensors(self) -> list[Tensor]:
        # DARKNET(parser.c:save_batchnorm_weights): biases, scales, rolling mean, rolling variance
        return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var]

    def trained_tensors(self) -> dict[str, nn.Parameter]:
        return {"biases": self.bn.bias, "scales": self.bn.weight}

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        # DARKNET(batchnorm_layer.c:make_batchnorm_layer): its line
        return f"Batch Normalization Layer: {before.w} x {before.h} x {before.c} image"


class ActivationLayer(DarknetLayer):
    """`[activation]`: DARKNET(activation_layer.c:forward_activation_layer), the activation alone."""

    def __init__(self, activation: Activation):
        super().__init__()
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(x)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"Activation Layer: {before.size} inputs"   # DARKNET(activation_layer.c:make_activation_layer)


class EmptyLayer(DarknetLayer):
    """`[empty]` / `[silence]`: DARKNET(AlexeyAB parser.c:parse_network_cfg): the previous output, unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        return x

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return "empty "   # DARKNET(AlexeyAB parser.c:parse_network_cfg): fprintf "empty \n"


def _pointwise_activation(s: Section) -> Activation:
    # DARKNET(AlexeyAB parser.c:parse_sam / parse_scale_channels / parse_activation): linear by default.
    # DIVERGES: AlexeyAB's CPU activate() has no case for mish, hard_mish, swish, relu6 (0 outside a conv, hence
    # parse_sam's "doesn't support SWISH or MISH"); here the function itself, as its GPU build computes it
    return activation_from(s, default="linear")


@register("scale_channels")
def build_scale_channels(s: Section, ctx: BuildContext) -> tuple[ScaleChannelsLayer, Shape]:
    source = ctx.layer_index(s, "from", s.get_int("from"))
    scale_wh = bool(s.get_int("scale_wh", 0, minimum=0, maximum=1))
    scales, target = ctx.input_shape, ctx.layers[source].shape
    expected = Shape(1, target.h, target.w) if scale_wh else Shape(target.c, 1, 1)
    if scales != expected:
        # DIVERGES: AlexeyAB asserts only the channels (or the size) and reads past a bigger input per image
        raise s.error(f"the previous layer outputs {scales.c}x{scales.h}x{scales.w}, but scaling layer {source} "
                      f"({target.c}x{target.h}x{target.w}) with scale_wh={int(scale_wh)} needs "
                      f"{expected.c}x{expected.h}x{expected.w}", "from")
    ctx.sources = [ctx.index - 1, source]
    return ScaleChannelsLayer(scale_wh, _pointwise_activation(s)), target


@register("sam")
def build_sam(s: Section, ctx: BuildContext) -> tuple[SamLayer, Shape]:
    source = ctx.layer_index(s, "from", s.get_int("from"))
    if ctx.layers[source].shape != ctx.input_shape:
        # DARKNET(AlexeyAB sam_layer.c:make_sam_layer): asserts the same channels and size
        raise s.error(f"layer {source} outputs {ctx.layers[source].shape}, the previous layer {ctx.input_shape}: "
                      f"[sam] multiplies maps of the same shape", "from")
    ctx.sources = [ctx.index - 1, source]
    return SamLayer(_pointwise_activation(s)), ctx.input_shape


@register("implicit")
def build_implicit(s: Section, ctx: BuildContext) -> tuple[ImplicitLayer, Shape]:
    # DARKNET(AlexeyAB parser.c:parse_implicit): mean 0, std .2, filters 128, atoms 1
    mean = s.get_float("mean", 0.0)
    std = s.get_float("std", 0.2, minimum=0)
    filters = s.get_int("filters", 128, minimum=1)
    atoms = s.get_int("atoms", 1, minimum=1)
    ctx.reserve(s, filters * atoms, f"filters={filters} atoms={atoms}", "filters")
    return ImplicitLayer(filters, atoms, mean, std), Shape(filters, atoms, 1)


@register("batchnorm")
def build_batchnorm(s: Section, ctx: BuildContext) -> tuple[BatchNormLayer, Shape]:
    return BatchNormLayer(ctx.input_shape.c), ctx.input_shape


@register("activation")
def build_activation(s: Section, ctx: BuildContext) -> tuple[ActivationLayer, Shape]:
    return ActivationLayer(_pointwise_activation(s)), ctx.input_shape


@register("empty", "silence")
def build_empty(s: Section, ctx: BuildContext) -> tuple[EmptyLayer, Shape]:
    return EmptyLayer(), ctx.input_shape

