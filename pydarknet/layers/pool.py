"""`[maxpool]`, `[avgpool]` and AlexeyAB's `[local_avgpool]` layers."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..cfg import Section
from ..errors import UnsupportedError
from ..registry import BuildContext, Shape, register
from .base import DarknetLayer, dims
from .conv import window_output

if TYPE_CHECKING:
    from ..network import Darknet


class MaxPoolLayer(DarknetLayer):
    """Max pooling with Darknet's padding: `padding` in total, `padding//2` of it on the left/top.

    DARKNET(maxpool_layer.c:forward_maxpool_layer): padded positions act as -FLT_MAX, so a window that
    hangs over the edge takes the max of its valid elements (zero padding would differ after leaky).
    """

    def __init__(self, size: int, stride: int, padding: int, stride_y: int | None = None):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding
        self.stride_y = stride if stride_y is None else stride_y   # AlexeyAB's stride_y; `stride` is stride_x

    def forward(self, x: Tensor) -> Tensor:
        before = self.padding // 2
        after = self.padding - before
        if (before or not self._padding_unused(x.shape[-1], after, self.stride)
                or not self._padding_unused(x.shape[-2], after, self.stride_y)):
            x = nn.functional.pad(x, (before, after, before, after), value=float("-inf"))
        elif (self.size == self.stride == self.stride_y == 2 and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0
              and not x.requires_grad and not torch.onnx.is_in_onnx_export()):   # exported: one MaxPool (int8 there)
            return _max_of_2x2_blocks(x)
        return nn.functional.max_pool2d(x, self.size, (self.stride_y, self.stride))

    def _padding_unused(self, length: int, after: int, stride: int) -> bool:
        """True when no window reaches the right/bottom padding (e.g. size 2, stride 2, even length)."""
        return (length + after - self.size) // stride == (length - self.size) // stride

    def extra_repr(self) -> str:
        strides = f"{self.stride}" if self.stride_y == self.stride else f"({self.stride_y}, {self.stride})"
        return f"size={self.size}, stride={strides}, padding={self.padding}"

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        # DARKNET(AlexeyAB maxpool_layer.c:make_maxpool_layer): stride_x x stride_y when they differ
        stride = f"{self.stride}" if self.stride_y == self.stride else f"{self.stride}x{self.stride_y}"
        return f"max          {self.size} x {self.size} / {stride}  {dims(before)}   ->  {dims(net.shapes[index])}"


def _max_of_2x2_blocks(x: Tensor) -> Tensor:
    """`max_pool2d(x, 2, 2)` of an even-sized map, bit for bit, as three elementwise maxima of strided views:
    1.3-3x faster on NHWC maps (yolov2-tiny-voc's first pool, bf16: 0.61 vs 1.28 ms; the whole bf16 forward
    -4% at batch 1, -9% at batch 8, fp32 unchanged). Inference only: the
    gradient of a maximum splits ties, where Darknet's maxpool backward gives it all to the first max."""
    return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                         torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class AvgPoolLayer(DarknetLayer):
    """DARKNET(avgpool_layer.c): a global average over the whole feature map."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"avg                     {dims(before)}   ->  {before.c:4d}"


class LocalAvgPoolLayer(DarknetLayer):
    """AlexeyAB's `[local_avgpool]`: DARKNET(AlexeyAB maxpool_layer.c:forward_local_avgpool_layer), the mean of the
    window's cells inside the map (padding, `padding//2` of it left/top as maxpool's, is not counted)."""

    def __init__(self, size: int, stride_x: int, stride_y: int, padding: int):
        super().__init__()
        self.size, self.stride_x, self.stride_y, self.padding = size, stride_x, stride_y, padding

    def forward(self, x: Tensor) -> Tensor:
        before = self.padding // 2
        after = self.padding - before
        pad = (before, after, before, after)
        strides = (self.stride_y, self.stride_x)
        total = nn.functional.avg_pool2d(nn.functional.pad(x, pad), self.size, strides, divisor_override=1)
        ones = nn.functional.pad(torch.ones_like(x[:1, :1]), pad)
        count = nn.functional.avg_pool2d(ones, self.size, strides, divisor_override=1)   # [1, 1, H', W']
        return total / count

    def extra_repr(self) -> str:
        return f"size={self.size}, stride=({self.stride_y}, {self.stride_x}), padding={self.padding}"

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        after = net.shapes[index]
        bflops = self.size * self.size * before.c * after.h * after.w / 1e9
        # DARKNET(AlexeyAB maxpool_layer.c:make_maxpool_layer): the avgpool line, stride_x x stride_y when they differ
        stride = f"{self.stride_x:2d}  " if self.stride_x == self.stride_y else f"{self.stride_x:2d}x{self.stride_y:2d}"
        return (f"avg               {self.size:2d}x{self.size:2d}/{stride} {dims(before)} -> {dims(after)} "
                f"{bflops:5.3f} BF")


@register("local_avgpool", "local_avg")
def build_local_avgpool(s: Section, ctx: BuildContext) -> tuple[LocalAvgPoolLayer, Shape]:
    # DARKNET(AlexeyAB parser.c:parse_local_avgpool): maxpool's keys, without maxpool_depth and antialiasing.
    # DIVERGES: a window of padding only (refused) would be 0/0 there
    window = _pool_window(s, ctx.input_shape)
    return (LocalAvgPoolLayer(window.size, window.stride_x, window.stride_y, window.padding),
            Shape(ctx.input_shape.c, window.out_h, window.out_w))


@dataclass(frozen=True)
class _PoolWindow:
    size: int
    stride_x: int
    stride_y: int
    padding: int     # in total; padding//2 of it left/top
    out_h: int
    out_w: int


def _pool_window(s: Section, shape: Shape) -> _PoolWindow:
    """The window keys of [maxpool] and [local_avgpool] with their defaults, and the output size."""
    stride = s.get_int("stride", 1, minimum=1)
    # DARKNET(AlexeyAB parser.c:parse_maxpool): stride_x, stride_y default to stride
    stride_x = s.get_int("stride_x", stride, minimum=1)
    stride_y = s.get_int("stride_y", stride, minimum=1)
    size = s.get_int("size", stride, minimum=1)
    padding = s.get_int("padding", size - 1, minimum=0)  # DARKNET(parser.c:parse_maxpool): total padding
    if padding - padding // 2 >= size:
        # DIVERGES: Darknet outputs -FLT_MAX (maxpool) or NaN (local_avgpool) for a window of padding only
        raise s.error(f"padding={padding} makes windows of padding only (size={size} allows at most "
                      f"{2 * (size - 1)})", "padding")
    across = window_output(s, shape, size, stride_x, padding)
    down = window_output(s, shape, size, stride_y, padding)
    return _PoolWindow(size, stride_x, stride_y, padding, down.h, across.w)


@register("maxpool", "max")
def build_maxpool(s: Section, ctx: BuildContext) -> tuple[MaxPoolLayer, Shape]:
    shape = ctx.input_shape
    window = _pool_window(s, shape)
    _refuse_alexeyab_pooling(s)
    if window.padding:
        ctx.reserve(s, shape.c * (shape.h + window.padding) * (shape.w + window.padding), "the -inf-padded input",
                    "padding")
    return (MaxPoolLayer(window.size, window.stride_x, window.padding, window.stride_y),
            Shape(shape.c, window.out_h, window.out_w))


def _refuse_alexeyab_pooling(s: Section) -> None:
    """AlexeyAB's maxpool keys this port does not implement: an UnsupportedError naming file:line when set."""
    if s.get_int("maxpool_depth", 0):
        raise UnsupportedError(f"{s.where('maxpool_depth')}: maxpool_depth=1 (a max across channels) is not "
                               f"implemented")
    s.get_int("out_channels", 1, minimum=1)   # DARKNET(AlexeyAB parser.c:parse_maxpool): only read with maxpool_depth
    if s.get_int("antialiasing", 0):
        raise UnsupportedError(f"{s.where('antialiasing')}: maxpool antialiasing (a blur after the pool) is not "
                               f"implemented")
    # DARKNET(AlexeyAB parser.c:parse_maxpool): maxpool_zero_nonmax is read, and nothing in the fork uses it
    s.get_int("maxpool_zero_nonmax", 0)


@register("avgpool", "avg")
def build_avgpool(s: Section, ctx: BuildContext) -> tuple[AvgPoolLayer, Shape]:
    return AvgPoolLayer(), Shape(ctx.input_shape.c, 1, 1)
