"""Detection samples for training (Darknet's augmentation) and validation (letterbox), and loaders.

Training follows examples/detector.c:train_detector: every step of `batch` images is drawn at random
with replacement from the list (data.c:get_random_paths) and split into `subdivisions` mini-batches;
with `random=` the network size changes every 10 steps (`multiscale`: pjreddie's rule, or AlexeyAB's under
its dialect). A `DarknetBatchSampler` decides
index, size and augmentation seed of every sample, so batches are reproducible whatever the worker count.
Which augmentation makes a sample depends on the head and the dialect (`detector_training_loader`):
pjreddie's load_data_detection for [region] nets and, under pjreddie's dialect, [yolo] nets (`augment`);
AlexeyAB's, with mosaic and mixup, for [yolo] nets under AlexeyAB's (`augment_ab`, `mosaic`); YOLOv1's
load_data_region for [detection] nets.

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
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..dialect import ALEXEYAB, PJREDDIE, Dialect, other_dialect
from ..errors import CfgError, DataError
from ..heads.detector import detection_head
from ..image import letterbox_size, load_image, network_input
from .augment import AugmentOptions, augment_detection, augment_region, correct_boxes, fill_truth
from .augment_ab import MIX_CUTMIX, MIX_MOSAIC, MIX_MOSAIC_CUTMIX, AlexeyabAugmentOptions, detector_mix, mix_code
from .files import read_list
from .labels import read_labels
from .mosaic import alexeyab_sample
from .multiscale import (MULTISCALE_DIMS, MULTISCALE_EVERY, MULTISCALE_FINAL_BATCHES,  # noqa: F401 (their home)
                         AlexeyabMultiscale, Resize, multiscale_dim, pjreddie_multiscale)

# What a bad sample raises: missing/unreadable files (OSError), undecodable images and malformed
# labels (ValueError, LabelError).
BAD_SAMPLE_ERRORS = (OSError, ValueError)

# DARKNET(AlexeyAB data.c:load_data_detection): printed there at every load; here once, when the loader opens
CUTMIX_NOTE = " cutmix=1 - isn't supported for Detector (use cutmix=1 only for Classifier) "


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


class BadSample(Exception):
    """One image of a sample (a mosaic reads four) could not be loaded: `path` names it."""

    def __init__(self, path: str, reason: str):
        super().__init__(reason)
        self.path, self.reason = path, reason


LoadImage = Callable[[int], tuple[np.ndarray, np.ndarray]]   # list index -> (H, W, 3) uint8 image, (N, 5) truths


class Augmenter(Protocol):
    """Makes one training sample: `load` reads image i of a list of `images`; returns the input (3, h, w) float32
    and truths (max, 5) float32."""

    def __call__(self, load: LoadImage, key: SampleKey, images: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class PjreddieAugmenter:
    """DARKNET(data.c:load_data_detection): [region] nets, and [yolo] nets under pjreddie's dialect."""

    options: AugmentOptions

    def __call__(self, load: LoadImage, key: SampleKey, images: int, rng: np.random.Generator):
        return augment_detection(*load(key.index), key.w, key.h, self.options, rng)


@dataclass(frozen=True)
class RegionAugmenter:
    """DARKNET(data.c:load_data_region): YOLOv1's [detection] nets."""

    options: AugmentOptions

    def __call__(self, load: LoadImage, key: SampleKey, images: int, rng: np.random.Generator):
        return augment_region(*load(key.index), key.w, key.h, self.options, rng)


@dataclass(frozen=True)
class AlexeyabAugmenter:
    """DARKNET(AlexeyAB data.c:load_data_detection): [yolo] nets under AlexeyAB's dialect (mosaic, mixup, ...)."""

    options: AlexeyabAugmentOptions

    def __call__(self, load: LoadImage, key: SampleKey, images: int, rng: np.random.Generator):
        return alexeyab_sample(load, key.index, images, key.w, key.h, self.options, rng)


