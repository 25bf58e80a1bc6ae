"""`detector demo`: detections on every frame of a video, written as an annotated copy."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from ..detections import do_nms_obj
from ..errors import DataError
from ..image import draw_detections, network_input
from ..network import Darknet
from ..progress import progress as progress_of
from ..heads.detector import HIER_THRESH, detection_head, float_on_cpu
from .detect_list import ordered_map

DEMO_NMS = 0.4         # DARKNET(demo.c:detect_in_thread): do_nms_obj
DEMO_FRAMES = 3        # DARKNET(demo.c:demo): region outputs averaged over the last 3 frames
DEMO_FALLBACK_FPS = 25.0   # written when a video does not say its frame rate


@dataclass(frozen=True)
class DemoStats:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def annotate_video(net: Darknet, video: str | os.PathLike, out_path: str | os.PathLike, names: Sequence[str],
                   thresh: float = 0.5, hier_thresh: float = HIER_THRESH, avg_frames: int = DEMO_FRAMES,
                   progress: bool = False) -> DemoStats:
    """DARKNET(demo.c:demo) on a video file, writing the annotated frames to `out_path`, never a window.

    Each frame is letterboxed; the head output drawn ([region], or each [yolo] layer's) is the mean of the
    last `avg_frames` outputs (the history starts as zeros, so the first frames are faded, as in Darknet), decoded with
    relative boxes, then do_nms_obj(.4); boxes with a class prob > thresh are drawn.
    DIVERGES: Darknet ignores `-avg` (its assignment is commented out) and always averages 3 frames.
    The codec follows the extension: MJPG for .avi, mp4v otherwise.
    """
    head = detection_head(net, "detector demo")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise DataError(f"cannot open video {video}")
    fps = capture.get(cv2.CAP_PROP_FPS) or DEMO_FALLBACK_FPS
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    history: list[torch.Tensor] | None = None    # per head layer: [avg_frames, A, 5+C, H, W]
    writer = None
    frames, start = 0, time.perf_counter()
    try:
        with torch.no_grad():
            # DARKNET(demo.c:fetch_in_thread): the next frame is letterboxed while this one is detected
            letterboxed = ordered_map(partial(_with_input, width=net.width, height=net.height),
                                       _video_frames(capture), workers=1)
            for frame, inputs in progress_of(letterboxed, total=total, unit="frame", enabled=progress):
                output = head.image_output(float_on_cpu(net(inputs[None].to(net.device))), 0)
                outputs = [output] if isinstance(output, torch.Tensor) else output
                if history is None:
                    history = [layer_output.new_zeros(avg_frames, *layer_output.shape) for layer_output in outputs]
                for layer_history, layer_output in zip(history, outputs):
                    layer_history[frames % avg_frames] = layer_output
                # DARKNET(demo.c:avg_predictions): every detection layer's output is averaged
                averaged = [_average(layer_history) for layer_history in history]
                height, width = frame.shape[:2]
                dets = head.detections(averaged, net.width, net.height, width, height, thresh, 0, hier_thresh)
                dets = do_nms_obj(dets, DEMO_NMS)
                if writer is None:
                    writer = _video_writer(out_path, fps, width, height)
                writer.write(cv2.cvtColor(draw_detections(frame, dets, names, thresh), cv2.COLOR_RGB2BGR))
                frames += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise DataError(f"{video}: no frame could be read")
    return DemoStats(frames, time.perf_counter() - start)


def _average(history: torch.Tensor) -> torch.Tensor:
    """DARKNET(demo.c:avg_predictions): avg = 0, then avg += (float)(1./n) * p for each slot in slot order."""
    weight = np.float32(1. / len(history))
    averaged = torch.zeros_like(history[0])
    for output in history:
        averaged += weight * output
    return averaged


def _video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The (H, W, 3) uint8 RGB frames of a video, until the first that cannot be read."""
    while True:
        ok, bgr = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _with_input(frame: np.ndarray, width: int, height: int) -> tuple[np.ndarray, torch.Tensor]:
    """A frame and its letterboxed (3, height, width) network input."""
    return frame, torch.from_numpy(network_input(frame, width, height))


def _video_writer(path: str | os.PathLike, fps: float, width: int, height: int) -> cv2.VideoWriter:
    codec = "MJPG" if Path(path).suffix.lower() == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise DataError(f"cannot write video {path} with codec {codec}")
    return writer
