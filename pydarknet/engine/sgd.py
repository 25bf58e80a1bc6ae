"""Darknet's SGD: momentum and weight decay kept in per-tensor "update" arrays.

DARKNET(convolutional_layer.c:update_convolutional_layer, connected_layer.c:update_connected_layer).
Darknet does not keep gradients and momentum apart: every weight tensor ``W`` has one array ``dW``
(`weight_updates`, `bias_updates`, `scale_updates`) that each backward *adds* its contribution
into, in Darknet's sign convention (the negative gradient, summed over the images, never averaged).
At an update, with ``B`` images per update and the rate ``lr`` of `get_current_rate`::

    dW += -decay * B * W       (conv/connected weights only; not biases, not BN scales)
    W  += lr * scale / B * dW  (scale = the layer's `learning_rate=` option)
    dW *= momentum             (what is left is the momentum carried into the next batches)

`DarknetSGD` is a `torch.optim.Optimizer` that keeps exactly these arrays as its state, so its
`state_dict()` round-trips them. PyTorch's ``.grad`` is the positive gradient, so
``dW -= p.grad`` moves it into Darknet's convention (`accumulate`).

With `adam=1` in `[net]` the tensors of `[convolutional]` layers (weights, biases and scales alike) follow
AlexeyAB's Adam instead (DARKNET(AlexeyAB blas_kernels.cu:adam_update_gpu), t = the batch number)::

    dW += -decay * B * W;  m = B1*m + (1-B1)*dW;  v = B2*v + (1-B2)*dW^2
    W  += lr * scale * (m / (1 - B1^t)) / (sqrt(v / (1 - B2^t)) + eps);  dW = 0

Other layers (e.g. connected) keep the SGD update, as in AlexeyAB (only its conv layer has `adam`).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..cfloat import f32
from ..layers.conv import ConvolutionalLayer
from .lr import get_current_batch


class DarknetSGD(torch.optim.Optimizer):
    """SGD with Darknet's update arrays for every layer of a `Darknet` net that has trained tensors.

    One parameter group per (layer, tensor) of `layer.trained_tensors()`, with the extra keys `layer`
    (index), `name` (`weights`/`biases`/`scales`), `learning_rate_scale`, `decay` (0 except for
    weights) and `clip` (0 except for the weights of layers that `clips_weights`).
    `lr` is the network rate of the coming update (set it with `set_rate`). `momentum` and
    `batch` (images per update) are the same for every group.

    Usage: backward (``.grad`` filled), then `accumulate()` once per mini-batch, then `step()`
    every `subdivisions` mini-batches (`step` also accumulates what is left in ``.grad``).
    """

    def __init__(self, net: nn.Module):
        options = net.options
        self.net = net   # Adam's t is the net's batch number at the update
        groups = []
        for index, layer in enumerate(net.layers):
            # DARKNET(AlexeyAB convolutional_layer.c:make_convolutional_layer): only conv layers take `adam`
            adam = bool(options.adam) and isinstance(layer, ConvolutionalLayer)
            for name, param in layer.trained_tensors().items():
                is_weights = name == "weights"
                groups.append({
                    "params": [param], "layer": index, "name": name, "adam": adam,
                    "learning_rate_scale": net.flags[index].learning_rate,
                    # DARKNET(AlexeyAB convolutional_kernels.cu:update_convolutional_layer_gpu): Adam decays all
                    "decay": options.decay if is_weights or adam else 0.0,
                    "clip": options.clip if is_weights and layer.clips_weights else 0.0,
                })
        # DARKNET(network.c:update_network): B = net->batch*subdivisions, the images per update
        super().__init__(groups, {"lr": options.learning_rate, "momentum": options.momentum,
                                  "batch": options.images_per_update})

    def update_array(self, param: Tensor) -> Tensor:
        """Darknet's update array of `param` (same shape; negative-gradient convention), created at 0."""
        state = self.state[param]
        if "update" not in state:
            state["update"] = torch.zeros_like(param)
        return state["update"]

    @torch.no_grad()
    def accumulate(self) -> None:
        """Move every ``.grad`` into the update arrays (``dW -= grad``) and clear it.

        DARKNET(convolutional_layer.c:backward_convolutional_layer): backward adds into the update
        arrays, so mini-batches of one update (`subdivisions`) sum up on top of the momentum.
        """
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self.update_array(param).sub_(param.grad)
                    param.grad = None

    def updates(self) -> dict[int, dict[str, Tensor]]:
        """The current update arrays by layer index and Darknet name (live tensors, not copies)."""
        named: dict[int, dict[str, Tensor]] = {}
        for group in self.param_groups:
            named.setdefault(group["layer"], {})[group["name"]] = self.update_array(group["params"][0])
        return named

    def set_rate(self, learning_rate: float) -> None:
        """The network learning rate of the next `step` (before each layer's `learning_rate_scale`)."""
        for group in self.param_groups:
            group["lr"] = learning_rate

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        """One Darknet update of every tensor: decay, ``W += lr*scale/B * dW``, ``dW *= momentum``."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.accumulate()
        for group in self.param_groups:
            batch = group["batch"]
            rate = f32(f32(group["lr"]) * f32(group["learning_rate_scale"]))
            for param in group["params"]:
                update = self.update_array(param)
                if group["decay"]:
                    # DARKNET(convolutional_layer.c:update_convolutional_layer): the decay goes into the
                    # update array, so it is scaled by lr/B like the gradient and carried by the momentum
                    update.add_(param, alpha=f32(-f32(group["decay"]) * batch))
                if group["adam"]:
                    self._adam(param, update, rate)
                else:
                    param.add_(update, alpha=f32(rate / batch))
                    update.mul_(group["momentum"])
                if group["clip"]:
                    param.clamp_(-group["clip"], group["clip"])
        return loss

    def _adam(self, param: Tensor, update: Tensor, rate: float) -> None:
        """DARKNET(AlexeyAB blas_kernels.cu:adam_update_gpu, adam_kernel) on a decayed update array, in float32."""
        options = self.net.options
        beta1, beta2 = np.float32(options.B1), np.float32(options.B2)
        # DARKNET(AlexeyAB network_kernels.cu:update_network_gpu): l.t = get_current_batch(net)
        t = np.float32(get_current_batch(self.net.seen, options.images_per_update))
        state = self.state[param]
        if "m" not in state:
            state["m"], state["v"] = torch.zeros_like(param), torch.zeros_like(param)
        m, v = state["m"], state["v"]
        m.mul_(beta1).add_(update, alpha=f32(1 - beta1))
        v.mul_(beta2).add_(update * update, alpha=f32(1 - beta2))
        m_hat = m / f32(np.float32(1) - beta1 ** t)   # 1.f - powf(B1, t)
        v_hat = v / f32(np.float32(1) - beta2 ** t)
        param.add_(m_hat.mul_(rate).div_(v_hat.sqrt_().add_(f32(options.eps))))   # x + rate * mhat / (sqrtf(vhat) + eps)
        update.zero_()   # DARKNET(AlexeyAB blas_kernels.cu:adam_update_gpu): fill_ongpu(n, 0, d, 1): no momentum
