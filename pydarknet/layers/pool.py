"""`[maxpool]` and `[avgpool]` layers."""
from __future__ import annotations

from torch import Tensor, nn

from ..cfg import Section
from ..registry import BuildContext, Shape, register
from .base import DarknetLayer


class MaxPoolLayer(DarknetLayer):
    """Max pooling with Darknet's padding: `padding` in total, `padding//2` of it on the left/top.

    DARKNET(maxpool_layer.c:forward_maxpool_layer): padded positions act as -FLT_MAX, so a window that
    hangs over the edge takes the max of its valid elements (zero padding would differ after leaky).
    """

    def __init__(self, size: int, stride: int, padding: int):
        super().__init__()
        self.size, self.stride, self.padding = size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        before = self.padding // 2
        after = self.padding - before
        if before or not self._padding_unused(x.shape[-1], after) or not self._padding_unused(x.shape[-2], after):
            x = nn.functional.pad(x, (before, after, before, after), value=float("-inf"))
        return nn.functional.max_pool2d(x, self.size, self.stride)

    def _padding_unused(self, length: int, after: int) -> bool:
        """True when no window reaches the right/bottom padding (e.g. size 2, stride 2, even length)."""
        return (length + after - self.size) // self.stride == (length - self.size) // self.stride

    def extra_repr(self) -> str:
        return f"size={self.size}, stride={self.stride}, padding={self.padding}"


class AvgPoolLayer(DarknetLayer):
    """DARKNET(avgpool_layer.c): a global average over the whole feature map."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


@register("maxpool", "max")
def build_maxpool(s: Section, ctx: BuildContext) -> tuple[MaxPoolLayer, Shape]:
    shape = ctx.input_shape
    stride = s.get_int("stride", 1)
    size = s.get_int("size", stride)
    padding = s.get_int("padding", size - 1)  # DARKNET(parser.c:parse_maxpool): total padding
    if size < 1 or stride < 1 or padding < 0:
        raise s.error(f"invalid maxpool size={size} stride={stride} padding={padding}")
    out_h = (shape.h + padding - size) // stride + 1
    out_w = (shape.w + padding - size) // stride + 1
    return MaxPoolLayer(size, stride, padding), Shape(shape.c, out_h, out_w)


@register("avgpool", "avg")
def build_avgpool(s: Section, ctx: BuildContext) -> tuple[AvgPoolLayer, Shape]:
    return AvgPoolLayer(), Shape(ctx.input_shape.c, 1, 1)
