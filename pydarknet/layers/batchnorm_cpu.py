"""Batch norm in training as AlexeyAB's CPU build computes it (`train_step(..., training_build="alexeyab-cpu")`).

DARKNET(AlexeyAB batchnorm_layer.c:forward_batchnorm_layer, backward_batchnorm_layer; blas.c) with ``N = B*H*W``:

- forward: ``x_norm = (x - mean) / sqrt(var + .00001)`` with the UNBIASED batch variance ``var = Σ(x-mean)²/(N-1)``
  (its GPU/cuDNN build normalises with the biased one, as `nn.BatchNorm2d`);
- rolling statistics ``.9·rolling + .1·batch`` for a convolution, ``.95/.05`` for a `[connected]` layer
  (DARKNET(connected_layer.c:forward_connected_layer)); cuDNN: ``.99/.01``;
- backward: ``scale_updates += Σ dy·x_norm``; no ``bias_updates`` for a convolution (DARKNET(convolutional_layer.c:
  backward_convolutional_layer) calls backward_bias only without batch norm), the bias of a `[connected]` layer gets
  ``Σ dy``; the input delta by pjreddie's formulas, which are not the derivative of this forward::

      dxn = dy·scales
      mean_delta = Σ dxn · (-1/sqrt(var + .00001))
      var_delta  = Σ dxn·(x - mean) · (-.5)·(var + .00001)^(-3/2)
      dx = dxn / (sqrt(var) + .00001) + var_delta·2·(x - mean)/N + mean_delta/N    (epsilon OUTSIDE the sqrt)

Every sum over the batch (means, variances, the backward's sums) is accumulated as the C loops do: in float32, one
element after the other, image by image (`darknet_sum`). A float32 sum of 2·416·416 terms drifts by ~1e-4 relative;
the pairwise sums of torch would miss the build's statistics by that much.

Shapes: x (B, C, H, W) or (B, C); statistics (C,).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from ..cfloat import running_sum

CPU_BN_EPS = 1e-5   # DARKNET(AlexeyAB blas.c:normalize_cpu, batchnorm_layer.c:mean_delta_cpu): .00001f


def _per_channel(v: Tensor, x: Tensor) -> Tensor:
    return v.view((1, -1) + (1,) * (x.dim() - 2))


def darknet_sum(x: Tensor) -> Tensor:
    """(C,) per-channel sums of x (B, C, ...) accumulated sequentially in float32, image by image, then position by
    position: DARKNET(AlexeyAB blas.c:mean_cpu) ``mean[i] += x[j*filters*spatial + i*spatial + k]`` (and the sums
    of variance_cpu, backward_scale_cpu, mean_delta_cpu, variance_delta_cpu)."""
    rows = x.detach().transpose(0, 1).reshape(x.shape[1], -1).float().cpu().numpy()   # (C, B*spatial)
    return torch.from_numpy(np.ascontiguousarray(running_sum(rows, axis=1))).to(x.device)


def cpu_batch_statistics(x: Tensor) -> tuple[Tensor, Tensor]:
    """(mean, unbiased variance), (C,) each, of x as DARKNET(AlexeyAB blas.c:mean_cpu, variance_cpu): the sums
    times ``1./(B*spatial)`` and ``1./(B*spatial - 1)`` in float. (variance_cpu adds double squares ``pow(x - mean, 2)``
    into its float sum; float squares here: the sums agree within a few float ulps.)"""
    count = x.numel() // x.shape[1]
    mean = darknet_sum(x) * np.float32(1 / count)
    variance = darknet_sum((x.detach() - _per_channel(mean, x)) ** 2) * np.float32(1 / (count - 1))
    return mean, variance


class _CpuBuildBatchNorm(torch.autograd.Function):
    """scales·x_norm + biases with AlexeyAB's CPU-build statistics and inexact backward (module docstring)."""

    @staticmethod
    def forward(ctx, x: Tensor, scales: Tensor, biases: Tensor, mean: Tensor, variance: Tensor,
                bias_gradient: bool) -> Tensor:
        centred = x - _per_channel(mean, x)
        x_norm = centred / _per_channel(torch.sqrt(variance + CPU_BN_EPS), x)
        ctx.save_for_backward(centred, x_norm, variance, scales)
        ctx.bias_gradient = bias_gradient
        return x_norm * _per_channel(scales, x) + _per_channel(biases, x)

    @staticmethod
    def backward(ctx, dy: Tensor):
        centred, x_norm, variance, scales = ctx.saved_tensors
        count = dy.numel() // dy.shape[1]
        scales_grad = darknet_sum(dy * x_norm)
        # zero rather than None (the same update): DistributedDataParallel wants a gradient for every parameter
        biases_grad = darknet_sum(dy) if ctx.bias_gradient else torch.zeros_like(scales)
        dxn = dy * _per_channel(scales, dy)
        mean_delta = darknet_sum(dxn) * (-1 / torch.sqrt(variance + CPU_BN_EPS))
        variance_delta = darknet_sum(dxn * centred) * (-0.5 * (variance + CPU_BN_EPS) ** -1.5)
        # DARKNET(AlexeyAB batchnorm_layer.c:normalize_delta_cpu): epsilon outside the sqrt, N (not N-1) below
        dx = (dxn / _per_channel(torch.sqrt(variance) + CPU_BN_EPS, dy)
              + _per_channel(variance_delta, dy) * 2 * centred / count + _per_channel(mean_delta / count, dy))
        return dx, scales_grad, biases_grad, None, None, None


def cpu_build_batch_norm(x: Tensor, bn: nn.BatchNorm1d | nn.BatchNorm2d, momentum: float,
                         bias_gradient: bool) -> Tensor:
    """`bn` in training as AlexeyAB's CPU build: normalise x with its unbiased batch statistics, update the rolling
    ones with ``(1 - momentum)·rolling + momentum·batch``, and back-propagate as Darknet's CPU backward."""
    mean, variance = cpu_batch_statistics(x)
    with torch.no_grad():
        bn.running_mean.mul_(1 - momentum).add_(mean, alpha=momentum)
        bn.running_var.mul_(1 - momentum).add_(variance, alpha=momentum)
    return _CpuBuildBatchNorm.apply(x, bn.weight, bn.bias, mean, variance, bias_gradient)
