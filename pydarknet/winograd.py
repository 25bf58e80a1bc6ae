"""Winograd F(m, 3) convolutions for float32 CPU inference: 3x3 stride-1 convs with fewer multiplications.

A 3x3 conv computes each m x m block of outputs from an (m+2) x (m+2) input tile: Winograd's minimal
filtering (Lavin & Gray, 2016) transforms the tile (`B^T d B`) and the kernel (`G g G^T`, once, at load) so
that the block is `A^T [(G g G^T) * (B^T d B)] A`, an elementwise product. Summed over the input channels,
each of the alpha^2 = (m+2)^2 tile positions becomes one GEMM (tiles x Cin) @ (Cin x Cout), alpha^2 / (9 m^2)
of the direct conv's multiplications: 0.44 for F(2,3), 0.25 for F(4,3), 0.20 for F(6,3). The transforms
are extra passes over the tiles, and oneDNN's AVX2 direct conv runs near this CPU's GEMM peak, so Winograd
only wins where the GEMMs dominate: many channels. `winograd_tile` is the rule, by layer shape.

Measured (AMD EPYC, AVX2 only, 2 threads, 2026-12-07, on a machine loaded by other jobs; time ratios to the
prepacked oneDNN conv of the same layer, interleaved, medians, batch 1 / batch 8): F(4,3) 0.5-0.7 / 0.4-0.6
on yolov2-voc's 64->128 at 104x104 to 256->512 at 26x26, F(2,3) 0.7-0.85 / 0.5-0.7 on its 512- to 1280-channel
13x13 layers (F(4,3) there: slower at batch 1, its 4x larger transformed weights are read for 16 tile rows;
F(6,3): no faster than F(4,3) at batch 1, twice its error). Whole nets, batch 1: yolov2-voc 0.70-0.83x the
prepacked net's time, yolov2-tiny-voc 0.84-0.85x, yolov4-tiny 0.77-0.85x, yolov2 at 608 0.55-0.62x
(benchmarks/README.md). The same machine quiet (load < 1, weights read cold from memory in a whole net) gains
less at batch 1: per layer F(4,3) 0.54-0.97 where at least MIN_GEMM_WORK multiply-adds per tile position, and
1.02-1.6 below it; F(2,3) 0.73-0.80 on the 1024-channel 13x13 layers, but the whole nets with it on their
512-channel 13x13 layers were 8-12 % slower while OpenMP's threads slept between parallel regions (Winograd's
extra ops each woke them); with them spinning briefly, as the one-image commands run (`runtime.spin_between_layers`),
those layers gain too (SMALL_MAP_MIN_CHANNELS). With the rule before that change, whole nets, Winograd's time over
the prepacked net's (quiet, interleaved, threads sleeping): yolov2-voc 0.83-0.87 (batch 1) / 0.72 (batch 8), yolov2
at 608 0.72, yolov2-tiny-voc 0.92-1.02 / 0.82, yolov4-tiny 0.94-1.14 (noise of the 60-90 ms nets) / 0.88.
The transformed weights take 16/9 (F(2,3)) or 4 (F(4,3)) times the room of the plain ones.

Float32 error, max |error| / max |output| of one layer against float64: 2e-7 to 9e-7 (F(2,3)), 3e-6 to
1.4e-5 (F(4,3)), 5e-6 to 1.6e-5 (F(6,3)), against 1e-6 to 4e-6 for oneDNN's direct conv (the kernel
transform, one float32 GEMM at load, adds at most 1.3e-7). README §9 (1e-4 per layer) holds with every
eligible conv of the pack's mini nets forced to F(6,3) (worst layer at 0.54 of its tolerance).
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch
from torch import Tensor, nn

from .fuse import _FusedMixin
from .layers.conv import ConvolutionalLayer
from .registry import Shape

# Interpolation points of F(m, 3) (with the point at infinity): the small ones keep float32 error low
POINTS: dict[int, tuple[Fraction, ...]] = {
    2: tuple(map(Fraction, (0, 1, -1))),
    4: tuple(map(Fraction, (0, 1, -1, 2, -2))),
    6: tuple(map(Fraction, (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2)))),
}
KERNEL = 3
# Where Winograd beat oneDNN's direct conv (AMD EPYC, AVX2, 2 threads, batch 1 and 8; see winograd_tile)
MIN_CHANNELS = 64               # fewer input channels, or
MIN_WEIGHTS = 64 * 128          # fewer weights per tap (Cin x Cout; 64 x 64: 0.8-1.5x): GEMMs too thin, or
MIN_GEMM_WORK = 1_000_000       # fewer multiply-adds per tile position and image (F(4,3) tiles x Cin x Cout; quiet,
                                # batch 1, threads spinning between layers: 1.4-1.6M won 0.77-0.78x, 0.8M no longer
                                # pays for the transforms; with them sleeping 1.4-1.6M lost 1.02-1.08x)
SMALL_MAP = 16                  # maps this small (13x13 ...) run F(2,3), whose tiles waste least, and
SMALL_MAP_MIN_CHANNELS = 512    # only with this many input channels (batch 1, whole nets, F(2,3) on 512 -> 1024
                                # and 512 -> 512 at 13x13 too, against 1024 channels and more: 0.95-0.99x the time
                                # of yolov2-voc, 0.92-0.94x yolov2-tiny-voc, 0.98-0.99x yolov4-tiny with OpenMP's
                                # threads spinning between layers; 1.08-1.12x with them sleeping)
LEAKY_SLOPE = 0.1   # DARKNET(activations.h:leaky_activate)


def winograd_matrices(m: int) -> tuple[Tensor, Tensor, Tensor]:
    """A^T (m, alpha), G (alpha, 3) and B^T (alpha, alpha) of F(m, 3), in float64, exact (Toom-Cook)."""
    points = POINTS[m]
    alpha = m + KERNEL - 1
    a_t = [[p ** i for p in points] + [Fraction(i == m - 1)] for i in range(m)]
    g = [[p ** j / math.prod(p - q for q in points if q != p) for j in range(KERNEL)] for p in points]
    g.append([Fraction(j == KERNEL - 1) for j in range(KERNEL)])
    # row i of B^T: the coefficients of prod_{q != p_i} (x - q); the last row: those of prod_q (x - q)
    b_t = [_coefficients([q for q in points if q != p], alpha) for p in points]
    b_t.append(_coefficients(list(points), alpha))
    return tuple(torch.tensor([[float(c) for c in row] for row in rows], dtype=torch.float64)
                 for rows in (a_t, g, b_t))


def _coefficients(roots: list[Fraction], length: int) -> list[Fraction]:
    """The coefficients (lowest degree first, `length` of them) of prod (x - root)."""
    coefficients = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0), *coefficients]
        coefficients = [high - root * low for high, low in zip(shifted, [*coefficients, Fraction(0)])]
    return coefficients + [Fraction(0)] * (length - len(coefficients))


def winograd_tile(op: nn.Conv2d, shape: Shape) -> int | None:
    """The m of the F(m, 3) that runs `op` on `shape` inputs faster than oneDNN's direct conv on the AVX2 CPU
    it was measured on (ratios of time, batch 1 / batch 8, interleaved, the layers of yolov2-voc, yolov2-tiny-voc,
    yolov4-tiny and yolov2 at 608, loaded and quiet; benchmarks/README.md), or None: the direct conv. By shape
    only, so every batch size runs the same arithmetic."""
    weights = op.in_channels * op.out_channels
    tiles = -(-shape.h // 4) * -(-shape.w // 4)
    if (not runs_as_winograd(op) or op.in_channels < MIN_CHANNELS or weights < MIN_WEIGHTS
            or tiles * weights < MIN_GEMM_WORK):
        return None
    if min(shape.h, shape.w) <= SMALL_MAP:
        return 2 if op.in_channels >= SMALL_MAP_MIN_CHANNELS else None
    return 4


def measured_faster_here() -> bool:
    """Whether this CPU is the kind `winograd_tile`'s rule was measured on: AVX2 without AVX-512 (torch's CPU
    capability "AVX2"). Elsewhere it is unmeasured, and on AVX-512 / AMX oneDNN's direct conv runs faster (fp32 at
    0.49-0.59x OpenCV DNN's time there without Winograd), so the default leaves it off."""
    return torch.backends.cpu.get_cpu_capability() == "AVX2"


