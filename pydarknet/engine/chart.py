"""`chart.png`: the loss over iterations and, under `-map`, the mAP, as AlexeyAB's Darknet draws them.

DARKNET(AlexeyAB image_opencv.cpp:draw_train_chart, draw_train_loss): iterations 0..max_batches across, the
loss on 0..max_chart_loss (a higher loss is drawn at the top), the mAP in red on 0..100 %, each measure
labelled, and "current avg loss = ... iteration = ... approx. time left = ... hours" below.
DIVERGES: drawn with matplotlib from the run's history, not dot by dot on an OpenCV image.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np

matplotlib.use("Agg")  # no display needed: the chart is only written to a file
import matplotlib.pyplot as plt  # noqa: E402

from ..fileio import write_atomically  # noqa: E402

MAP_COLOR = "red"   # DARKNET(AlexeyAB image_opencv.cpp:draw_train_loss): CV_RGB(255, 0, 0)


def save_chart(path: str | os.PathLike, iterations: Sequence[int], losses: Sequence[float],
               avg_losses: Sequence[float], max_batches: int | None = None, *, max_loss: float | None = None,
               map_iterations: Sequence[int] = (), maps: Sequence[float] = (),
               hours_left: float | None = None) -> np.ndarray:
    """Write a PNG of loss and average loss per iteration (clipped to `max_loss`, AlexeyAB's max_chart_loss),
    with the mAP measures (`maps` in 0..1 at `map_iterations`) in red on a 0..100 % right axis.
    Returns the chart as an (H, W, 3) uint8 RGB image (for an MJPEG stream)."""
    image = render_chart(iterations, losses, avg_losses, max_batches, max_loss=max_loss,
                         map_iterations=map_iterations, maps=maps, hours_left=hours_left)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"cannot encode the chart for {path}")
    write_atomically(Path(path), png.tobytes())
    return image


def render_chart(iterations: Sequence[int], losses: Sequence[float], avg_losses: Sequence[float],
                 max_batches: int | None = None, *, max_loss: float | None = None, map_iterations: Sequence[int] = (),
                 maps: Sequence[float] = (), hours_left: float | None = None) -> np.ndarray:
    """The chart of `save_chart` as an (H, W, 3) uint8 RGB image."""
    figure, loss_axis = plt.subplots(figsize=(8, 6), dpi=100)
    try:
        # DARKNET(AlexeyAB image_opencv.cpp:draw_train_loss): a loss above max_chart_loss is drawn at the top
        clip = (lambda values: np.minimum(values, max_loss)) if max_loss is not None else np.asarray
        loss_axis.plot(iterations, clip(losses), color="tab:blue", alpha=0.35, linewidth=0.8, label="loss")
        loss_axis.plot(iterations, clip(avg_losses), color="tab:blue", linewidth=1.5, label="avg loss")
        loss_axis.set_xlabel("Iteration number")
        loss_axis.set_ylabel("Loss", color="tab:blue")
        loss_axis.set_xlim(0, max_batches or (iterations[-1] if len(iterations) else 1))
        if max_loss is not None:
            loss_axis.set_ylim(0, max_loss)
        loss_axis.grid(alpha=0.3)
        loss_axis.legend(loc="upper right")
        if len(maps):
            _draw_map(loss_axis.twinx(), map_iterations, maps)
        if len(avg_losses):
            loss_axis.set_title(_status(avg_losses[-1], iterations[-1], hours_left), fontsize=9)
        figure.canvas.draw()
        return np.asarray(figure.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(figure)


def _draw_map(axis, map_iterations: Sequence[int], maps: Sequence[float]) -> None:
    percent = 100 * np.asarray(maps, dtype=float)
    axis.plot(map_iterations, percent, color=MAP_COLOR, marker="o", markersize=3, linewidth=1.2, label="mAP%")
    for iteration, value in zip(map_iterations, percent):
        axis.annotate(f"{value:2.0f}%", (iteration, value), textcoords="offset points", xytext=(-10, 5),
                      color=MAP_COLOR, fontsize=8)
    axis.set_ylim(0, 100)
    axis.set_ylabel("mAP%", color=MAP_COLOR)
    axis.legend(loc="upper left")


def _status(avg_loss: float, iteration: int, hours_left: float | None) -> str:
    # DARKNET(AlexeyAB image_opencv.cpp:draw_train_loss): the line under its chart
    text = f"current avg loss = {avg_loss:2.4f}    iteration = {iteration}"
    return text if hours_left is None else f"{text}    approx. time left = {hours_left:2.2f} hours"
