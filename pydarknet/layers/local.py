"""`[local]`: a locally connected layer, a convolution whose filters differ at every output location
(YOLOv1's layer before its [connected] one)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..cfg import Section
from ..errors import UnsupportedError
from ..registry import BuildContext, Shape, register
from .activations import Activation, activation_from
from .base import DarknetLayer

if TYPE_CHECKING:
    from ..network import Darknet


def local_out_size(size_in: int, size: int, stride: int, pad: int) -> int:
    """DARKNET(local_layer.c:local_out_height): with any `pad` the output is (in - 1)/stride + 1, as if the
    padding were size/2 of a size-3 window; without, (in - size)/stride + 1."""
    return (size_in - (1 if pad else size)) // stride + 1


class LocalLayer(DarknetLayer):
    """DARKNET(local_layer.c:forward_local_layer): at each of the L = out_h*out_w output locations its own
    (n, c*size*size) weight matrix times that location's im2col column, plus a bias per output value.

    Shapes: (B, c, h, w) -> (B, n, out_h, out_w). `weights` is (L, n, c*size*size), Darknet's order (location,
    filter, then channel, row, column of the window); `biases` is (n, out_h, out_w), one per output value.
    `pad` is the zero padding of every side, Darknet's cfg value itself (not size/2).
    """

    def __init__(self, in_shape: Shape, filters: int, size: int, stride: int, pad: int, activation: Activation,
                 allocate=torch.zeros):
        super().__init__()
        self.size, self.stride, self.pad = size, stride, pad
        self.out_h = local_out_size(in_shape.h, size, stride, pad)
        self.out_w = local_out_size(in_shape.w, size, stride, pad)
        window = in_shape.c * size * size
        self.weights = nn.Parameter(allocate(self.out_h * self.out_w, filters, window))   # [L, n, c*size*size]
        self.biases = nn.Parameter(allocate(filters, self.out_h, self.out_w))             # [n, out_h, out_w]
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        columns = nn.functional.unfold(x, self.size, padding=self.pad, stride=self.stride)   # [B, c*size*size, L]
        out = torch.einsum("lnk,bkl->bnl", self.weights.to(x.dtype), columns)                # [B, n, L]
        out = out.view(x.shape[0], -1, self.out_h, self.out_w) + self.biases.to(x.dtype)
        return self.activation(out)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise as a fresh Darknet net: zero biases, and uniform(-1, 1) * sqrt(2/(size*size*c)) weights for
        the FIRST location only.

        DARKNET(local_layer.c:make_local_layer): the init loop stops at c*n*size*size, every later location's
        weights stay 0 (calloc).
        """
        first = self.weights[0]
        scale = (2.0 / first.shape[1]) ** 0.5
        with torch.no_grad():
            self.weights.zero_()
            first.copy_(scale * (2 * torch.rand(first.shape, generator=generator) - 1))
            self.biases.zero_()

    def darknet_tensors(self) -> list[Tensor]:
        # DARKNET(parser.c:save_weights_upto): biases (l.outputs of them), then weights, location by location
        return [self.biases, self.weights]

    def trained_tensors(self) -> dict[str, nn.Parameter]:
        # DARKNET(local_layer.c:update_local_layer): weights and biases
        return {"weights": self.weights, "biases": self.biases}

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        after = net.shapes[index]
        # DARKNET(local_layer.c:make_local_layer): h, w, c, n -> out_h, out_w, n, each %d
        return (f"Local Layer: {before.h} x {before.w} x {before.c} image, {after.c} filters -> "
                f"{after.h} x {after.w} x {after.c} image")

    def extra_repr(self) -> str:
        return f"filters={self.biases.shape[0]}, size={self.size}, stride={self.stride}, pad={self.pad}"


@register("local")
def build_local(s: Section, ctx: BuildContext) -> tuple[LocalLayer, Shape]:
    shape = ctx.input_shape
    # DARKNET(parser.c:parse_local): filters, size, stride default to 1, pad to 0, the activation to logistic
    filters = s.get_int("filters", 1, minimum=1)
    size = s.get_int("size", 1, minimum=1)
    stride = s.get_int("stride", 1, minimum=1)
    pad = s.get_int("pad", 0, minimum=0)
    activation = activation_from(s)
    out_h, out_w = (local_out_size(n, size, stride, pad) for n in (shape.h, shape.w))
    if out_h < 1 or out_w < 1:
        raise s.error(f"size={size} stride={stride} gives a {out_w}x{out_h} output for the {shape.w}x{shape.h} "
                      f"input", "size")
    # DARKNET(local_layer.c:forward_local_layer): im2col pads by `pad` and makes its own number of columns, but
    # the weights are applied to out_h*out_w of them as if both agreed: only where they do is the layer defined
    columns = ((shape.h + 2 * pad - size) // stride + 1, (shape.w + 2 * pad - size) // stride + 1)
    if columns != (out_h, out_w):
        raise UnsupportedError(f"{s.where('pad')}: [local] size={size} pad={pad} stride={stride} on a "
                               f"{shape.w}x{shape.h} input: Darknet's im2col makes {columns[1]}x{columns[0]} "
                               f"columns for a {out_w}x{out_h} output and mixes locations up (pad=0 and "
                               f"size=2*pad+1 are well defined)")
    locations = out_h * out_w
    ctx.reserve(s, locations * filters * (shape.c * size * size + 2), f"filters={filters} at {locations} locations",
                "filters")
    allocate = torch.zeros if ctx.deferred_init is None else torch.empty   # empty: a weights file fills it
    layer = LocalLayer(shape, filters, size, stride, pad, activation, allocate)
    return layer, Shape(filters, out_h, out_w)
