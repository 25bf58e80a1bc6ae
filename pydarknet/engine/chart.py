"""`chart.png`: loss and average loss over iterations, as AlexeyAB's Darknet draws it."""
from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed: the chart is only written to a file
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import write_atomically  # noqa: E402


def save_chart(path: str | os.PathLike, iterations: list[int], losses: list[float], avg_losses: list[float],
               max_batches: int | None = None) -> None:
    """Write a PNG of loss and average loss per iteration."""
    figure, loss_axis = plt.subplots(figsize=(8, 5), dpi=100)
    try:
        loss_axis.plot(iterations, losses, color="tab:blue", alpha=0.35, linewidth=0.8, label="loss")
        loss_axis.plot(iterations, avg_losses, color="tab:blue", linewidth=1.5, label="avg loss")
        loss_axis.set_xlabel("iteration")
        loss_axis.set_ylabel("loss")
        loss_axis.set_xlim(0, max_batches or (iterations[-1] if iterations else 1))
        loss_axis.grid(alpha=0.3)
        loss_axis.legend(loc="upper right")
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
    finally:
        plt.close(figure)
    write_atomically(Path(path), buffer.getvalue())
