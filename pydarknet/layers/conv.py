"""`[convolutional]` and `[connected]` layers: affine map, optional batch norm, activation."""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from ..cfloat import f32
from ..cfg import Section
from ..errors import UnsupportedError
from ..registry import BuildContext, Shape, register
from .activations import Activation, activation_from
from .batchnorm_cpu import cpu_build_batch_norm
from .base import DarknetLayer, dims

if TYPE_CHECKING:
    from ..network import Darknet

BN_EPS = 1e-5        # DARKNET(batchnorm_layer.c / cuDNN): epsilon inside the sqrt, as the GPU build
BN_MOMENTUM = 0.01   # DARKNET(batchnorm_layer.c:forward_batchnorm_layer): rolling = .99*rolling + .01*batch
# DARKNET(blas.c:normalize_cpu): a stock CPU build divides by sqrt(var) + .000001f (a float literal)
STOCK_CPU_BN_EPS = f32(1e-6)


def batch_norm_std(bn: nn.BatchNorm1d | nn.BatchNorm2d, darknet_build: str = "gpu") -> Tensor:
    """(C,) float64: what the inference batch norm divides ``x - rolling_mean`` by.

    "gpu": DARKNET(batchnorm_layer.c / cuDNN): ``sqrt(var + 1e-5)``, BatchNorm2d's formula.
    "cpu": DARKNET(blas.c:normalize_cpu): a stock CPU build's ``sqrt(var) + .000001`` (epsilon outside the sqrt).
    """
    variance = bn.running_var.double()
    if darknet_build == "cpu":
        return variance.sqrt() + STOCK_CPU_BN_EPS
    return (variance + bn.eps).sqrt()


