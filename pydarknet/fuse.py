"""Inference-only copies of a Darknet net: batch norm folded into the preceding conv / connected op.

At inference batch norm is an affine map per channel with the rolling statistics,
``y = gamma * (x - mean) / sqrt(var + eps) + beta``, so it folds into the op before it::

    w' = w * gamma / sqrt(var + eps)          (per output channel)
    b' = beta - mean * gamma / sqrt(var + eps)   (+ the op's own bias, if it had one)

which saves one pass over every feature map. A folded layer no longer holds Darknet's tensors
(the `.weights` format stores beta, gamma, mean and variance apart), so a fused net refuses to be
saved as, or loaded from, Darknet weights, and refuses training mode (which needs batch statistics).

>>> from pydarknet.network import load_network          # doctest: +SKIP
>>> net = fuse_for_inference(load_network("yolov2-voc.cfg", "yolov2-voc.weights", "cpu"))  # doctest: +SKIP
>>> with torch.inference_mode():                         # doctest: +SKIP
...     region = net(images)                             # (B, 5, 25, 13, 13), as the unfused net
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .layers.conv import ConnectedLayer, ConvolutionalLayer, batch_norm_std
from .network import Darknet


class FusedNetworkError(RuntimeError):
    """Something that needs Darknet's own tensors (weights io, training) was asked of a fused net."""


class _FusedMixin:
    """What sets a folded layer apart from the layer it was made from."""

    def darknet_tensors(self) -> list[Tensor]:
        raise FusedNetworkError("this net was fused for inference (batch norm folded into the weights): its "
                                "tensors no longer follow the Darknet weights layout; save or load the unfused net")

    def train(self, mode: bool = True):
        if mode:
            raise FusedNetworkError("a net fused for inference cannot be trained (its batch norm is folded away); "
                                    "train the unfused net")
        return super().train(False)


class FusedConvolutionalLayer(_FusedMixin, ConvolutionalLayer):
    """A `[convolutional]` layer whose batch norm was folded into the conv weights and bias."""


class FusedConnectedLayer(_FusedMixin, ConnectedLayer):
    """A `[connected]` layer whose batch norm was folded into the linear weights and bias."""


_FUSED_CLASS = {ConvolutionalLayer: FusedConvolutionalLayer, ConnectedLayer: FusedConnectedLayer}


@torch.no_grad()
def fold_batch_norm(op: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d,
                    in_place: bool = False, darknet_build: str = "gpu") -> nn.Conv2d | nn.Linear:
    """A copy of `op` (`op` itself with `in_place`) with a bias that computes ``bn(op(x))`` with `bn`'s
    rolling statistics; with `darknet_build` "cpu", the batch norm of a stock CPU build (`batch_norm_std`).

    The per-channel factor and the bias are computed in float64; the weights are scaled by the factor
    rounded to float32, in place (two roundings, <= 1.2e-7 relative; folding yolov2-voc in place takes
    0.08 s this way, 0.27-0.33 s through a float64 copy of its weights).
    """
    # DARKNET(batchnorm_layer.c, cuDNN inference): epsilon inside the sqrt, as BatchNorm2d;
    # DARKNET(blas.c:normalize_cpu) with darknet_build "cpu": sqrt(var) + .000001
    factor = bn.weight.double() / batch_norm_std(bn, darknet_build)                       # (C_out,)
    bias = op.bias.double() if op.bias is not None else torch.zeros_like(factor)
    fused = op if in_place else copy.deepcopy(op)
    if fused.bias is None:
        fused.bias = nn.Parameter(torch.empty_like(bn.bias))
    shape = (-1,) + (1,) * (op.weight.dim() - 1)                                        # broadcast over C_out
    fused.weight.mul_(factor.float().view(shape))
    fused.bias.copy_(bn.bias.double() + (bias - bn.running_mean.double()) * factor)
    return fused


def fuse_layer(layer: nn.Module, in_place: bool = False) -> nn.Module:
    """The folded equivalent of a conv/connected layer with batch norm; any other layer unchanged.
    With `in_place` the folded layer holds the layer's own op (whose tensors are overwritten)."""
    fused_class = _FUSED_CLASS.get(type(layer))
    if fused_class is None or layer.bn is None:
        return layer
    return fused_class(fold_batch_norm(layer.op, layer.bn, in_place, layer.darknet_build), None, layer.activation)


def _contiguous_inputs(_module: nn.Module, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return tuple(x.contiguous() for x in inputs)


def give_heads_nchw_inputs(net: Darknet) -> None:
    """Make the detection heads of `net` (`outputs_detections`: [region], [yolo]) read NCHW-contiguous
    inputs whatever layout the layers before them write: the heads slice and reduce along the channels
    (the WordTree softmax of yolo9000 at 544 takes 2x as long on NHWC strides), and it makes the final
    output contiguous."""
    for layer in net.layers:
        if layer.outputs_detections:
            layer.register_forward_pre_hook(_contiguous_inputs)


def fuse_for_inference(net: Darknet, channels_last: bool = True, in_place: bool = False) -> Darknet:
    """An eval-mode deep copy of `net` with every batch norm folded; `net` itself is left untouched,
    unless `in_place`: then `net` is folded itself (cheaper, for a net nothing else uses) and returned.

    With `channels_last` the conv weights are stored NHWC, so oneDNN (CPU) and cuDNN (tensor cores)
    run the convs in their preferred layout (the first conv turns a plain NCHW input to NHWC); every
    layer's output keeps its (B, C, H, W) shape and values, only the strides differ. Fed the same input,
    a fused layer matches the unfused one to float32 rounding (<= 2e-6 of its largest value); end to
    end that grows with depth (1.4e-5 at mini-yolov2-voc's last layers), as between PyTorch and Darknet.
    """
    fused = net if in_place else copy.deepcopy(net)
    for index, layer in enumerate(fused.layers):
        fused.layers[index] = fuse_layer(layer, in_place=True)   # on the copy, or on `net` when in_place
    fused.eval().requires_grad_(False)
    if not channels_last:
        return fused
    give_heads_nchw_inputs(fused)
    return fused.to(memory_format=torch.channels_last)