class DetectionDataset(Dataset):
    """Images of a list file with their truths, at a settable network size.

    `dataset[i]` (an int) loads image i at `self.size` with augmentation seed (i,); a SampleKey
    chooses size and seed explicitly. Either returns `(image, truth)`: image (3, h, w) float32 in
    [0, 1], truth (max, 5) float32 rows `(x, y, w, h, class)` relative to the network input
    (zero rows after the last truth), or a SkippedSample. `augmenter` makes a training sample
    (pjreddie's load_data_detection with `options` by default); with `augment=False` the image is
    letterboxed as Darknet does at test time and the truths are mapped onto the letterbox.
    Label files are found by `dialect`'s label-path rule.
    """

    def __init__(self, paths: Sequence[str], classes: int, size: tuple[int, int] = (416, 416),
                 options: AugmentOptions = AugmentOptions(), augment: bool = True, classification_only: bool = True,
                 decoder: str = "stb", dialect: Dialect = PJREDDIE, augmenter: Augmenter | None = None):
        if not paths:
            raise ValueError("DetectionDataset needs at least one image path")
        self.paths = list(paths)
        self.classes = classes
        self.size = size
        self.options = options
        self.augment = augment
        self.classification_only = classification_only   # x = y = 0 label lines allowed (nets with a tree)
        self.decoder = decoder                             # see image.load_image
        self.dialect = dialect
        self.augmenter = augmenter if augmenter is not None else PjreddieAugmenter(options)

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
            if _is_file(path) and _is_file(self.dialect.label_file(path)):
                return
        raise self.no_usable_samples("no listed image has both its image and its label file")

    def no_usable_samples(self, why: str) -> DataError:
        """The error of a list whose every sample is bad: how many images and label files were found, by
        which label-path rule, with the first path as the example (and a hint when the other dialect's rule
        finds label files)."""
        images = sum(_is_file(path) for path in self.paths)
        labels = sum(_is_file(self.dialect.label_file(path)) for path in self.paths)
        first = self.paths[0]
        example = self.dialect.label_file(first) or "(no rule applies)"
        hint = ""
        if labels == 0:
            other = other_dialect(self.dialect)
            found = sum(_is_file(other.label_file(path)) for path in self.paths)
            if found:
                hint = (f"; {found} label files lie where {other.name}'s rule looks ({other.label_rule_text}): "
                        f"{other.cli_choice}")
        # DIVERGES: Darknet ends at the first missing label or unreadable image (data.c:read_boxes, image.c:
        # load_image_stb: "Couldn't open file", exit 0); we skip bad samples and stop only when none is usable
        return DataError(f"{self.source or 'the image list'}: no usable training sample ({why}): {images} of "
                         f"{len(self.paths)} listed images found, {labels} label files found by "
                         f"{self.dialect.name}'s label-path rule: {self.dialect.label_rule_text} (e.g. {first} -> "
                         f"{example}){hint}; nothing was trained")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor] | SkippedSample:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), *self.size, rng_key=(int(key),))
        try:
            image, truth = self.load(key)
        except BadSample as bad:
            return SkippedSample(bad.path, bad.reason)
        except BAD_SAMPLE_ERRORS as exc:
            return SkippedSample(self.paths[key.index], str(exc))
        return torch.from_numpy(image), torch.from_numpy(truth)

    def load(self, key: SampleKey) -> tuple[np.ndarray, np.ndarray]:
        """Load one sample as numpy arrays; raises BadSample (or OSError/ValueError) for a bad sample."""
        if self.augment:
            return self.augmenter(self.read, key, len(self.paths), np.random.default_rng(key.rng_key))
        return letterbox_sample(*self.read(key.index), key.w, key.h, self.options.max)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image `index` (H, W, 3) uint8 and its truths (N, 5); BadSample naming the image if either is bad."""
        path = self.paths[index]
        try:
            # DARKNET(data.c:load_data_detection): the image is loaded before its labels, so a missing image is
            # reported as the missing image, not as its (then also missing) label file
            image = load_image(path, self.decoder)
            return image, read_labels(self.dialect.label_path(path), self.classes, self.classification_only)
        except BAD_SAMPLE_ERRORS as exc:
            raise BadSample(path, str(exc)) from None


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


MultiscaleRule = Callable[[np.random.Generator, int, int, int, tuple[int, int]], "Resize | None"]


class DarknetBatchSampler(Sampler):
    """Mini-batches of SampleKeys for training steps `start_batch .. max_batches-1`, every `stride`-th
    (one process's share of a run of `stride` processes: Darknet's iteration counter advances by the
    GPU count per round).

    Each step draws `batch // subdivisions * subdivisions` images uniformly with replacement (as
    data.c:get_random_paths) and yields them as `subdivisions` mini-batches. Step s uses the random
    stream (seed, s), so resuming at `start_batch` gives the same images as an unbroken run.
    `multiscale` (called as (rng, round, step, max_batches, size)) draws the network size every 10 rounds;
    `random=True` without one means pjreddie's rule.
    """

    def __init__(self, num_images: int, batch: int, subdivisions: int, max_batches: int,
                 size: tuple[int, int] = (416, 416), start_batch: int = 0, random: bool = False, seed: int = 0,
                 stride: int = 1, multiscale: MultiscaleRule | None = None):
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
        self.multiscale = multiscale if multiscale is not None else pjreddie_multiscale if random else None
        self.seed = seed
        self.steps = range(start_batch, max_batches, stride)

    def __len__(self) -> int:
        return len(self.steps) * self.subdivisions

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for keys, _ in self.schedule():
            yield keys

    def resize_lines(self) -> Iterator[str | None]:
        """For each mini-batch of `iter(self)`, the `Resizing` line Darknet prints before it, or None."""
        for _, line in self.schedule():
            yield line

    def schedule(self) -> Iterator[tuple[list[SampleKey], str | None]]:
        """Each mini-batch with the `Resizing` line of a multi-scale draw made before it (or None)."""
        w, h = self.size
        for count, step in enumerate(self.steps):
            rng = np.random.default_rng([self.seed, step])
            resize = self.multiscale(rng, count, step, self.max_batches, self.size) if self.multiscale else None
            if resize is not None:
                w, h = resize.w, resize.h
            indices = rng.integers(0, self.num_images, self.minibatch * self.subdivisions)
            keys = [SampleKey(int(index), w, h, (self.seed, step, k)) for k, index in enumerate(indices)]
            for start in range(0, len(keys), self.minibatch):
                yield keys[start:start + self.minibatch], resize.line if resize is not None and start == 0 else None


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
    been skipped before any sample was good (the list holds nothing to train on). With `lines` (one
    line or None per mini-batch of the loader, as `DarknetBatchSampler.resize_lines`), each line is
    handed to `log` when its mini-batch comes, in the main process.
    """

    def __init__(self, loader: DataLoader, nothing_usable: Callable[[], Exception] | None = None,
                 lines: Callable[[], Iterable[str | None]] | None = None, log: Callable[[str], None] = print):
        self.loader = loader
        self.skipped: Counter[str] = Counter()
        self.nothing_usable = nothing_usable
        self.lines = lines
        self.log = log
        # only a loader that can report "nothing usable" counts the listed images (a million for ImageNet)
        self._distinct_paths = len(set(getattr(loader.dataset, "paths", ()))) if nothing_usable else 0

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def skipped_count(self) -> int:
        return sum(self.skipped.values())

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        good = False
        lines = iter(self.lines()) if self.lines is not None else None
        for batch in self.loader:
            line = next(lines) if lines is not None else None
            if line is not None:
                self.log(line)
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
                 stride: int = 1, multiscale: MultiscaleRule | None = None,
                 log: Callable[[str], None] | None = None) -> DetectionLoader:
    """Augmented mini-batches for steps start_batch..max_batches-1 (every `stride`-th: see
    `DarknetBatchSampler`), loaded by `workers` processes.

    Uses `dataset.size` as the network size until multi-scale (`multiscale`, or pjreddie's rule with
    `random`) first changes it; `log` receives Darknet's `Resizing` lines. Raises
    `dataset.no_usable_samples` (a DataError) once every listed sample was skipped before a good one.
    """
    sampler = DarknetBatchSampler(len(dataset), batch, subdivisions, max_batches, dataset.size,
                                  start_batch, random, seed, stride, multiscale)
    return DetectionLoader(DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                      collate_fn=collate_detections),
                           nothing_usable=lambda: dataset.no_usable_samples("every one was skipped: see the warnings"),
                           lines=sampler.resize_lines if log is not None else None, log=log or print)