def stock_cpu_batch_norm(x: Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> Tensor:
    """`bn` at inference as a stock CPU build computes it: ``scales * ((x - mean) / (sqrt(var) + 1e-6)) + biases``.

    DARKNET(blas.c:normalize_cpu, then scale_bias, add_bias): ``x - mean`` in float, the division in double
    (``sqrt`` returns a double), stored as float, then scaled and shifted in float.
    x: (B, C) or (B, C, H, W).
    """
    shape = (1, -1) + (1,) * (x.dim() - 2)   # broadcast over C
    normalised = ((x - bn.running_mean.view(shape)).double() / batch_norm_std(bn, "cpu").view(shape)).to(x.dtype)
    return normalised * bn.weight.view(shape) + bn.bias.view(shape)


class _Affine(DarknetLayer):
    """An affine op (conv or linear), then batch norm or a bias, then the activation.

    `darknet_build` "cpu" (set through `Darknet.darknet_build`): the batch norm of a stock CPU build at inference.
    `training_build` (set for one step by `train_step(..., training_build=)`): "gpu", batch norm in training as the
    GPU/cuDNN builds (`nn.BatchNorm2d`: biased batch variance, exact gradients); "alexeyab-cpu", as AlexeyAB's CPU
    build (`batchnorm_cpu`: unbiased variance, rolling `cpu_build_momentum`, its inexact backward).
    DIVERGES: pjreddie's stock CPU build in training (sqrt(var) + .000001, rolling .99/.01) is not reproduced.
    """

    darknet_build = "gpu"
    training_build = "gpu"
    cpu_build_momentum = 0.1          # DARKNET(AlexeyAB batchnorm_layer.c:forward_batchnorm_layer): .9/.1
    cpu_build_bias_gradient = False   # DARKNET(AlexeyAB convolutional_layer.c:backward_convolutional_layer)

    def __init__(self, op: nn.Module, batch_norm: nn.Module | None, activation: Activation):
        super().__init__()
        self.op = op
        self.bn = batch_norm
        self.activation = activation

    def pre_activation(self, x: Tensor) -> Tensor:
        x = self.op(x)
        if self.bn is None:
            return x
        if self.darknet_build == "cpu" and not self.training:
            return stock_cpu_batch_norm(x, self.bn)
        if self.training_build == "alexeyab-cpu" and self.training:
            return cpu_build_batch_norm(x, self.bn, self.cpu_build_momentum, self.cpu_build_bias_gradient)
        return self.bn(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.pre_activation(x))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise as a fresh Darknet net: weights scaled by sqrt(2/fan_in), zero biases.

        DIVERGES: rolling variances start at 1 (Darknet callocs them to 0), so an untrained net is finite.
        """
        weight = self.op.weight
        scale = (2.0 / weight[0].numel()) ** 0.5
        with torch.no_grad():
            weight.copy_(scale * self._unit_noise(weight.shape, generator))
            self.biases().zero_()
            if self.bn is not None:
                self.bn.reset_parameters()

    @staticmethod
    def _unit_noise(shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        raise NotImplementedError

    def biases(self) -> Tensor:
        # DARKNET(parser.c:save_convolutional_weights): with batch norm the stored "biases" are its beta
        return self.bn.bias if self.bn is not None else self.op.bias

    def batch_norm_tensors(self) -> list[Tensor]:
        if self.bn is None:
            return []
        return [self.bn.weight, self.bn.running_mean, self.bn.running_var]

    def trained_tensors(self) -> dict[str, nn.Parameter]:
        # DARKNET(convolutional_layer.c:update_convolutional_layer): weights, biases and, with BN, scales
        named = {"weights": self.op.weight, "biases": self.biases()}
        if self.bn is not None:
            named["scales"] = self.bn.weight
        return named


class ConvolutionalLayer(_Affine):
    clips_weights = True   # DARKNET(convolutional_kernels.cu:update_convolutional_layer_gpu): only conv weights

    @staticmethod
    def _unit_noise(shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        return torch.randn(shape, generator=generator)  # DARKNET(convolutional_layer.c:make_convolutional_layer)

    def darknet_tensors(self) -> list[Tensor]:
        # DARKNET(parser.c:save_convolutional_weights): biases, [scales, mean, variance], weights
        return [self.biases(), *self.batch_norm_tensors(), self.op.weight]

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        size, stride, groups = self.op.kernel_size[0], self.op.stride[1], self.op.groups   # stride: stride_x
        after = net.shapes[index]
        # DARKNET(convolutional_layer.c:make_convolutional_layer): 2*n*size*size*c/groups*out_h*out_w in double
        bflops = 2.0 * self.op.out_channels * size * size * before.c / groups * after.h * after.w / 1e9
        return (f"conv  {self.op.out_channels:5d} {size:2d} x{size:2d} /{stride:2d}  {dims(before)}   ->  "
                f"{dims(after)}  {bflops:5.3f} BFLOPs")


class ConnectedLayer(_Affine):
    cpu_build_momentum = 0.05        # DARKNET(AlexeyAB connected_layer.c:forward_connected_layer): .95/.05
    cpu_build_bias_gradient = True   # DARKNET(AlexeyAB connected_layer.c:backward_connected_layer): always

    @staticmethod
    def _unit_noise(shape: torch.Size, generator: torch.Generator | None) -> Tensor:
        return 2 * torch.rand(shape, generator=generator) - 1  # DARKNET(connected_layer.c:make_connected_layer)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.flatten(1)).view(x.shape[0], -1, 1, 1)

    def darknet_tensors(self) -> list[Tensor]:
        # DARKNET(parser.c:save_connected_weights): biases, weights, then [scales, mean, variance]
        return [self.biases(), self.op.weight, *self.batch_norm_tensors()]

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"connected                            {before.size:4d}  ->  {net.shapes[index].size:4d}"


@register("convolutional", "conv")
def build_convolutional(s: Section, ctx: BuildContext) -> tuple[ConvolutionalLayer, Shape]:
    shape = ctx.input_shape
    filters = s.get_int("filters", 1, minimum=1)
    size = s.get_int("size", 1, minimum=1)
    stride = s.get_int("stride", 1, minimum=1)
    # DARKNET(AlexeyAB parser.c:parse_convolutional): stride_x, stride_y (default: stride), dilation (1 for size 1)
    stride_x = s.get_int("stride_x", stride, minimum=1)
    stride_y = s.get_int("stride_y", stride, minimum=1)
    dilation = s.get_int("dilation", 1, minimum=1) if size > 1 else 1
    groups = s.get_int("groups", 1, minimum=1)
    padding = s.get_int("padding", 0, minimum=0)
    if s.get_int("pad", 0):
        padding = size // 2  # DARKNET(parser.c:parse_convolutional): pad=1 overrides padding with size/2
    batch_normalize = s.get_int("batch_normalize", 0)
    activation = activation_from(s)
    _refuse_alexeyab_convolutions(s)
    if shape.c % groups or filters % groups:
        raise s.error(f"invalid geometry: filters={filters} size={size} stride={stride} groups={groups} "
                      f"for {shape.c} input channels", "groups")
    across = window_output(s, shape, size, stride_x, 2 * padding)
    down = window_output(s, shape, size, stride_y, 2 * padding)
    if dilation > 1:
        # DARKNET(AlexeyAB convolutional_layer.c:forward_convolutional_layer): im2col pads by pad*dilation, but the
        # output keeps the undilated size, so only geometries where both agree ("same" convs) are well defined
        span = dilation * (size - 1) + 1
        dilated = ((shape.h + 2 * padding * dilation - span) // stride_y + 1,
                   (shape.w + 2 * padding * dilation - span) // stride_x + 1)
        if dilated != (down.h, across.w):
            raise UnsupportedError(f"{s.where('dilation')}: dilation={dilation} with size={size} padding={padding} "
                                   f"gives a {dilated[1]}x{dilated[0]} map where AlexeyAB's Darknet allocates "
                                   f"{across.w}x{down.h}: not implemented")
    ctx.reserve(s, filters * (shape.c // groups * size * size + 4), f"filters={filters} with size={size}", "filters")
    if padding:
        ctx.reserve(s, shape.c * (shape.h + 2 * padding) * (shape.w + 2 * padding), "the zero-padded input", "pad")
    conv = _affine_op(ctx, nn.Conv2d, shape.c, filters, size, (stride_y, stride_x), padding * dilation,
                      dilation=dilation, groups=groups, bias=not batch_normalize)
    bn = nn.BatchNorm2d(filters, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_normalize else None
    return ConvolutionalLayer(conv, bn, activation), Shape(filters, down.h, across.w)


# AlexeyAB's [convolutional] keys that change the result and are not implemented: key -> what it does
_UNSUPPORTED_CONVOLUTION_KEYS = {
    "antialiasing": "a blur after a strided convolution",
    "binary": "binarised weights",
    "xnor": "XNOR (binarised inputs and weights)",
    "sway": "deformable (sway) convolution",
    "rotate": "deformable (rotate) convolution",
    "stretch": "deformable (stretch) convolution",
    "stretch_sway": "deformable (stretch_sway) convolution",
    "flipped": "weights stored transposed",
}


def _refuse_alexeyab_convolutions(s: Section) -> None:
    """An UnsupportedError naming file:line for the AlexeyAB conv keys above when set, and for share_index."""
    if s.has("share_index"):
        # DARKNET(AlexeyAB parser.c:parse_convolutional): the layer uses layer share_index's weights
        raise UnsupportedError(f"{s.where('share_index')}: share_index (weights shared with another layer) is not "
                               f"implemented")
    for key, what in _UNSUPPORTED_CONVOLUTION_KEYS.items():
        if s.get_int(key, 0):
            raise UnsupportedError(f"{s.where(key)}: {key}={s.raw(key)} ({what}) is not implemented")
    s.get_int("bin_output", 0)   # DARKNET(AlexeyAB parser.c:parse_convolutional): only used with xnor=1


def _affine_op(ctx: BuildContext, module_class: type[nn.Module], *args, **kwargs) -> nn.Module:
    """`module_class(*args, **kwargs)`; when the build defers initialisation (`ctx.deferred_init`, a net
    that a weights file will fill), the module with its parameters allocated but not initialised,
    noted in `ctx.deferred_init` so that `Darknet.initialise` can still run torch's init on it."""
    if ctx.deferred_init is None:
        return module_class(*args, **kwargs)
    module = module_class(*args, device="meta", **kwargs)   # its init runs on meta tensors: no work, no draws
    for name, parameter in list(module.named_parameters(recurse=False)):
        # torch.empty, not Module.to_empty or empty_like: those import sympy (0.25 s) for meta tensors
        setattr(module, name, nn.Parameter(torch.empty(parameter.shape, dtype=parameter.dtype),
                                           parameter.requires_grad))
    ctx.deferred_init.append(module)
    return module


def window_output(s: Section, shape: Shape, size: int, stride: int, total_padding: int) -> Shape:
    """The output of a sliding window (conv, maxpool): DARKNET(convolutional_layer.c:convolutional_out_height)."""
    out_h = (shape.h + total_padding - size) // stride + 1
    out_w = (shape.w + total_padding - size) // stride + 1
    if out_h < 1 or out_w < 1:
        raise s.error(f"size={size} stride={stride} gives a {out_w}x{out_h} output for the {shape.w}x{shape.h} "
                      f"input", "size")
    return Shape(shape.c, out_h, out_w)


@register("connected", "conn")
def build_connected(s: Section, ctx: BuildContext) -> tuple[ConnectedLayer, Shape]:
    inputs = ctx.input_shape.size
    output = s.get_int("output", 1, minimum=1)
    batch_normalize = s.get_int("batch_normalize", 0)
    activation = activation_from(s)
    ctx.reserve(s, output * (inputs + 4), f"output={output} for {inputs} inputs", "output")
    linear = _affine_op(ctx, nn.Linear, inputs, output, bias=not batch_normalize)
    bn = nn.BatchNorm1d(output, eps=BN_EPS, momentum=BN_MOMENTUM) if batch_normalize else None
    return ConnectedLayer(linear, bn, activation), Shape(output, 1, 1)