def runs_as_winograd(op: nn.Conv2d) -> bool:
    """Whether Winograd F(m, 3) computes `op`: a 3x3 conv, stride 1, padding 1, no dilation, no groups."""
    return (op.kernel_size == (KERNEL, KERNEL) and op.stride == (1, 1) and op.padding == (1, 1)
            and op.dilation == (1, 1) and op.groups == 1)


class WinogradConvolution(_FusedMixin, nn.Module):
    """A `[convolutional]` layer without batch norm (folded, or none in the cfg), 3x3 stride 1 pad 1, as
    Winograd F(m, 3) in float32: kernels transformed once, features NHWC in and out (as the
    prepacked convs write them), the bias added in the transformed domain and the leaky ReLU applied while
    the blocks are written out."""

    def __init__(self, layer: ConvolutionalLayer, m: int):
        super().__init__()
        op = layer.op
        if not runs_as_winograd(op):
            raise ValueError(f"Winograd F({m},3) computes 3x3 stride-1 pad-1 convs without groups, not {op}")
        a_t, g, b_t = winograd_matrices(m)
        self.m, self.alpha, self.out_channels = m, m + KERNEL - 1, op.out_channels
        # G g G^T of every (c, o) at once: (G (x) G) @ the 9 taps, one float32 GEMM (within 1.3e-7 of the max of
        # the float64 transform, which took 4-5x longer: 0.4-0.7 s per 1024 x 1024 layer, on every load)
        taps = op.weight.detach().float().reshape(op.out_channels, op.in_channels, KERNEL * KERNEL)
        kernels = torch.kron(g, g).float() @ taps.permute(2, 1, 0).reshape(KERNEL * KERNEL, -1)
        self.kernels = nn.Parameter(kernels.view(self.alpha ** 2, op.in_channels, op.out_channels),
                                    requires_grad=False)                                # (alpha^2, Cin, Cout)
        self.bias = nn.Parameter(op.bias.detach().float(), requires_grad=False)
        # the column of A^T at the point 1 is all ones (1^i): a bias added to the products at (1, 1) reaches
        # every output of the block once, exactly
        one = POINTS[m].index(1)
        self.bias_position = one * self.alpha + one
        # m = 2: one matmul with the Kronecker product (16 x 16); larger m: the two 1-D transforms (fewer flops)
        self.register_buffer("input_transform", (torch.kron(b_t, b_t) if m == 2 else b_t).float(), persistent=False)
        self.register_buffer("output_transform", (torch.kron(a_t, a_t) if m == 2 else a_t).float(), persistent=False)
        self.activation = layer.activation
        self.leaky = layer.activation.name == "leaky"

    def forward(self, x: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        grid = (batch, -(-height // self.m), -(-width // self.m))
        tiles = self._transformed_tiles(x, grid)                            # (alpha^2, B*tH*tW, Cin)
        products = torch.bmm(tiles, self.kernels)                           # (alpha^2, B*tH*tW, Cout)
        products[self.bias_position].add_(self.bias)
        blocks = self._transform(self.output_transform, products.view(self.alpha ** 2, -1))   # (m^2, B*tH*tW*Cout)
        blocks = blocks.view(self.m, self.m, *grid, self.out_channels).permute(2, 3, 0, 4, 1, 5)
        y = torch.empty(batch, self.out_channels, height, width, dtype=x.dtype, memory_format=torch.channels_last)
        for target, source in _crop_blocks(y.permute(0, 2, 3, 1), blocks):
            if self.leaky:
                torch.ops.aten.leaky_relu.out(source, LEAKY_SLOPE, out=target)
            else:
                target.copy_(source)
        if self.leaky or self.activation.name == "linear":
            return y
        return self.activation(y)

    def _transformed_tiles(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """B^T d B of every (m+2)^2 tile of `x` zero-padded (1 before, to whole tiles after), as
        (alpha^2, B*tH*tW, Cin)."""
        batch, tiles_h, tiles_w = grid
        channels, height, width = x.shape[1:]
        m, alpha = self.m, self.alpha
        rows, cols = tiles_h * m + 2, tiles_w * m + 2
        padded = nn.functional.pad(x.permute(0, 2, 3, 1), (0, 0, 1, cols - width - 1, 1, rows - height - 1))
        stride_w = cols * channels
        tiles = padded.as_strided((alpha, alpha, batch, tiles_h, tiles_w, channels),
                                  (stride_w, channels, rows * stride_w, m * stride_w, m * channels, 1))
        transformed = self._transform(self.input_transform, tiles.reshape(alpha * alpha, -1))
        return transformed.view(alpha * alpha, batch * tiles_h * tiles_w, channels)

    def _transform(self, matrix: Tensor, values: Tensor) -> Tensor:
        """M on both tile axes of `values` (alpha^2 rows, the tile positions row-major; any columns), as
        (rows out, columns): one matmul with M (x) M when `matrix` is that Kronecker product, else two with M."""
        if self.m == 2:
            return matrix @ values
        size = matrix.shape[1]
        once = (matrix @ values.view(size, -1)).view(matrix.shape[0], size, -1)
        return torch.matmul(matrix, once).view(matrix.shape[0] ** 2, -1)

    def extra_repr(self) -> str:
        return f"F({self.m},3), {self.out_channels} filters, activation={self.activation.name}"


def _crop_blocks(target: Tensor, blocks: Tensor) -> list[tuple[Tensor, Tensor]]:
    """The m x m `blocks` (B, tH, m, tW, m, C) paired with the parts of `target` (B, H, W, C) they fill:
    the whole blocks, then the partial ones of the last row and column of tiles when m does not divide H, W."""
    batch, height, width, channels = target.shape
    m = blocks.shape[2]
    whole_h, whole_w, rest_h, rest_w = height // m, width // m, height % m, width % m
    pairs = [(target[:, :whole_h * m, :whole_w * m].view(batch, whole_h, m, whole_w, m, channels),
              blocks[:, :whole_h, :, :whole_w])]
    if rest_h:
        pairs.append((target[:, whole_h * m:, :whole_w * m].view(batch, rest_h, whole_w, m, channels),
                      blocks[:, whole_h, :rest_h, :whole_w]))
    if rest_w:
        pairs.append((target[:, :whole_h * m, whole_w * m:].view(batch, whole_h, m, rest_w, channels),
                      blocks[:, :whole_h, :, whole_w, :rest_w]))
    if rest_h and rest_w:
        pairs.append((target[:, whole_h * m:, whole_w * m:], blocks[:, whole_h, :rest_h, whole_w, :rest_w]))
    return pairs
