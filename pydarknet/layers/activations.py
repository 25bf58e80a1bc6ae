"""Darknet's activation functions by their cfg names (DARKNET(activations.c:get_activation))."""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    # DARKNET(activations.h:stair_activate): even floors keep the floor, odd ones follow x - n + floor(n/2)
    return torch.where(torch.remainder(n, 2) == 0, torch.floor(x / 2), (x - n) + torch.floor(x / 2))


def _plse(x: Tensor) -> Tensor:
    return torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))


def _lhtan(x: Tensor) -> Tensor:
    return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))


ACTIVATIONS = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2 * torch.sigmoid(x) - 1,
    "relu": torch.relu,
    "elu": nn.functional.elu,
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * torch.expm1(x)),
    "relie": lambda x: nn.functional.leaky_relu(x, 0.01),
    "ramp": lambda x: torch.relu(x) + 0.1 * x,
    "leaky": lambda x: nn.functional.leaky_relu(x, 0.1),  # DARKNET(activations.h:leaky_activate): slope .1
    "tanh": torch.tanh,
    "hardtan": lambda x: torch.clamp(x, -1, 1),
    "lhtan": _lhtan,
    "plse": _plse,
    "stair": _stair,
}


class Activation(nn.Module):
    """A named Darknet activation as a module, so hooks can reach it (e.g. to pin leaky slopes)."""

    def __init__(self, name: str):
        super().__init__()
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation '{name}'; known: {', '.join(sorted(ACTIVATIONS))}")
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def activation_from(section, key: str = "activation", default: str = "logistic") -> Activation:
    name = section.get_str(key, default)
    try:
        return Activation(name)
    except ValueError as exc:
        raise section.error(str(exc), key) from None
