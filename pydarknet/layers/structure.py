"""Layers that move data around: `[route]`, `[reorg]`, `[shortcut]`, `[upsample]`, `[dropout]`, `[cost]`.

A layer that reads earlier outputs lists their indices in `ctx.sources`; the network passes those
outputs to `forward` in that order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..cfg import Section
from ..registry import BuildContext, Shape, register
from .activations import activation_from
from .base import DarknetLayer, dims

if TYPE_CHECKING:
    from ..network import Darknet


class RouteLayer(DarknetLayer):
    """DARKNET(route_layer.c:forward_route_layer): concatenation along channels in the listed order."""

    def forward(self, *inputs: Tensor) -> Tensor:
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return "route " + "".join(f" {source}" for source in net.sources[index])


class ReorgLayer(DarknetLayer):
    """Darknet's reorg, which is NOT pixel_unshuffle.

    DARKNET(reorg_layer.c:forward_reorg_layer): the forward calls reorg_cpu with forward=0, i.e. the
    reverse index map. Reading the (C, H, W) input as (C/s², H·s, W·s) and the output as (C, H, W)::

        out[(dy*s + dx)*C/s² + c, y, x] = in[c, y*s + dy, x*s + dx]

    and that memory is then taken as a (C·s², H/s, W/s) tensor. Shapes: (B, C, H, W) -> (B, C·s², H/s, W/s).
    """

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.stride
        grid = x.reshape(b, c // (s * s), h, s, w, s)          # [B, c2, y, dy, x, dx]
        out = grid.permute(0, 3, 5, 1, 2, 4)                   # [B, dy, dx, c2, y, x]
        return out.reshape(b, c * s * s, h // s, w // s)

    def extra_repr(self) -> str:
        return f"stride={self.stride}"

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"reorg              /{self.stride:2d}  {dims(before)}   ->  {dims(net.shapes[index])}"


class ShortcutLayer(DarknetLayer):
    """DARKNET(shortcut_layer.c:forward_shortcut_layer): out = alpha*previous + beta*from, then activation.

    When the two maps differ in size, Darknet samples the larger one with an integer stride and adds
    over the common channels only (blas.c:shortcut_cpu).
    """

    def __init__(self, alpha: float, beta: float, activation: nn.Module):
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.activation = activation

    def forward(self, previous: Tensor, source: Tensor) -> Tensor:
        if previous.shape == source.shape:
            return self.activation(self.alpha * previous + self.beta * source)
        stride = max(source.shape[3] // previous.shape[3], 1)
        sample = max(previous.shape[3] // source.shape[3], 1)
        added = source[:, :, ::stride, ::stride]
        c = min(previous.shape[1], added.shape[1])
        h = min(previous.shape[2] // sample, added.shape[2])
        w = min(previous.shape[3] // sample, added.shape[3])
        out = self.alpha * previous
        window = (slice(None), slice(0, c), slice(0, h * sample, sample), slice(0, w * sample, sample))
        out[window] = out[window] + self.beta * added[:, :c, :h, :w]
        return self.activation(out)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        source = net.sources[index][1]
        # DARKNET(shortcut_layer.c:make_shortcut_layer): the `from` layer's dims, then the previous layer's
        return f"res  {source:3d}                {dims(net.shapes[source])}   ->  {dims(before)}"


class UpsampleLayer(DarknetLayer):
    """DARKNET(blas.c:upsample_cpu): nearest-neighbour repeat by `stride`, times `scale`."""

    def __init__(self, stride: int, scale: float):
        super().__init__()
        self.stride, self.scale = stride, scale

    def forward(self, x: Tensor) -> Tensor:
        out = x.repeat_interleave(self.stride, dim=2).repeat_interleave(self.stride, dim=3)
        return out * self.scale if self.scale != 1 else out

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"upsample           {self.stride:2d}x  {dims(before)}   ->  {dims(net.shapes[index])}"


class DropoutLayer(DarknetLayer):
    """DARKNET(dropout_layer.c): inverted dropout; the identity at inference."""

    def __init__(self, probability: float):
        super().__init__()
        self.dropout = nn.Dropout(probability)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"dropout       p = {self.dropout.p:.2f}               {before.size:4d}  ->  {before.size:4d}"


class CostLayer(DarknetLayer):
    """`[cost]` passes its input through; the loss itself belongs to the training engine."""

    def __init__(self, cost_type: str, scale: float):
        super().__init__()
        self.cost_type, self.scale = cost_type, scale

    def forward(self, x: Tensor) -> Tensor:
        return x

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"cost                                           {before.size:4d}"


@register("route")
def build_route(s: Section, ctx: BuildContext) -> tuple[RouteLayer, Shape]:
    indices = [ctx.layer_index(s, "layers", v) for v in s.get_ints("layers")]
    if not indices:
        raise s.error("route needs at least one layer in 'layers'", "layers")
    shapes = [ctx.layers[i].shape for i in indices]
    first = shapes[0]
    for index, shape in zip(indices[1:], shapes[1:]):
        if (shape.h, shape.w) != (first.h, first.w):
            raise s.error(f"layer {index} outputs {shape.w}x{shape.h}, but layer {indices[0]} outputs "
                          f"{first.w}x{first.h}: routed maps must have the same size", "layers")
    ctx.sources = indices
    return RouteLayer(), Shape(sum(shape.c for shape in shapes), first.h, first.w)


@register("reorg")
def build_reorg(s: Section, ctx: BuildContext) -> tuple[ReorgLayer, Shape]:
    shape = ctx.input_shape
    stride = s.get_int("stride", 1, minimum=1)
    for flag in ("reverse", "flatten", "extra"):
        if s.get_int(flag, 0):
            raise s.error(f"reorg with {flag}=1 is not supported", flag)
    if shape.h % stride or shape.w % stride or shape.c % (stride * stride):
        # DIVERGES: Darknet's integer division drops the remainder (a 0x0 output when stride > h)
        raise s.error(f"reorg stride={stride} does not divide the {shape.c}x{shape.h}x{shape.w} input", "stride")
    return ReorgLayer(stride), Shape(shape.c * stride * stride, shape.h // stride, shape.w // stride)


@register("shortcut")
def build_shortcut(s: Section, ctx: BuildContext) -> tuple[ShortcutLayer, Shape]:
    source = ctx.layer_index(s, "from", s.get_int("from"))
    ctx.sources = [ctx.index - 1, source]
    layer = ShortcutLayer(s.get_float("alpha", 1), s.get_float("beta", 1), activation_from(s, default="linear"))
    return layer, ctx.input_shape


@register("upsample")
def build_upsample(s: Section, ctx: BuildContext) -> tuple[UpsampleLayer, Shape]:
    shape = ctx.input_shape
    stride = s.get_int("stride", 2)
    if stride < 1:
        raise s.error(f"upsample stride={stride}: the reverse (downsampling) mode is not supported", "stride")
    return UpsampleLayer(stride, s.get_float("scale", 1)), Shape(shape.c, shape.h * stride, shape.w * stride)


@register("dropout")
def build_dropout(s: Section, ctx: BuildContext) -> tuple[DropoutLayer, Shape]:
    probability = s.get_float("probability", 0.5)
    if not 0 <= probability < 1:
        raise s.error(f"probability={probability} must be in [0, 1)", "probability")
    return DropoutLayer(probability), ctx.input_shape


@register("cost")
def build_cost(s: Section, ctx: BuildContext) -> tuple[CostLayer, Shape]:
    cost_type = s.get_str("type", "sse")
    if cost_type not in ("sse", "masked", "smooth", "L1", "seg", "wgan"):
        raise s.error(f"unknown cost type '{cost_type}'", "type")
    for key in ("ratio", "noobj", "thresh"):
        s.get_float(key, 0)
    return CostLayer(cost_type, s.get_float("scale", 1)), ctx.input_shape
