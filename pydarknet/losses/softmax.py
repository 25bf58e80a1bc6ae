"""The `[softmax]` layer's cross-entropy and the `[cost]` layers after it (classifier training).

DARKNET(softmax_layer.c:backward_softmax_layer): the delta ``truth - p`` reaches the softmax input
unchanged (cross-entropy shortcut: no softmax Jacobian, no temperature); a `[cost]` layer after the
softmax adds its L2 delta (cost_layer.c).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.classification import SECRET_NUM
from ..layers.structure import CostLayer

L2_COSTS = ("sse", "masked")


@dataclass
class ClassifierLoss:
    """What the loss layers of one mini-batch produce.

    delta: (B, n) the `[softmax]` layer's delta after the `[cost]` layers' backward, Darknet's
        negative gradient, applied unchanged to the softmax input.
    costs: each loss layer's cost summed over the mini-batch, the softmax first.
    """

    delta: Tensor
    costs: list[float]

    @property
    def cost(self) -> float:
        """DARKNET(network.c:calc_network_cost): the mean over the layers that have a cost."""
        return sum(self.costs) / len(self.costs)


def softmax_x_ent(probs: Tensor, truth: Tensor, masked: bool) -> tuple[Tensor, Tensor]:
    """Delta ``truth - p`` and error ``-log p`` where ``truth != 0``; both (B, n) like `probs`.

    DARKNET(blas.c:softmax_x_ent_cpu) with the mask of DARKNET(softmax_layer.c:forward_softmax_layer_gpu):
    with a tree (`masked`) entries whose truth is SECRET_NUM get neither delta nor error.
    DIVERGES: Darknet's CPU build applies no mask, so a masked group there pushes every logit by -1234.
    """
    delta = truth - probs
    error = torch.where(truth != 0, -torch.log(probs), torch.zeros_like(probs))
    if masked:
        keep = truth != SECRET_NUM
        delta = torch.where(keep, delta, torch.zeros_like(delta))
        error = torch.where(keep, error, torch.zeros_like(error))
    return delta, error


def l2_cost(layer: CostLayer, probs: Tensor, truth: Tensor) -> tuple[Tensor, Tensor]:
    """A `[cost]` layer on the softmax output: its delta (scaled for the backward) and error, (B, n).

    DARKNET(cost_layer.c:forward_cost_layer): ``diff = truth - p``, error ``diff**2``; `type=masked`
    first sets p to SECRET_NUM where the truth is, so masked entries give 0; the backward adds
    ``scale * diff`` to the softmax delta (cost_layer.c:backward_cost_layer).
    DIVERGES: the GPU build forgets to mask the cost layer's own delta; the CPU rule is kept.
    """
    if layer.cost_type not in L2_COSTS:
        raise NotImplementedError(f"[cost] type={layer.cost_type} is not implemented (only {', '.join(L2_COSTS)})")
    diff = truth - probs
    if layer.cost_type == "masked":
        diff = torch.where(truth == SECRET_NUM, torch.zeros_like(diff), diff)
    return layer.scale * diff, diff * diff


def classifier_loss(probs: Tensor, truth: Tensor, tree: bool, cost_layers: Sequence[CostLayer] = ()) -> ClassifierLoss:
    """The deltas and costs of a classifier's `[softmax]` layer (`tree`: it has a WordTree) and the
    `[cost]` layers after it. probs, truth: (B, n)."""
    with torch.no_grad():
        delta, error = softmax_x_ent(probs, truth, masked=tree)
        costs = [float(error.double().sum())]
        for layer in cost_layers:
            layer_delta, layer_error = l2_cost(layer, probs, truth)
            delta = delta + layer_delta
            costs.append(float(layer_error.double().sum()))
    return ClassifierLoss(delta, costs)
