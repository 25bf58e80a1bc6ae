"""Darknet's activation functions by their cfg names (DARKNET(activations.c:get_activation)).

pjreddie's names and AlexeyAB's additions (`mish`, `hard_mish`, `swish`, `relu6`, `gelu`, `revleaky`), with
AlexeyAB's formulas (activations.h, activations.c).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import UnsupportedError

MISH_THRESHOLD = 20.0   # DARKNET(AlexeyAB activations.h:softplus_activate): softplus is x above it
# mish at inference runs on blocks of this many elements: each block's seven passes stay in the L3 cache, where over
# a whole 608x608x32 map (47 MB) they stream from memory (yolov4 at 608, 2 AVX2 cores: 954 -> 864 ms a forward)
MISH_BLOCK = 1 << 20
# AlexeyAB's activations that normalise across channels (a softmax or a sum over C per pixel)
CHANNEL_NORMALIZING = ("normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval")


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    # DARKNET(activations.h:stair_activate): even floors keep the floor, odd ones follow x - n + floor(n/2)
    return torch.where(torch.remainder(n, 2) == 0, torch.floor(x / 2), (x - n) + torch.floor(x / 2))


def _plse(x: Tensor) -> Tensor:
    return torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))


def _lhtan(x: Tensor) -> Tensor:
    return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))


def _mish(x: Tensor) -> Tensor:
    # DARKNET(AlexeyAB activations.c:activate_array_mish): x·tanh(softplus(x)), softplus x above 20, exp(x) below -20.
    # DIVERGES: other float32 roundings, within 1e-6 of AlexeyAB's logf(expf(x) + 1) (README §9 of reference-yolo)
    if (x.requires_grad and torch.is_grad_enabled()) or x.device.type != "cpu" or torch.jit.is_tracing():
        return nn.functional.mish(x)   # training: its analytic backward; GPU: one kernel; ONNX export: one node
    source = x if x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last) else x.contiguous()
    out = torch.empty_like(source)
    inputs, outputs = (t.as_strided((t.numel(),), (1,)) for t in (source, out))   # both in memory order
    scratch = torch.empty(min(MISH_BLOCK, x.numel()), dtype=x.dtype)
    for start in range(0, x.numel(), MISH_BLOCK):
        block = inputs[start:start + MISH_BLOCK]
        _mish_block(block, outputs[start:start + MISH_BLOCK], scratch[:block.numel()])
    return out


def _mish_block(x: Tensor, out: Tensor, scratch: Tensor) -> None:
    """mish(x) into `out`: tanh(log(1 + e^x)) = n / (n + 2) with n = e^x (e^x + 2), one exp and arithmetic in place,
    where torch's mish runs exp, log1p and tanh (76x76x128: 0.9 against 2.75 ms, 2 AVX2 cores). Above 20, n / (n + 2)
    rounds to 1 and mish is x, as Darknet's; below -20, x·e^x as Darknet's."""
    torch.clamp(x, max=MISH_THRESHOLD, out=out).exp_()
    out.mul_(torch.add(out, 2, out=scratch))
    out.div_(torch.add(out, 2, out=scratch)).mul_(x)


def _hard_mish(x: Tensor) -> Tensor:
    # DARKNET(AlexeyAB activations.c:hard_mish_yashas): x above 0, x²/2 + x on (-2, 0], 0 below
    return torch.where(x > 0, x, torch.where(x > -2, x * x / 2 + x, torch.zeros_like(x)))


def _gelu(x: Tensor) -> Tensor:
    # DARKNET(AlexeyAB activations.h:gelu_activate): the tanh approximation with its rounded constants
    return 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x.pow(3)))


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
    "mish": _mish,
    "hard_mish": _hard_mish,
    "swish": nn.functional.silu,   # DARKNET(AlexeyAB activations.c:activate_array_swish): x·logistic(x), fused
    # DIVERGES: AlexeyAB's CPU activate() has no RELU6 case and outputs 0; its GPU kernel clamps to [0, 6]
    "relu6": lambda x: torch.clamp(x, 0, 6),
    "gelu": _gelu,
    # DARKNET(AlexeyAB activations.c:activate): revleaky's forward is leaky's (only its gradient differs)
    "revleaky": lambda x: nn.functional.leaky_relu(x, 0.1),
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
    if name in CHANNEL_NORMALIZING:
        raise UnsupportedError(f"{section.where(key)}: activation '{name}' (AlexeyAB's normalisation across "
                               f"channels) is not implemented")
    try:
        return Activation(name)
    except ValueError as exc:
        raise section.error(str(exc), key) from None
