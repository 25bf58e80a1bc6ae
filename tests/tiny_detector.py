"""A few-iteration detector run on a converted dataset: enough to show its files train and evaluate."""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np

from pydarknet.data.dataset import BadSampleWarning
from pydarknet.engine.train import TrainResult, train_detector

ANCHORS = 2
CFG = """[net]
batch=2
subdivisions=1
width=64
height=64
channels=3
learning_rate=0.001
max_batches=100
policy=constant

[convolutional]
filters=8
size=3
stride=4
pad=1
activation=leaky

[maxpool]
size=2
stride=8

[convolutional]
size=1
stride=1
filters={filters}
activation=linear

[region]
anchors = 1,1, 2,2
classes={classes}
coords=4
num={anchors}
softmax=1
random=0
"""


def write_tiny_cfg(path: Path, classes: int) -> Path:
    """A two-layer region detector for 64x64 inputs."""
    path.write_text(CFG.format(classes=classes, anchors=ANCHORS, filters=ANCHORS * (classes + 5)))
    return path


def train_briefly(data_file: Path, cfg: Path, batches: int = 2) -> TrainResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        return train_detector(data_file, cfg, workers=0, max_batches=batches, show_progress=False, verbose=False,
                              log=lambda line: None)


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    """A noise JPEG of the given size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    cv2.imwrite(str(path), pixels)
