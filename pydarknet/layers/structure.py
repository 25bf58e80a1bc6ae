"""Layers that move data around: `[route]`, `[reorg]`, `[reorg3d]`, `[shortcut]`, `[upsample]`, `[crop]`, `[dropout]`,
`[cost]`.

A layer that reads earlier outputs lists their indices in `ctx.sources`; the network passes those
outputs to `forward` in that order.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..cfg import Section
from ..errors import UnsupportedError
from ..registry import BuildContext, Shape, register
from .activations import activation_from
from .base import DarknetLayer, dims

if TYPE_CHECKING:
    from ..network import Darknet


class RouteLayer(DarknetLayer):
    """DARKNET(route_layer.c:forward_route_layer): concatenation along channels in the listed order.

    With AlexeyAB's `groups=G group_id=g` each input contributes only its channels [g·C/G, (g+1)·C/G)
    (yolov4-tiny's CSP blocks take the second half). Shapes: inputs (B, C_i, H, W) -> (B, ΣC_i/G, H, W).
    """

    def __init__(self, groups: int = 1, group_id: int = 0):
        super().__init__()
        self.groups, self.group_id = groups, group_id

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.groups > 1:
            # DARKNET(AlexeyAB route_layer.c:forward_route_layer): part group_id of each input's C/G channels
            inputs = tuple(x.chunk(self.groups, dim=1)[self.group_id] for x in inputs)
        return inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=1)

    def extra_repr(self) -> str:
        return f"groups={self.groups}, group_id={self.group_id}" if self.groups > 1 else ""

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        sources = net.sources[index]
        line = "route " + "".join(f" {source}" for source in sources)
        if self.groups == 1:
            return line   # pjreddie's line (AlexeyAB's pads it and adds the output size)
        # DARKNET(AlexeyAB parser.c:parse_route): a tab run by input count, then group_id/groups and the output
        gap = " \t    " if len(sources) > 3 else " \t            " if len(sources) > 1 else " \t\t            "
        return f"{line}{gap}           {self.group_id}/{self.groups} -> {dims(net.shapes[index])} "


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


class Reorg3dLayer(DarknetLayer):
    """AlexeyAB's `[reorg3d]` (its reorg_layer.c; its `[reorg]` is pjreddie's, `ReorgLayer`), a true space-to-depth.

    DARKNET(AlexeyAB reorg_layer.c:forward_reorg_layer): reorg_cpu is given the OUTPUT's dims, so the index map
    reads the input with its own shape: ``out[(dy*s + dx)*C + c, y, x] = in[c, y*s + dy, x*s + dx]``.
    Shapes: (B, C, H, W) -> (B, C·s², H/s, W/s). `reverse=1` runs the same map backwards on the output's dims
    (C/s², H·s, W·s), i.e. depth-to-space of the input read as (C/s⁴·s², H·s, W·s) — reorg_cpu's own quirk.
    """

    def __init__(self, stride: int, reverse: bool = False):
        super().__init__()
        self.stride, self.reverse = stride, reverse

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.stride
        if not self.reverse:
            grid = x.reshape(b, c, h // s, s, w // s, s)                 # [B, c, y, dy, x, dx]
            return grid.permute(0, 3, 5, 1, 2, 4).reshape(b, c * s * s, h // s, w // s)
        out_c, out_h, out_w = c // (s * s), h * s, w * s
        # DARKNET(AlexeyAB blas.c:reorg_cpu, forward=1): the input read as (out_c, out_h, out_w) = [dy][dx][c2]...
        grid = x.reshape(b, s, s, out_c // (s * s), out_h, out_w)          # [B, dy, dx, c2, y, x]
        # ... written at (c2, y*s + dy, x*s + dx) of an (out_c/s², out_h*s, out_w*s) buffer, read as the output
        return grid.permute(0, 3, 4, 1, 5, 2).reshape(b, out_c, out_h, out_w)

    def extra_repr(self) -> str:
        return f"stride={self.stride}" + (", reverse" if self.reverse else "")

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        # DARKNET(AlexeyAB reorg_layer.c:make_reorg_layer): its line
        return f"reorg                    /{self.stride:2d} {dims(before)} -> {dims(net.shapes[index])}"


class CropLayer(DarknetLayer):
    """DARKNET(crop_layer.c:forward_crop_layer): a crop_height x crop_width window of every channel, times 2 minus 1
    (`noadjust=1`: unchanged). At inference the centred window ((H−h)/2, (W−w)/2); in training one random window
    and, with `flip=1`, a random mirror, drawn once for the whole batch as Darknet's rand() is.
    """

    def __init__(self, height: int, width: int, flip: bool, noadjust: bool):
        super().__init__()
        self.height, self.width, self.flip, self.noadjust = height, width, flip, noadjust

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        if self.training:
            top = int(torch.randint(h - self.height + 1, ()))
            left = int(torch.randint(w - self.width + 1, ()))
            mirror = self.flip and bool(torch.randint(2, ()))
        else:
            top, left, mirror = (h - self.height) // 2, (w - self.width) // 2, False
        out = x[..., top:top + self.height, left:left + self.width]
        if mirror:
            # DARKNET(crop_layer.c:forward_crop_layer): col = w - dw - j - 1, the window mirrored about the image
            right = w - left
            out = x[..., top:top + self.height, right - self.width:right].flip(-1)
        return out if self.noadjust else out * 2 - 1

    def extra_repr(self) -> str:
        return f"{self.height}x{self.width}, flip={int(self.flip)}, noadjust={int(self.noadjust)}"

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        # DARKNET(crop_layer.c:make_crop_layer): "Crop Layer: h x w -> crop_height x crop_width x c image"
        return f"Crop Layer: {before.h} x {before.w} -> {self.height} x {self.width} x {before.c} image"


def _scaled(tensor: Tensor, factor: float) -> Tensor:
    """factor·tensor, or the tensor itself for factor 1 (every shipped cfg's alpha and beta): the same values without
    a pass over the map (yolov4's 64x304x304 shortcut 6.7 -> 2.5 ms)."""
    return tensor if factor == 1 else factor * tensor


class ShortcutLayer(DarknetLayer):
    """DARKNET(shortcut_layer.c:forward_shortcut_layer): out = alpha*previous + beta*from, then activation.

    When the two maps differ in size, Darknet samples the larger one with an integer stride and adds
    over the common channels only (blas.c:shortcut_cpu). AlexeyAB's several `from=` layers (all of the
    previous layer's shape) are all added: out = activation(previous + Σ from_i).
    """

    def __init__(self, alpha: float, beta: float, activation: nn.Module):
        super().__init__()
        self.alpha, self.beta = alpha, beta
        self.activation = activation

    def forward(self, previous: Tensor, source: Tensor, *more: Tensor) -> Tensor:
        if more:
            # DARKNET(AlexeyAB blas.c:shortcut_multilayer_cpu): the sum of every input, unweighted
            return self.activation(_scaled(previous, self.alpha) + _scaled(source + sum(more), self.beta))
        if previous.shape == source.shape:
            return self.activation(_scaled(previous, self.alpha) + _scaled(source, self.beta))
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
    """DARKNET(blas.c:upsample_cpu): nearest-neighbour repeat by `stride`, times `scale`.

    A negative cfg stride (`reverse`) downsamples: each output pixel is `scale` times the SUM of its
    stride x stride block (upsample_cpu run backwards); rows and columns past the last whole block are dropped.
    """

    def __init__(self, stride: int, scale: float, reverse: bool = False):
        super().__init__()
        self.stride, self.scale, self.reverse = stride, scale, reverse

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        if self.reverse:
            b, c, h, w = x.shape
            blocks = x[:, :, :h // s * s, :w // s * s].reshape(b, c, h // s, s, w // s, s)
            return blocks.sum(dim=(3, 5)) * self.scale
        out = x.repeat_interleave(s, dim=2).repeat_interleave(s, dim=3)
        return out * self.scale if self.scale != 1 else out

    def extra_repr(self) -> str:
        return f"stride={self.stride}, scale={self.scale}" + (", reverse" if self.reverse else "")

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        # DARKNET(upsample_layer.c:make_upsample_layer): "downsample" for a negative stride
        name = "downsample" if self.reverse else "upsample  "
        return f"{name}         {self.stride:2d}x  {dims(before)}   ->  {dims(net.shapes[index])}"


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
    # DARKNET(AlexeyAB parser.c:parse_route): groups, group_id (pjreddie's Darknet has neither)
    groups = s.get_int("groups", 1, minimum=1)
    group_id = s.get_int("group_id", 0, minimum=0, maximum=groups - 1)
    shapes = [ctx.layers[i].shape for i in indices]
    first = shapes[0]
    for index, shape in zip(indices[1:], shapes[1:]):
        if (shape.h, shape.w) != (first.h, first.w):
            raise s.error(f"layer {index} outputs {shape.w}x{shape.h}, but layer {indices[0]} outputs "
                          f"{first.w}x{first.h}: routed maps must have the same size", "layers")
    for index, shape in zip(indices, shapes):
        if shape.c % groups:
            # DIVERGES: AlexeyAB slices C*H*W/groups floats, which splits channels when groups does not divide C
            raise s.error(f"groups={groups} does not divide the {shape.c} channels of layer {index}", "groups")
    ctx.sources = indices
    return RouteLayer(groups, group_id), Shape(sum(shape.c for shape in shapes) // groups, first.h, first.w)


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


@register("reorg3d")
def build_reorg3d(s: Section, ctx: BuildContext) -> tuple[Reorg3dLayer, Shape]:
    shape = ctx.input_shape
    stride = s.get_int("stride", 1, minimum=1)
    reverse = bool(s.get_int("reverse", 0, minimum=0, maximum=1))
    # DIVERGES: AlexeyAB's integer division drops a remainder and then indexes past it; refused here
    square = stride * stride
    if reverse:
        if shape.c % (square * square):
            raise s.error(f"reorg3d reverse=1 stride={stride} needs channels divisible by stride^4, got {shape.c}",
                          "stride")
        return Reorg3dLayer(stride, True), Shape(shape.c // square, shape.h * stride, shape.w * stride)
    if shape.h % stride or shape.w % stride:
        raise s.error(f"reorg3d stride={stride} does not divide the {shape.w}x{shape.h} input", "stride")
    return Reorg3dLayer(stride), Shape(shape.c * square, shape.h // stride, shape.w // stride)


@register("crop")
def build_crop(s: Section, ctx: BuildContext) -> tuple[CropLayer, Shape]:
    shape = ctx.input_shape
    # DARKNET(parser.c:parse_crop): crop_height, crop_width default 1
    height = s.get_int("crop_height", 1, minimum=1, maximum=shape.h)
    width = s.get_int("crop_width", 1, minimum=1, maximum=shape.w)
    flip = bool(s.get_int("flip", 0))
    # DARKNET(crop_layer.c:forward_crop_layer): angle, saturation, exposure and shift are read and never used
    for key, default in (("angle", 0.0), ("saturation", 1.0), ("exposure", 1.0), ("shift", 0.0)):
        s.get_float(key, default)
    noadjust = bool(s.get_int("noadjust", 0))
    return CropLayer(height, width, flip, noadjust), Shape(shape.c, height, width)


@register("shortcut")
def build_shortcut(s: Section, ctx: BuildContext) -> tuple[ShortcutLayer, Shape]:
    sources = [ctx.layer_index(s, "from", value) for value in s.get_ints("from")]
    if not sources:
        raise s.error("shortcut needs at least one layer in 'from'", "from")
    # DARKNET(AlexeyAB parser.c:parse_shortcut): weights_type none|per_feature|per_layer|per_channel
    weights_type = s.get_str("weights_type", "none", choices=("none", "per_feature", "per_layer", "per_channel"))
    if weights_type != "none":
        raise UnsupportedError(f"{s.where('weights_type')}: weighted shortcuts (weights_type={weights_type}) "
                               f"are not implemented")
    s.get_str("weights_normalization", "none")   # DARKNET(AlexeyAB parser.c:parse_shortcut): unused without weights
    if len(sources) > 1:
        for source in sources:
            if ctx.layers[source].shape != ctx.input_shape:
                raise UnsupportedError(f"{s.where('from')}: layer {source} outputs {ctx.layers[source].shape}, not "
                                       f"the previous layer's {ctx.input_shape}: a shortcut of several layers of "
                                       f"different sizes is not implemented")
    ctx.sources = [ctx.index - 1, *sources]
    layer = ShortcutLayer(s.get_float("alpha", 1), s.get_float("beta", 1), activation_from(s, default="linear"))
    return layer, ctx.input_shape


@register("upsample")
def build_upsample(s: Section, ctx: BuildContext) -> tuple[UpsampleLayer, Shape]:
    shape = ctx.input_shape
    stride = s.get_int("stride", 2)
    scale = s.get_float("scale", 1)
    if stride == 0:
        raise s.error("upsample stride=0: the stride must not be 0 (negative downsamples)", "stride")
    if stride < 0:
        # DARKNET(upsample_layer.c:make_upsample_layer): a negative stride downsamples by -stride
        stride = -stride
        if shape.h < stride or shape.w < stride:
            raise s.error(f"downsample stride={stride} leaves nothing of the {shape.w}x{shape.h} input", "stride")
        return UpsampleLayer(stride, scale, reverse=True), Shape(shape.c, shape.h // stride, shape.w // stride)
    return UpsampleLayer(stride, scale), Shape(shape.c, shape.h * stride, shape.w * stride)


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
