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
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..cfloat import f32


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
        if options.adam:
            # DIVERGES: Darknet's adam branch (which also decays biases and scales) is not reproduced.
            raise net.net_section.error("adam=1 is not implemented; DarknetSGD reproduces Darknet's SGD only", "adam")
        groups = []
        for index, layer in enumerate(net.layers):
            for name, param in layer.trained_tensors().items():
                is_weights = name == "weights"
                groups.append({
                    "params": [param], "layer": index, "name": name,
                    "learning_rate_scale": net.flags[index].learning_rate,
                    "decay": options.decay if is_weights else 0.0,
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
                param.add_(update, alpha=f32(rate / batch))
                update.mul_(group["momentum"])
                if group["clip"]:
                    param.clamp_(-group["clip"], group["clip"])
        return loss
