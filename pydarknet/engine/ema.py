"""AlexeyAB's `ema_alpha`: an exponential moving average of the conv layers' trained tensors.

DARKNET(AlexeyAB network.c:train_network_waitkey): after each update from iteration max_batches/2 on, the
average starts as a copy of the weights ("EMA initialization"), then follows them,
``ema = alpha * ema + (1 - alpha) * w`` ("ema_update()"), until iteration max_batches - 1000, where the
weights are replaced by the average ("ema_apply()") and training goes on from it. AlexeyAB's `detector train`
also writes the average as `<cfg>_ema.weights` beside each `<cfg>_last.weights` (`swapped_in`).
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from ..layers.conv import ConvolutionalLayer
from ..network import Darknet

EMA_APPLY_BEFORE_END = 1000   # DARKNET(AlexeyAB network.c:train_network_waitkey): ema_apply_point = max_batches - 1000


class WeightsEma:
    """The average of `net`'s conv weights, biases and scales (AlexeyAB averages no other layer type)."""

    def __init__(self, net: Darknet, alpha: float):
        self.alpha = alpha
        self.start = net.options.max_batches // 2          # DARKNET(AlexeyAB network.c): ema_start_point
        self.apply_at = net.options.max_batches - EMA_APPLY_BEFORE_END
        self.tensors: list[Tensor] = [tensor for layer in net.layers if isinstance(layer, ConvolutionalLayer)
                                      for tensor in layer.trained_tensors().values()]
        self.average: list[Tensor] | None = None

    @property
    def initialized(self) -> bool:
        return self.average is not None

    @torch.no_grad()
    def after_update(self, iteration: int) -> list[str]:
        """Follow the weights after the update of `iteration`; returns the lines AlexeyAB prints."""
        if iteration < self.start:
            return []
        lines = []
        if self.average is None:
            self.average = [tensor.detach().clone() for tensor in self.tensors]
            lines.append(" EMA initialization ")
        if iteration == self.apply_at:
            # DARKNET(AlexeyAB network.c:ema_apply): the weights become the average (BN statistics are kept)
            for tensor, average in zip(self.tensors, self.average):
                tensor.copy_(average)
            lines.append(" ema_apply() ")
        elif iteration < self.apply_at:
            for tensor, average in zip(self.tensors, self.average):
                average.mul_(self.alpha).add_(tensor.detach(), alpha=1 - self.alpha)
            lines.append(f" ema_update(), ema_alpha = {self.alpha:f} ")
        return lines

    @contextmanager
    def swapped_in(self) -> Iterator[None]:
        """While open, the net holds the average instead of its weights (to save `_ema.weights`)."""
        if self.average is None:
            raise RuntimeError("the weights' average starts at iteration max_batches/2")
        saved = [tensor.detach().clone() for tensor in self.tensors]
        with torch.no_grad():
            for tensor, average in zip(self.tensors, self.average):
                tensor.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for tensor, kept in zip(self.tensors, saved):
                    tensor.copy_(kept)
