"""Learning-rate policies of Darknet's `[net]` section, as pure functions of the batch number.

Darknet keeps `learning_rate`, `scale`, `scales`, `gamma` and `power` as C floats and evaluates
`pow`/`exp` in double, so the arithmetic below goes through float32 at the same points
(e.g. burn-in at batch 1 of 1000 gives 1.00000022e-15, not 1e-15).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..cfloat import f32
from ..errors import CfgError
from ..options import POLICIES, NetOptions

SGDR_PI = 3.14159265   # DARKNET(AlexeyAB network.c:get_current_rate): the constant its cosine uses

_SIZE_T_WRAP = 2 ** 64


def get_current_batch(seen: int, images_per_update: int) -> int:
    """Number of batches trained so far, DARKNET(network.c:get_current_batch).

    `seen` counts images and is incremented *before* the forward of a batch; `images_per_update` is
    `NetOptions.images_per_update` (Darknet's net->batch * net->subdivisions).
    """
    return seen // images_per_update


def _pow(base: float, exponent: float) -> float:
    """C `pow` in double: nan for a negative base with a fractional exponent, inf on overflow."""
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(base), np.float64(exponent)))


def _steps_rate(learning_rate: float, batch_num: int, steps: Sequence[int], scales: Sequence[float]) -> float:
    """Multiply by `scales[i]` for every `steps[i] <= batch_num`, stopping at the first step ahead."""
    if len(steps) != len(scales):
        raise CfgError(f"steps ({len(steps)}) and scales ({len(scales)}) must have the same length")
    rate = np.float32(learning_rate)
    for step_at, factor in zip(steps, scales):
        # DARKNET(network.c:get_current_rate): the scan stops at the first future step, even if a
        # later entry of an unsorted list has already been passed.
        if step_at > batch_num:
            break
        rate = np.float32(rate * np.float32(factor))
    return float(rate)


def _sigmoid_rate(learning_rate: float, batch_num: int, gamma: float, step: int, signed_batch: bool) -> float:
    """`lr / (1 + exp(gamma * (batch_num - step)))` with pjreddie's unsigned subtraction (or AlexeyAB's int)."""
    # DARKNET(network.c:get_current_rate): pjreddie's `batch_num - step` is size_t, so before `step` it wraps
    # to ~2^64 and the rate is 0 for gamma > 0 (lr for gamma < 0) instead of a sigmoid ramp;
    # AlexeyAB's batch_num is an int: the ramp is a sigmoid on both sides of `step`
    offset = f32(batch_num - step if signed_batch else (batch_num - step) % _SIZE_T_WRAP)
    with np.errstate(all="ignore"):
        exponent = np.float32(gamma) * np.float32(offset)
        return f32(f32(learning_rate) / (1.0 + np.exp(np.float64(exponent))))


def get_current_rate(policy: str, learning_rate: float, batch_num: int, *,
                     burn_in: int = 0, power: float = 4.0, gamma: float = 1.0,
                     step: int = 1, scale: float = 1.0,
                     steps: Sequence[int] = (), scales: Sequence[float] = (),
                     max_batches: int = 0, rng: np.random.Generator | None = None,
                     learning_rate_min: float = 0.00001, sgdr_cycle: int = 0, sgdr_mult: int = 2,
                     signed_batch: bool = False) -> float:
    """The learning rate Darknet uses for the update after `batch_num` batches.

    DARKNET(network.c:get_current_rate). Option names and defaults are those of the `[net]`
    section (parser.c:parse_net_options); `policy` is one of `POLICIES`. While
    `batch_num < burn_in` every policy returns `learning_rate * (batch_num/burn_in)**power`.
    The `random` policy draws `u ~ U[0, 1)` from `rng` (Darknet: `rand()/RAND_MAX`) and returns
    `learning_rate * u**power`. AlexeyAB's `sgdr` is a cosine from `learning_rate` down to
    `learning_rate_min` over cycles of `sgdr_cycle` batches, each `sgdr_mult` times the one before.
    `signed_batch`: AlexeyAB's int batch number (the `sigmoid` policy before `step`), else pjreddie's
    size_t. Returns a Python float holding a float32 value.
    """
    if policy not in POLICIES:
        # DIVERGES: Darknet prints "Couldn't find policy" and silently trains with `constant`.
        raise CfgError(f"unknown learning-rate policy {policy!r}; expected one of {POLICIES}")
    lr = np.float32(learning_rate)
    if batch_num < burn_in:
        ratio = np.float32(batch_num) / np.float32(burn_in)
        return f32(float(lr) * _pow(ratio, f32(power)))
    if policy == "constant":
        return float(lr)
    if policy == "step":
        return f32(float(lr) * _pow(f32(scale), batch_num // step))
    if policy == "steps":
        return _steps_rate(learning_rate, batch_num, steps, scales)
    if policy == "exp":
        return f32(float(lr) * _pow(f32(gamma), batch_num))
    if policy == "poly":
        remaining = np.float32(1) - np.float32(batch_num) / np.float32(max_batches)
        return f32(float(lr) * _pow(remaining, f32(power)))
    if policy == "sigmoid":
        return _sigmoid_rate(learning_rate, batch_num, gamma, step, signed_batch)
    if policy == "sgdr":
        return _sgdr_rate(learning_rate, batch_num, learning_rate_min, sgdr_cycle, sgdr_mult)
    if rng is None:
        raise ValueError("the 'random' policy needs a random generator (rng=)")
    return f32(float(lr) * _pow(np.float32(rng.random()), f32(power)))


def _sgdr_rate(learning_rate: float, batch_num: int, learning_rate_min: float, cycle: int, mult: int) -> float:
    """AlexeyAB's SGDR: a cosine from learning_rate to learning_rate_min over the cycle batch_num is in."""
    if cycle < 1 or mult < 1:
        # DIVERGES: AlexeyAB loops forever looking for the cycle of batch_num
        raise CfgError(f"policy=sgdr needs sgdr_cycle >= 1 and sgdr_mult >= 1 (got {cycle} and {mult}; "
                       f"sgdr_cycle defaults to max_batches)")
    start = 0
    # DARKNET(AlexeyAB network.c:get_current_rate): a cycle ends at its last batch inclusive (`<`, not `<=`)
    while start + cycle < batch_num:
        start += cycle
        cycle *= mult
    spread = float(np.float32(learning_rate) - np.float32(learning_rate_min))   # float - float, in float
    angle = float(np.float32(batch_num - start)) * SGDR_PI / cycle
    return f32(float(np.float32(learning_rate_min)) + 0.5 * spread * (1.0 + math.cos(angle)))


def net_rate(options: NetOptions, batch_num: int, rng: np.random.Generator | None = None, *,
             signed_batch: bool = False) -> float:
    """`get_current_rate` with every schedule key of a `[net]` section (`options`)."""
    return get_current_rate(options.policy, options.learning_rate, batch_num, burn_in=options.burn_in,
                            power=options.power, gamma=options.gamma, step=options.step, scale=options.scale,
                            steps=options.steps, scales=options.scales, max_batches=options.max_batches, rng=rng,
                            learning_rate_min=options.learning_rate_min, sgdr_cycle=options.sgdr_cycle,
                            sgdr_mult=options.sgdr_mult, signed_batch=signed_batch)
