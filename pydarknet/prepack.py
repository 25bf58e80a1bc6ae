"""CPU inference convolutions for oneDNN: weights reordered once into its blocked layout, and the
activation applied inside the convolution, on the accumulator, as a oneDNN post-op.

A plain `nn.Conv2d` on the CPU hands oneDNN weights in PyTorch's layout, which it reorders on every
call, and a Darknet layer then makes one more pass over the feature map for its leaky ReLU.
`PrepackedConvolution` does neither (measured on 2 cores with AMX, batch 1 at 416, interleaved:
yolov2-voc 126.7 -> 101.2 ms in float32, 47.2 -> 30.3 ms in bfloat16; tiny 35.1 -> 27.2, 15.3 ->
10.9 ms). In float32 the outputs are the fused layer's to the last bit where PyTorch picks the same
oneDNN kernel (batch 3 of the mini nets), else to rounding (1e-5 of the max at batch 1, as far as PyTorch's own
conv is from itself between batch 1 and 3); the exact post-ops (max, multiply) round as the separate op.

The op is the one `torch.compile` emits for frozen CPU convolutions (``mkldnn::_convolution_pointwise``).
The reordered weights are opaque tensors: a prepacked net cannot be copied, moved or saved.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .fuse import _FusedMixin
from .layers.conv import ConvolutionalLayer
from .registry import Shape
from .winograd import WinogradConvolution, measured_faster_here, winograd_tile

# Darknet activations that oneDNN computes exactly as PyTorch does (no transcendental approximations)
EXACT_POST_OPS: dict[str, tuple[str, list[float]]] = {
    "linear": ("none", []),
    "relu": ("relu", []),
    "leaky": ("leaky_relu", [0.1]),   # DARKNET(activations.h:leaky_activate): slope .1
    "relie": ("leaky_relu", [0.01]),  # DARKNET(activations.h:relie_activate): slope .01 below 0
}


def prepacking_available(device: torch.device, dtype: torch.dtype = torch.float32) -> bool:
    """True on a CPU with PyTorch's oneDNN build (the op is absent elsewhere), for bfloat16 only where
    oneDNN runs it (AVX512-BF16 or AMX; elsewhere the plain bf16 layers run instead)."""
    if not (device.type == "cpu" and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_convolution_pointwise")):
        return False
    return dtype == torch.float32 or cpu_runs_bf16()


def cpu_runs_bf16() -> bool:
    """Whether oneDNN runs bfloat16 convolutions in hardware here (AVX512-BF16 or AMX); elsewhere PyTorch
    emulates them, 4.5x slower than float32 (yolov2-voc with oneDNN capped at AVX2: 1195 vs 183 ms)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class PrepackedConvolution(_FusedMixin, nn.Module):
    """A `[convolutional]` layer without batch norm (folded, or none in the cfg) as one oneDNN call:
    prepacked `dtype` weights, float32 bias, the activation as a post-op when oneDNN's is exact
    (`EXACT_POST_OPS`), else after the call."""

    def __init__(self, layer: ConvolutionalLayer, input_shape: Shape, dtype: torch.dtype):
        super().__init__()
        op = layer.op
        self.geometry = (list(op.padding), list(op.stride), list(op.dilation), op.groups)
        self.weight = torch.ops.mkldnn._reorder_convolution_weight(
            op.weight.detach().to(dtype), *self.geometry, [1, input_shape.c, input_shape.h, input_shape.w])
        self.bias = nn.Parameter(op.bias.detach().float(), requires_grad=False)
        post_op = EXACT_POST_OPS.get(layer.activation.name)
        self.post_op = post_op or ("none", [])
        self.activation = None if post_op else layer.activation

    def forward(self, x: Tensor) -> Tensor:
        y = torch.ops.mkldnn._convolution_pointwise(x, self.weight, self.bias, *self.geometry,
                                                    self.post_op[0], self.post_op[1], "")
        return y if self.activation is None else self.activation(y)

    def extra_repr(self) -> str:
        return f"{self.weight.dtype}, {tuple(self.weight.shape)}, post_op={self.post_op[0]}"


def prepack_convolutions(net: nn.Module, dtype: torch.dtype = torch.float32, upto: int | None = None,
                         winograd: bool | None = None) -> None:
    """Replace, in place, each conv of `net.layers[:upto]` (a Darknet fused for inference, on the CPU) by
    its `PrepackedConvolution`, packed for its input at batch 1 (other batch sizes and image sizes run too).
    With `winograd` (float32 only), the 3x3 stride-1 convs that `winograd.winograd_tile` picks by their
    shape, where Winograd measured faster, become `WinogradConvolution`s instead; None: on the CPUs that rule
    was measured on (`winograd.measured_faster_here`)."""
    if winograd is None:
        winograd = measured_faster_here()
    count = len(net.layers) if upto is None else upto
    for index in range(count):
        layer = net.layers[index]
        if isinstance(layer, ConvolutionalLayer) and layer.bn is None:
            (source,) = net.info[index].sources
            shape = _input_shape(net, source)
            tile = winograd_tile(layer.op, shape) if winograd and dtype == torch.float32 else None
            net.layers[index] = (WinogradConvolution(layer, tile) if tile else
                                 PrepackedConvolution(layer, shape, dtype))


def _input_shape(net, source: int) -> Shape:
    return Shape(net.channels, net.height, net.width) if source < 0 else net.info[source].shape
