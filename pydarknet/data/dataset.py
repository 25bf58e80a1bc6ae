"""Detection samples for training (Darknet's augmentation) and validation (letterbox), and loaders.

Training follows examples/detector.c:train_detector: every step of `batch` images is drawn at random
with replacement from the list (data.c:get_random_paths) and split into `subdivisions` mini-batches;
with `random=1` the network size changes every 10 steps. A `DarknetBatchSampler` decides index,
size and augmentation seed of every sample, so batches are reproducible whatever the worker count.

A bad sample (missing label file, unreadable image, malformed label) never stops an epoch: the
dataset returns a `SkippedSample`, and `DetectionLoader` warns naming the file, counts it, and
yields the batch without it. Only a list with no usable sample stops training, before its first
update (`DetectionDataset.require_a_sample`, and the training loader once every path was skipped).
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..image import letterbox_size, load_image, network_input
from .augment import AugmentOptions, augment_detection, correct_boxes, fill_truth
from ..errors import DataError
from .files import alexeyab_label_path, label_path, read_list
from .labels import read_labels

MULTISCALE_EVERY = 10               # DARKNET(detector.c:train_detector): steps between size changes
MULTISCALE_DIMS = (320, 608, 32)    # DARKNET(detector.c:train_detector): (rand()%10+10)*32
MULTISCALE_FINAL_BATCHES = 200      # DARKNET(detector.c:train_detector): last steps train at 608

# DARKNET(data.c:fill_truth_detection): the label-path rule training uses, as the error of an unusable list says it
LABEL_PATH_RULE = ("pjreddie's label-path rule: the first images, JPEGImages and raw in the path each become labels, "
                   "the first .jpg, .png, .JPG and .JPEG each become .txt")

# What a bad sample raises: missing/unreadable files (OSError), undecodable images and malformed
# labels (ValueError, LabelError).
BAD_SAMPLE_ERRORS = (OSError, ValueError)


class BadSampleWarning(UserWarning):
    """A sample was skipped; the message names the image and the reason."""


@dataclass(frozen=True)
class SampleKey:
    """Which image to load, at which network size, with which augmentation random stream."""

    index: int
    w: int
    h: int
    rng_key: tuple[int, ...]


@dataclass(frozen=True)
class SkippedSample:
    """Stands in for a sample that could not be loaded."""

    path: str
    reason: str


class DetectionDataset(Dataset):
    """Images of a list file with their truths, at a settable network size.

    `dataset[i]` (an int) loads image i at `self.size` with augmentation seed (i,); a SampleKey
    chooses size and seed explicitly. Either returns `(image, truth)`: image (3, h, w) float32 in
    [0, 1], truth (options.max, 5) float32 rows `(x, y, w, h, class)` relative to the network input
    (zero rows after the last truth), or a SkippedSample. With `augment=False` the image is
    letterboxed as Darknet does at test time and the truths are mapped onto the letterbox.
    """

    def __init__(self, paths: Sequence[str], classes: int, size: tuple[int, int] = (416, 416),
                 options: AugmentOptions = AugmentOptions(), augment: bool = True, classification_only: bool = True,
                 decoder: str = "stb"):
        if not paths:
            raise ValueError("DetectionDataset needs at least one image path")
        self.paths = list(paths)
        self.classes = classes
        self.size = size
        self.options = options
        self.augment = augment
        self.classification_only = classification_only   # x = y = 0 label lines allowed (nets with a tree)
        self.decoder = decoder                             # see image.load_image

    @classmethod
    def from_list(cls, list_file: str | os.PathLike, classes: int, **kwargs) -> DetectionDataset:
        """A dataset over the image paths of a Darknet list file (relative paths: working directory)."""
        dataset = cls(read_list(list_file), classes, **kwargs)
        dataset.source = str(list_file)
        return dataset

    source: str | None = None   # the list file the paths came from (for messages)

    def require_a_sample(self) -> None:
        """Raise `no_usable_samples` unless some listed image and its label file are both there (a cheap
        check made before training: one stat per path until the first pair is found)."""
        for path in self.paths:
            if _is_file(path) and _is_file(_label_path_or_none(path)):
                return
        raise self.no_usable_samples("no listed image has both its image and its label file")

    def no_usable_samples(self, why: str) -> DataError:
        """The error of a list whose every sample is bad: how many images and label files were found, by
        which label-path rule, with the first path as the example."""
        images = sum(_is_file(path) for path in self.paths)
        labels = sum(_is_file(_label_path_or_none(path)) for path in self.paths)
        first = self.paths[0]
        example = _label_path_or_none(first) or "(no rule applies)"
        hint = ""
        if labels == 0:
            beside = sum(_is_file(alexeyab_label_path(path)) for path in self.paths)
            if beside:
                hint = (f"; {beside} label files lie beside their images (AlexeyAB's rule): move them to the "
                        f"labels folders")
        # DIVERGES: Darknet ends at the first missing label or unreadable image (data.c:read_boxes, image.c:
        # load_image_stb: "Couldn't open file", exit 0); we skip bad samples and stop only when none is usable
        return DataError(f"{self.source or 'the image list'}: no usable training sample ({why}): {images} of "
                         f"{len(self.paths)} listed images found, {labels} label files found by {LABEL_PATH_RULE} "
                         f"(e.g. {first} -> {example}){hint}; nothing was trained")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor] | SkippedSample:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), *self.size, rng_key=(int(key),))
        try:
            image, truth = self.load(key)
        except BAD_SAMPLE_ERRORS as exc:
            return SkippedSample(self.paths[key.index], str(exc))
        return torch.from_numpy(image), torch.from_numpy(truth)

    def load(self, key: SampleKey) -> tuple[np.ndarray, np.ndarray]:
        """Load one sample as numpy arrays; raises OSError/ValueError for a bad sample."""
        path = self.paths[key.index]
        truths = read_labels(label_path(path), self.classes, self.classification_only)
        image = load_image(path, self.decoder)
        if self.augment:
            return augment_detection(image, truths, key.w, key.h, self.options, np.random.default_rng(key.rng_key))
        return letterbox_sample(image, truths, key.w, key.h, self.options.max)


def _label_path_or_none(image_path: str) -> str | None:
    try:
        return label_path(image_path)
    except ValueError:   # no rule applies
        return None


def _is_file(path: str | None) -> bool:
    return path is not None and os.path.isfile(path)


def letterbox_sample(image: np.ndarray, truths: np.ndarray, w: int, h: int,
                     max_truths: int) -> tuple[np.ndarray, np.ndarray]:
    """Letterbox `image` (H, W, 3) uint8 into (3, h, w) float32 and map truths (N, 5) onto it.

    Returns the truths as a (max_truths, 5) block in file order (no shuffle), clipped like Darknet's.
    """
    im_h, im_w = image.shape[:2]
    new_w, new_h = letterbox_size(im_w, im_h, w, h)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    corrected = correct_boxes(truths, -dx / w, -dy / h, new_w / w, new_h / h, flip=False)
    return network_input(image, w, h), fill_truth(corrected, max_truths)


def multiscale_dim(rng: np.random.Generator, count: int, current_batch: int, max_batches: int) -> int | None:
    """The new square network size before training step `count` of this run, or None to keep it.

    DARKNET(detector.c:train_detector): `count` restarts at 0 when training resumes, so the first
    step always picks a size; the draw is made even when the final-608 rule overrides it.
    """
    if count % MULTISCALE_EVERY:
        return None
    low, high, step = MULTISCALE_DIMS
    dim = int(rng.integers(low // step, high // step + 1)) * step
    return high if current_batch + MULTISCALE_FINAL_BATCHES > max_batches else dim


class DarknetBatchSampler(Sampler):
    """Mini-batches of SampleKeys for training steps `start_batch .. max_batches-1`, every `stride`-th
    (one process's share of a run of `stride` processes: Darknet's iteration counter advances by the
    GPU count per round).

    Each step draws `batch // subdivisions * subdivisions` images uniformly with replacement (as
    data.c:get_random_paths) and yields them as `subdivisions` mini-batches. Step s uses the random
    stream (seed, s), so resuming at `start_batch` gives the same images as an unbroken run.
    """

    def __init__(self, num_images: int, batch: int, subdivisions: int, max_batches: int,
                 size: tuple[int, int] = (416, 416), start_batch: int = 0, random: bool = False, seed: int = 0,
                 stride: int = 1):
        # DARKNET(parser.c:parse_net): the mini-batch is batch/subdivisions, rounded down
        self.minibatch = batch // subdivisions
        if num_images < 1 or self.minibatch < 1:
            raise ValueError(f"need images and batch >= subdivisions, got {num_images} images, "
                             f"batch={batch} subdivisions={subdivisions}")
        self.num_images = num_images
        self.subdivisions = subdivisions
        self.max_batches = max_batches
        self.size = size
        self.start_batch = start_batch
        self.random = random
        self.seed = seed
        self.steps = range(start_batch, max_batches, stride)

    def __len__(self) -> int:
        return len(self.steps) * self.subdivisions

    def __iter__(self) -> Iterator[list[SampleKey]]:
        w, h = self.size
        for count, step in enumerate(self.steps):
            rng = np.random.default_rng([self.seed, step])
            dim = multiscale_dim(rng, count, step, self.max_batches) if self.random else None
            if dim is not None:
                w = h = dim
            indices = rng.integers(0, self.num_images, self.minibatch * self.subdivisions)
            keys = [SampleKey(int(index), w, h, (self.seed, step, k)) for k, index in enumerate(indices)]
            for start in range(0, len(keys), self.minibatch):
                yield keys[start:start + self.minibatch]


@dataclass
class DetectionBatch:
    """What a loader worker hands back: stacked good samples and the skipped ones."""

    images: Tensor | None      # [B, 3, H, W] float32, None if every sample was bad
    truths: Tensor | None      # [B, max, 5] float32
    skipped: list[SkippedSample]


def collate_detections(items: list[tuple[Tensor, Tensor] | SkippedSample]) -> DetectionBatch:
    """Stack the good samples of a mini-batch and set the skipped ones aside."""
    good = [item for item in items if not isinstance(item, SkippedSample)]
    skipped = [item for item in items if isinstance(item, SkippedSample)]
    if not good:
        return DetectionBatch(None, None, skipped)
    return DetectionBatch(torch.stack([image for image, _ in good]), torch.stack([truth for _, truth in good]),
                          skipped)


class DetectionLoader:
    """Iterates (images [B, 3, H, W], truths [B, max, 5]) and counts the samples it had to skip.

    B is smaller than the mini-batch when samples were skipped; a mini-batch of only bad samples
    is not yielded at all. `skipped` counts skips per image path over the loader's lifetime.
    With `nothing_usable`, the loader raises the exception it returns as soon as every listed path has
    been skipped before any sample was good (the list holds nothing to train on).
    """

    def __init__(self, loader: DataLoader, nothing_usable: Callable[[], Exception] | None = None):
        self.loader = loader
        self.skipped: Counter[str] = Counter()
        self.nothing_usable = nothing_usable
        # only a loader that can report "nothing usable" counts the listed images (a million for ImageNet)
        self._distinct_paths = len(set(getattr(loader.dataset, "paths", ()))) if nothing_usable else 0

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        good = False
        for batch in self.loader:
            for bad in batch.skipped:
                self.skipped[bad.path] += 1
                warnings.warn(f"skipping sample {bad.path}: {bad.reason}", BadSampleWarning, stacklevel=2)
            if batch.images is not None:
                good = True
                yield batch.images, batch.truths
            elif not good and self._distinct_paths and len(self.skipped) >= self._distinct_paths:
                raise self.nothing_usable()


def train_loader(dataset: DetectionDataset, batch: int, subdivisions: int, max_batches: int, *,
                 start_batch: int = 0, random: bool = False, seed: int = 0, workers: int = 2,
                 stride: int = 1) -> DetectionLoader:
    """Augmented mini-batches for steps start_batch..max_batches-1 (every `stride`-th: see
    `DarknetBatchSampler`), loaded by `workers` processes.

    Uses `dataset.size` as the network size until `random` multi-scale first changes it. Raises
    `dataset.no_usable_samples` (a DataError) once every listed sample was skipped before a good one.
    """
    sampler = DarknetBatchSampler(len(dataset), batch, subdivisions, max_batches, dataset.size,
                                  start_batch, random, seed, stride)
    return DetectionLoader(DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                      collate_fn=collate_detections),
                           nothing_usable=lambda: dataset.no_usable_samples("every one was skipped: see the warnings"))
