"""`detector demo`: detections on every frame of a video, a stream or a camera, written as an annotated copy
and handed to the demo's other outputs (-prefix images, AlexeyAB's -mjpeg_port / -json_port streams, -ext_output)."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

from ..dialect import DONT_SHOW
from ..detections import Detection, classes_above, do_nms_obj, printed_line
from ..errors import DataError
from ..image import draw_detections, network_input, pixel_box, save_image
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


@dataclass(frozen=True)
class DemoFrame:
    """One frame the demo has detected on, as its outputs (video file, -prefix images, streams, printout) take it.

    frame_id: 1 for the first frame (AlexeyAB's `frame_id`); image: (H, W, 3) uint8 RGB with the boxes drawn;
    detections: after the NMS, boxes relative to the frame; thresh: the drawing threshold.
    """
    frame_id: int
    image: np.ndarray
    detections: list[Detection]
    thresh: float


FrameSink = Callable[[DemoFrame], None]


def annotate_video(net: Darknet, video: str | os.PathLike | int, out_path: str | os.PathLike | None,
                   names: Sequence[str], thresh: float = 0.5, hier_thresh: float = HIER_THRESH,
                   avg_frames: int = DEMO_FRAMES, progress: bool = False, sinks: Sequence[FrameSink] = ()) -> DemoStats:
    """DARKNET(demo.c:demo) on a video file, a stream URL or a camera index (`open_capture`), writing the
    annotated frames to `out_path` (None: no file) and handing each to every sink, never to a window.

    Each frame is letterboxed; the head output drawn ([region], or each [yolo] layer's) is the mean of the
    last `avg_frames` outputs (the history starts as zeros, so the first frames are faded, as in Darknet), decoded with
    relative boxes, then do_nms_obj(.4); boxes with a class prob > thresh are drawn.
    DIVERGES: Darknet ignores `-avg` (its assignment is commented out) and always averages 3 frames.
    The codec follows the extension: MJPG for .avi, mp4v otherwise.
    """
    head = detection_head(net, "detector demo")
    capture = open_capture(video)
    fps = capture.get(cv2.CAP_PROP_FPS) or DEMO_FALLBACK_FPS
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    history: list[torch.Tensor] | None = None    # per head layer: [avg_frames, A, 5+C, H, W]
    writer = None
    frames, start = 0, time.perf_counter()
    try:
        with torch.no_grad():
            # DARKNET(demo.c:fetch_in_thread): the next frame is letterboxed while this one is detected
            letterboxed = ordered_map(partial(_with_input, width=net.width, height=net.height),
                                       _video_frames(capture), workers=1)
            for frame, inputs in progress_of(letterboxed, total=total if total > 0 else None, unit="frame",
                                             enabled=progress):
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
                drawn = DemoFrame(frames + 1, draw_detections(frame, dets, names, thresh), dets, thresh)
                if out_path is not None:
                    if writer is None:
                        writer = _video_writer(out_path, fps, width, height)
                    writer.write(cv2.cvtColor(drawn.image, cv2.COLOR_RGB2BGR))
                for sink in sinks:
                    sink(drawn)
                frames += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise DataError(f"{video}: no frame could be read")
    return DemoStats(frames, time.perf_counter() - start)


def open_capture(source: str | os.PathLike | int) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture of a camera index (Darknet's `-c N`), a stream URL or a video file;
    a DataError naming it when OpenCV cannot open it."""
    if isinstance(source, int):
        # OpenCV's own warnings about a missing /dev/videoN would only repeat the one error line below
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            capture = cv2.VideoCapture(source)
        finally:
            cv2.utils.logging.setLogLevel(level)
        what = f"Couldn't connect to webcam {source}: OpenCV cannot open camera index {source} on this machine"
    else:
        capture = cv2.VideoCapture(str(source))
        what = (f"Couldn't connect to stream {source}" if is_stream_url(str(source))
                else f"cannot open video {source}")
    if not capture.isOpened():
        raise DataError(what)   # DARKNET(demo.c:demo): "Couldn't connect to webcam."
    return capture


def is_stream_url(source: str) -> bool:
    """Whether a demo's video argument names a network stream (rtsp://, http://, ...) rather than a file."""
    return "://" in source


def prefix_sink(prefix: str) -> FrameSink:
    """DARKNET(demo.c:demo): with -prefix every drawn frame is saved as `<prefix>_%08d.jpg`, counted from 0.
    (AlexeyAB's demo counts from 1.)"""
    return lambda frame: save_image(f"{prefix}_{frame.frame_id - 1:08d}.jpg", frame.image)


def ext_output_lines(dets: Sequence[Detection], names: Sequence[str], thresh: float, im_w: int,
                     im_h: int) -> list[str]:
    """DARKNET(AlexeyAB image_opencv.cpp:draw_detections_cv_v3): a demo frame's printout with -ext_output, one
    line per box in array order: `name: NN% ` for its first class above thresh, `, name: NN% ` for the others,
    then its box in pixels of the frame, `\t(left_x: %4.0f   top_y: %4.0f   width: %4.0f   height: %4.0f)`:
    each side first made at most 1, left and top truncated and clamped to the frame, width and height the float32
    products with the frame's size."""
    lines = []
    for det, classes in zip(dets, classes_above(dets, names, thresh)):
        shown = [j for j in classes if not names[j].startswith(DONT_SHOW)]
        if not shown:
            continue
        labels = ", ".join(f"{printed_line(names[j], det.probs[j])} " for j in shown)
        lines.append(labels + _ext_output_box(det.bbox, im_w, im_h))
    return lines


def _ext_output_box(bbox_cxcywh: np.ndarray, im_w: int, im_h: int) -> str:
    # DARKNET(AlexeyAB image_opencv.cpp:draw_detections_cv_v3): NaN/inf sides become .5, then each is at most 1
    x, y, w, h = (np.float32(v) if np.isfinite(v) else np.float32(.5) for v in bbox_cxcywh)
    x, y, w, h = (min(v, np.float32(1)) for v in (x, y, w, h))
    left, top, _right, _bot = pixel_box(np.array([x, y, w, h], np.float32), im_w, im_h)
    width, height = float(w * np.float32(im_w)), float(h * np.float32(im_h))
    return f"\t(left_x: {left:4.0f}   top_y: {top:4.0f}   width: {width:4.0f}   height: {height:4.0f})"


class FrameRate:
    """DARKNET(AlexeyAB demo.c:demo): the FPS it prints, `fps = .9 fps + .1 / (seconds since the last frame)`
    from 0, and AVG_FPS, the frames per second of the last complete span of at least 3 s (0 until one ends)."""

    AVG_SPAN = 3.0

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._last = self._span_start = clock()
        self._span_frames = 0
        self.fps = self.avg_fps = 0.0

    def tick(self) -> tuple[float, float]:
        """One more frame: (fps, avg_fps)."""
        now = self._clock()
        self.fps = self.fps * 0.9 + 0.1 / max(now - self._last, 1e-9)
        self._last = now
        self._span_frames += 1
        if now - self._span_start >= self.AVG_SPAN:
            self.avg_fps = self._span_frames / (now - self._span_start)
            self._span_frames, self._span_start = 0, now
        return self.fps, self.avg_fps


def _average(history: torch.Tensor) -> torch.Tensor:
    """DARKNET(demo.c:avg_predictions): avg = 0, then avg += (float)(1./n) * p for each slot in slot order."""
    weight = np.float32(1. / len(history))
    averaged = torch.zeros_like(history[0])
    for output in history:
        averaged += weight * output
    return averaged


def _video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """The (H, W, 3) uint8 RGB frames of a video, until the first that cannot be read (a stream closed)."""
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