# ----------------------------------------------------------------------------- the engine's one entry point

@dataclass(frozen=True)
class TrainingData:
    """How a net's training samples are made: the augmenter, the truth rows, the multi-scale rule, and whether
    classification-only label lines are allowed."""

    augmenter: Augmenter
    classes: int
    max_truths: int
    multiscale: MultiscaleRule | None
    classification_only: bool = False
    note: str | None = None   # a line to print once before the first batch


def training_data(net, dialect: Dialect) -> TrainingData:
    """The training data of `net`'s detection head under `dialect` (see the module docstring)."""
    head = detection_head(net, "detector training")
    layer, options = head.layers[-1], net.options
    colour = {"hue": options.hue, "saturation": options.saturation, "exposure": options.exposure}
    if head.kind == "region":
        region = layer.options
        # DIVERGES: under AlexeyAB's dialect a [region] net keeps pjreddie's augmentation (YOLOv2's proven path;
        # AlexeyAB's Darknet would use its load_data_detection), but multi-scale follows AlexeyAB's rule
        multiscale = _multiscale(dialect, region.random, options.resize_step)
        return TrainingData(PjreddieAugmenter(AugmentOptions(jitter=region.jitter, max=region.max, **colour)),
                            head.classes, region.max, multiscale, classification_only=layer.tree is not None)
    if head.kind == "detection":
        # DARKNET(yolo.c:train_yolo): no multi-scale
        detection = layer.options
        return TrainingData(RegionAugmenter(AugmentOptions(jitter=detection.jitter, max=detection.max, **colour)),
                            head.classes, detection.max, None)
    yolo = layer.options   # DARKNET(detector.c:train_detector): the last [yolo] layer's jitter, max and random
    if dialect is not ALEXEYAB:
        # DIVERGES: pjreddie's parse_yolo defaults `max` to 90; the [yolo] options read AlexeyAB's 200
        return TrainingData(PjreddieAugmenter(AugmentOptions(jitter=yolo.jitter, max=yolo.max, **colour)),
                            head.classes, yolo.max, _multiscale(dialect, yolo.random, options.resize_step))
    code = mix_code(options.mixup, options.cutmix, options.mosaic)
    mix = detector_mix(code)
    if mix == MIX_MOSAIC and options.letter_box:
        # DARKNET(AlexeyAB data.c:load_data_detection): error("Combination: letter_box=1 & mosaic=1 - isn't supported")
        raise CfgError(f"{net.cfg_path}: [net] letter_box=1 and mosaic=1 cannot be combined (AlexeyAB's Darknet "
                       f"refuses them too); use one of them")
    ab = AlexeyabAugmentOptions(jitter=yolo.jitter, resize=yolo.resize, flip=options.flip, blur=options.blur,
                                gaussian_noise=options.gaussian_noise, mix=mix, letter_box=options.letter_box,
                                mosaic_bound=options.mosaic_bound, max=yolo.max, **colour)
    note = CUTMIX_NOTE if code in (MIX_CUTMIX, MIX_MOSAIC_CUTMIX) else None
    return TrainingData(AlexeyabAugmenter(ab), head.classes, yolo.max,
                        _multiscale(dialect, yolo.random, options.resize_step), note=note)


