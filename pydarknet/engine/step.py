"""One Darknet training step on given tensors, for any task: its `Task` (engine/tasks.py) supplies the loss.

DARKNET(network.c:train_network_datum): ``seen += mini_batch``; training-mode forward (batch
statistics in every BN layer, rolling statistics updated); the loss layer writes its delta;
backward; and every `subdivisions` mini-batches an update (network.c:update_network).

Semantics are those of Darknet's GPU/cuDNN build by default: batch norm as PyTorch's training-mode
`BatchNorm2d` (biased batch variance to normalise, unbiased one into the rolling variance with
momentum 0.01: DARKNET(AlexeyAB batchnorm_layer.c:forward_batchnorm_layer_gpu) cudnnBatchNormalizationForwardTraining
with exponentialAverageFactor .01 and epsilon .00001), exact gradients (the BN bias included), and the loss layer's
backward of its task (the region's `region_input_gradient`; a [yolo] layer's delta straight into its input).
`training_build="alexeyab-cpu"` reproduces AlexeyAB's CPU build instead (`engine.cpu_build`): unbiased batch
variance, rolling .9/.1, no BN-bias gradient in convolutions, its inexact BN backward, and the deltas its conv
backward overwrites.

A net may have several loss layers (2-3 [yolo] layers at different depths): the forward returns each one's input
and output, and one `torch.autograd.backward` sends each layer's gradient into its input
(DARKNET(network.c:backward_network) adds every loss layer's delta into the layer below it).

Example::

    net = Darknet.from_cfg("yolov2-voc.cfg"); load_weights(net, "yolov2-voc.weights")
    optimizer = DarknetSGD(net)
    result = train_step(net, images, truths, optimizer)   # images (B, 3, H, W), truths (B, 30, 5)
    print(result.loss.stats_line(), result.learning_rate)
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from ..dialect import ALEXEYAB
from ..errors import CfgError
from ..layers.batchnorm_cpu import cpu_batch_statistics
from ..network import Darknet, NetOptions, network_mode
from . import cpu_build
from .lr import get_current_batch, net_rate
from .sgd import DarknetSGD

if TYPE_CHECKING:
    from .tasks import Task


@dataclass
class StepResult:
    """What one training step computed.

    output: the loss layer's output in training mode (detached): (B, A, 5+C, H, W) for a region
        layer, (B, n) probabilities for a classifier; for several loss layers ([yolo]) a dict
        layer index -> its output (B, A, 5+C, H, W).
    loss: the task's loss: `cost`, and `delta` (Darknet's negative gradient, shaped as `output`) or, for
        [yolo] layers, `deltas` and `costs` by layer index (a detection loss also has `stats_line()`).
    updates: per layer index, Darknet's update arrays (`weights`, `biases`, `scales`) right after
        this backward and before any update: the negative gradient summed over the images, plus the
        momentum and the earlier mini-batches of this update carried in them (copies).
    batch_mean, batch_variance: per BN layer index, (C,) statistics used to normalise (the variance
        is the biased one, divided by B*H*W; under training_build="alexeyab-cpu" the unbiased one).
    seen: images seen, including this mini-batch (`net.seen` after the step).
    learning_rate: the network rate of the update applied, or None when no update was applied.
    """
    output: Tensor | dict[int, Tensor]
    loss: Any
    updates: dict[int, dict[str, Tensor]]
    batch_mean: dict[int, Tensor]
    batch_variance: dict[int, Tensor]
    seen: int
    learning_rate: float | None


def current_rate(options: NetOptions, seen: int, rng: np.random.Generator | None = None,
                 signed_batch: bool = False) -> float:
    """DARKNET(network.c:get_current_rate) at ``batch_num = seen / images_per_update``; `signed_batch`: AlexeyAB's
    (its batch number is an int, so the `sigmoid` policy's ``batch_num - step`` can be negative)."""
    return net_rate(options, get_current_batch(seen, options.images_per_update), rng, signed_batch=signed_batch)


def update_due(options: NetOptions, seen: int) -> bool:
    """DARKNET(network.c:train_network_datum): update when ``(seen/mini_batch) % subdivisions == 0``."""
    return (seen // options.mini_batch) % options.subdivisions == 0


LayerTensors = Tensor | dict[int, Tensor]   # one loss layer's tensor, or one per loss layer by index


class TrainingForward(nn.Module):
    """What DistributedDataParallel wraps: the net up to its loss layer(s).

    `top` one index: forward(images (B, 3, H, W)) -> (the loss layer's input, e.g. the last conv output
    (B, A*(5+C), H', W'), and the loss layer's output). `top` a sequence of indices (the [yolo] layers):
    -> ({index: that layer's input}, {index: its output}), which cover every trained parameter below them.
    """

    def __init__(self, net: Darknet, top: int | Sequence[int]):
        super().__init__()
        self.net = net
        self.tops = [top] if isinstance(top, int) else sorted(top)
        self.several = not isinstance(top, int)
        self.top = self.tops[-1]
        self.sources = {index: net.sources[index][0] for index in self.tops}
        self.source = self.sources[self.top]

    def forward(self, images: Tensor) -> tuple[LayerTensors, LayerTensors]:
        outputs = self.net.run(images, keep={*self.sources.values(), *self.tops}, upto=self.top + 1)
        if not self.several:
            return outputs[self.source], outputs[self.top]
        return ({index: outputs[source] for index, source in self.sources.items()},
                {index: outputs[index] for index in self.tops})


def train_step(net: Darknet, images: Tensor, truths: Tensor, optimizer: DarknetSGD, *, task: Task | None = None,
               seen: int | None = None, apply: bool = True, rng: np.random.Generator | None = None,
               record: bool = True, model: nn.Module | None = None, amp: bool | torch.dtype = False,
               training_build: str = "gpu") -> StepResult:
    """Darknet's `train_network_datum` on one mini-batch.

    images: (B, 3, H, W) network input, B = the cfg's batch/subdivisions; truths: what the task's
    loss takes — (B, T, 5) rows ``x, y, w, h, class`` for a region layer (Darknet's `net->truth`; a
    row with x == 0 ends an image's list), (B, n) class truths for a classifier. `task` is the task
    (default: `task_for(net)`, region detector or classifier). `seen` replaces `net.seen` before the
    step. The gradients always go into the optimizer's update arrays; the update is applied when due
    and `apply` is true. `rng` feeds the `random` learning-rate policy. The net is in training mode
    during the step and returns to its previous mode after it. `record=False` skips the copies of the
    update arrays and the BN batch statistics (the training loop does not need them). `model` is the
    task's `TrainingForward`, possibly wrapped in DistributedDataParallel; `amp` runs the forward under
    bfloat16 autocast, on CUDA or the CPU (or under the autocast dtype given, e.g. torch.float16: no loss
    scaling); on a CPU with AMX, yolov2-tiny-voc at batch 8 steps 1.8x faster (0.95 vs 1.74 s).
    `training_build`: "gpu" (default) or "alexeyab-cpu", whose batch norm computes in training (module docstring).
    """
    from .tasks import task_for

    task = task if task is not None else task_for(net)
    options = net.options
    if images.shape[0] != options.mini_batch:
        raise CfgError(f"{images.shape[0]} images given; the cfg trains on mini-batches of "
                       f"batch/subdivisions = {options.mini_batch}")
    forward = model if model is not None else task.forward_module()
    if seen is not None:
        net.seen = seen
    # DARKNET(network.c:train_network_datum): seen counts this mini-batch before the forward,
    # so the region warm-up and the learning rate already see it
    net.seen += options.mini_batch

    statistics = _batch_statistics(net) if record else nullcontext(({}, {}))
    amp_dtype = amp if isinstance(amp, torch.dtype) else torch.bfloat16
    autocast = torch.autocast(images.device.type, dtype=amp_dtype, enabled=bool(amp))
    build = cpu_build.training_build(net, training_build)
    with network_mode(net, True), build, statistics as (batch_mean, batch_variance), autocast:
        raw, output = forward(images)
    output = _each(output, Tensor.float)
    loss = task.loss(_each(output, Tensor.detach), truths)
    trained = trained_parameters(net, task.top)
    if trained:
        inputs, gradients = _input_gradients(raw, task.input_gradient(output, loss))
        torch.autograd.backward(inputs, gradients, inputs=trained)
    optimizer.accumulate()
    updates = ({index: {name: u.clone() for name, u in named.items()} for index, named in optimizer.updates().items()}
               if record else {})

    rate = None
    if apply and update_due(options, net.seen):
        rate = current_rate(options, net.seen, rng, signed_batch=task.dialect is ALEXEYAB)
        optimizer.set_rate(rate)
        optimizer.step()
    return StepResult(_each(output, Tensor.detach), loss, updates, batch_mean, batch_variance, net.seen, rate)


def _each(tensors: LayerTensors, function) -> LayerTensors:
    """`function` applied to a tensor, or to each tensor of a dict."""
    return {index: function(t) for index, t in tensors.items()} if isinstance(tensors, dict) else function(tensors)


def _input_gradients(raw: LayerTensors, gradient: LayerTensors) -> tuple[list[Tensor], list[Tensor]]:
    """The loss layers' inputs and their gradients (shaped and typed as each input), in matching order."""
    if not isinstance(raw, dict):
        raw, gradient = {0: raw}, {0: gradient}
    inputs = list(raw.values())
    return inputs, [gradient[index].view_as(x).to(x.dtype) for index, x in raw.items()]


def trained_parameters(net: Darknet, top: int) -> list[nn.Parameter]:
    """Parameters that receive gradients: those of the layers below `top` and above the last
    `stopbackward=1` layer.

    DARKNET(network.c:backward_network): the backward runs from the top and stops *before* the
    first layer with stopbackward, so that layer and all below get nothing (their update arrays
    still decay and carry momentum at the update).
    """
    stopped = [i for i in range(top + 1) if net.flags[i].stopbackward]
    first = stopped[-1] + 1 if stopped else 0
    return [p for layer in net.layers[first:top] for p in layer.trained_tensors().values()]


@contextmanager
def _batch_statistics(net: Darknet) -> Iterator[tuple[dict[int, Tensor], dict[int, Tensor]]]:
    """Record every BN layer's batch mean and the variance it normalises with (C,) by layer index while open:
    the biased one, or the unbiased one under training_build "alexeyab-cpu"."""
    means: dict[int, Tensor] = {}
    variances: dict[int, Tensor] = {}

    def record(index: int, layer: nn.Module, x: Tensor) -> None:
        x = x.detach()
        if getattr(layer, "training_build", "gpu") == "alexeyab-cpu":
            means[index], variances[index] = cpu_batch_statistics(x)
            return
        dims = [d for d in range(x.dim()) if d != 1]      # all but the channels
        variances[index], means[index] = torch.var_mean(x, dim=dims, correction=0)

    def hook(index: int, layer: nn.Module):
        if hasattr(layer, "op"):   # conv, connected: the batch norm's input is the op's output
            return layer.op.register_forward_hook(lambda _m, _inputs, output: record(index, layer, output))
        return layer.bn.register_forward_hook(lambda _m, inputs, _output: record(index, layer, inputs[0]))

    handles = [hook(index, layer) for index, layer in enumerate(net.layers) if getattr(layer, "bn", None) is not None]
    try:
        yield means, variances
    finally:
        for handle in handles:
            handle.remove()
