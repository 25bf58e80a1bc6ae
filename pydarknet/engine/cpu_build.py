"""A training step as AlexeyAB's CPU build computes it (`train_step(..., training_build="alexeyab-cpu")`).

Two things differ from its GPU/cuDNN build, which `train_step` follows by default:

- batch norm in training (`layers.batchnorm_cpu`: unbiased batch variance, rolling .9/.1, no BN-bias gradient in
  convolutions, an inexact backward);
- a convolution's backward OVERWRITES the delta of the layer below it: DARKNET(AlexeyAB col2im.c:col2im_cpu_ext)
  starts with ``caffe_set(height*width*channels, 0, data_im)`` on `state.delta`, the delta of layer i-1. The
  backward runs from the top, so whatever the layers above conv i (a route, a shortcut) had added into layer i-1's
  delta is lost: only conv i's gradient reaches layer i-1. (Its GPU build accumulates: col2im_gpu_ext's ``+=``,
  cudnnConvolutionBackwardData with beta 1.) Reproduced by giving those other readers of layer i-1 a detached copy.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from torch import nn

from ..errors import UnsupportedError
from ..layers.conv import ConvolutionalLayer

if TYPE_CHECKING:
    from ..network import Darknet

TRAINING_BUILDS = ("gpu", "alexeyab-cpu")


def overwritten_reads(net: Darknet) -> dict[int, set[int]]:
    """layer index -> the positions of its inputs whose gradient AlexeyAB's CPU build drops: inputs that are the
    output of a layer i-1 read by a convolution i other than this layer (module docstring)."""
    below_conv = {i - 1 for i, layer in enumerate(net.layers) if isinstance(layer, ConvolutionalLayer) and i > 0}
    dropped: dict[int, set[int]] = {}
    for j, sources in enumerate(net.sources):
        positions = {p for p, source in enumerate(sources) if source in below_conv and source != j - 1}
        if positions:
            dropped[j] = positions
    return dropped


@contextmanager
def training_build(net: Darknet, build: str) -> Iterator[None]:
    """Every batch-norm layer trains as `build` (TRAINING_BUILDS) for the duration; under "alexeyab-cpu" the
    gradients a convolution's backward overwrites are also dropped."""
    if build not in TRAINING_BUILDS:
        raise ValueError(f"training_build must be one of {', '.join(TRAINING_BUILDS)}, got {build!r}")
    layers = [layer for layer in net.layers if hasattr(layer, "training_build")]
    if build != "gpu":
        others = [i for i, layer in enumerate(net.layers)
                  if getattr(layer, "bn", None) is not None and not hasattr(layer, "training_build")]
        if others:
            raise UnsupportedError(f"{net.cfg_path}: training_build={build} is implemented for the batch norm of "
                                   f"[convolutional] and [connected] layers, not of layer {others[0]} "
                                   f"([{net.info[others[0]].kind}])")
    handles = []
    for layer in layers:
        layer.training_build = build
    if build == "alexeyab-cpu":
        handles = [net.layers[j].register_forward_pre_hook(_detach_inputs(positions))
                   for j, positions in overwritten_reads(net).items()]
    try:
        yield
    finally:
        for layer in layers:
            layer.training_build = "gpu"
        for handle in handles:
            handle.remove()


def _detach_inputs(positions: set[int]):
    def hook(_module: nn.Module, inputs: tuple) -> tuple:
        return tuple(x.detach() if p in positions else x for p, x in enumerate(inputs))
    return hook