def _multiscale(dialect: Dialect, random: float, resize_step: float) -> MultiscaleRule | None:
    """The multi-scale rule of a detection layer's `random=` under `dialect` (None: one size)."""
    if not random:
        return None
    return AlexeyabMultiscale(random, resize_step) if dialect is ALEXEYAB else pjreddie_multiscale


def detector_training_loader(net, train_list: str | os.PathLike, *, dialect: Dialect, start_batch: int, seed: int,
                             workers: int, decoder: str, stride: int = 1,
                             log: Callable[[str], None] = print) -> DetectionLoader:
    """The training mini-batches of a detector (`detector train`): (images (B, 3, H, W), truths (B, T, 5)) from the
    images of `train_list`, augmented as `net`'s head and `dialect` call for (`training_data`), labels found by
    `dialect`'s rule; `log` gets Darknet's `Resizing` lines (and AlexeyAB's cutmix note). Raises a DataError before
    iteration 1 when no listed image has its label file."""
    data = training_data(net, dialect)
    options = net.options
    dataset = DetectionDataset.from_list(train_list, data.classes, size=(net.width, net.height),
                                         options=AugmentOptions(max=data.max_truths),
                                         classification_only=data.classification_only, decoder=decoder,
                                         dialect=dialect, augmenter=data.augmenter)
    dataset.require_a_sample()   # before iteration 1: a list whose labels are all missing trains nothing
    if data.note:
        log(data.note)
    return train_loader(dataset, options.batch, options.subdivisions, options.max_batches, start_batch=start_batch,
                        seed=seed, workers=workers, stride=stride, multiscale=data.multiscale, log=log)

