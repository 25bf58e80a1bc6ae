"""A small synthetic video for the `detector demo` tests (conftest's `video` fixture), and reading frames back."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_clip(path: Path) -> Path:
    """10 frames, 160x120: a red square moving over a grey background, as MJPG in `path` (.avi)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(10):
        frame = np.full((120, 160, 3), 128, np.uint8)
        frame[30:80, 10 + 8 * i:60 + 8 * i] = (40, 40, 220)
        writer.write(frame)
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1].astype(int))
    return frames
