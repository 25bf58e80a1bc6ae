"""Classification samples as Darknet's `classifier train` and `classifier valid` load them.

Training (DARKNET(data.c:load_data_augment)): a random rotated, rescaled and shifted crop of the image
(image.c:random_augment_image), a mirror with probability 1/2, then the HSV distortion of detection
training. Validation (DARKNET(classifier.c:validate_classifier_single)): the central square, resized.

Labels come from the image path, not from a label file: label i of the `labels=` list is set when the
path contains that string (data.c:fill_truth). With a WordTree the truth becomes hierarchical
(data.c:fill_hierarchy): every ancestor of a set node is set too, and every group holding no set
node is filled with `SECRET_NUM`, which the softmax loss skips.

Images are (3, H, W) float32 RGB in [0, 1]; truths are (k,) float32, k = the `classes=` count.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ..image import image_to_chw, load_image, resize_image
from ..tree import WordTree
from .augment import rand_scale, rand_uniform, random_distort_image, zero_means_unchanged
from .dataset import (BAD_SAMPLE_ERRORS, DarknetBatchSampler, DetectionLoader, SampleKey, SkippedSample,
                      collate_detections)
from .files import DataConfig, read_names

SECRET_NUM = -1234.0   # DARKNET(darknet.h): a truth value the losses leave out


class LabelCountWarning(UserWarning):
    """An image path contains no label, or several (Darknet: "Too many or too few labels")."""


@dataclass(frozen=True)
class CropOptions:
    """The `[net]` options that drive the training crop, named as in the cfg.

    `min`, `max`: range of the length, in input pixels, the image's shorter side is scaled to
    (Darknet's `args.min/max`);
    `angle`: rotation range in degrees; `aspect`: aspect-ratio jitter (a factor in [1/aspect, aspect]).
    """

    min: int
    max: int
    angle: float = 0.0
    aspect: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0

    def __post_init__(self):
        zero_means_unchanged(self, "saturation", "exposure", "aspect")


def path_truth(path: str, labels: Sequence[str]) -> np.ndarray:
    """(k,) float32, 1 for every label string found in `path`, 0 elsewhere (data.c:fill_truth).

    Warns (LabelCountWarning) unless exactly one label matches; a single-label list may match none.
    """
    truth = np.array([label in path for label in labels], dtype=np.float32)
    count = int(truth.sum())
    if count != 1 and (len(labels) != 1 or count != 0):
        warnings.warn(f"Too many or too few labels: {count}, {path}", LabelCountWarning, stacklevel=2)
    return truth


def fill_hierarchy(truth: np.ndarray, tree: WordTree) -> np.ndarray:
    """The hierarchical truth (n,) float32 for a flat one (n,); see the module docstring.

    DARKNET(data.c:fill_hierarchy): set nodes keep their value, their ancestors become 1, and a group
    without any nonzero entry becomes SECRET_NUM, so only the groups along the labelled paths train.
    """
    if truth.shape != (tree.n,):
        raise ValueError(f"truth of shape {truth.shape} for a tree of {tree.n} nodes")
    out = truth.astype(np.float32, copy=True)
    ancestors = [a for node in np.flatnonzero(truth) for a in tree.path(int(node))[1:]]
    out[ancestors] = 1
    # groups are contiguous node ranges, so a segment reduction finds the groups holding a label
    labelled_group = np.logical_or.reduceat(out != 0, tree.group_offset)
    out[~labelled_group[tree.group]] = SECRET_NUM
    return out


def classification_truth(path: str, labels: Sequence[str], tree: WordTree | None = None) -> np.ndarray:
    """DARKNET(data.c:load_labels_paths): the truth of one image, hierarchical with a tree."""
    truth = path_truth(path, labels)
    return fill_hierarchy(truth, tree) if tree is not None else truth


def class_of_path(path: str, labels: Sequence[str]) -> int:
    """The first label found in `path`, or -1 (DARKNET(classifier.c:validate_classifier_single))."""
    return next((i for i, label in enumerate(labels) if label in path), -1)


def rotate_crop_image(image: np.ndarray, rad: float, scale: float, w: int, h: int, dx: float, dy: float,
                      aspect: float) -> np.ndarray:
    """A (3, h, w) crop of `image` (3, H, W) rotated by `rad`, scaled by `scale` and shifted by (dx, dy).

    DARKNET(image.c:rotate_crop_image): output pixel (x, y) samples the source bilinearly around the
    source centre; source pixels outside the image read as 0 (image.c:get_pixel_extend).
    """
    _, src_h, src_w = image.shape
    x = np.arange(w, dtype=np.float64)[None, :]
    y = np.arange(h, dtype=np.float64)[:, None]
    u = (x - w / 2.) / scale * aspect + dx / scale * aspect          # [1, w]
    v = (y - h / 2.) / scale + dy / scale                            # [h, 1]
    rx = (np.cos(rad) * u - np.sin(rad) * v + src_w / 2.).astype(np.float32)   # [h, w]
    ry = (np.sin(rad) * u + np.cos(rad) * v + src_h / 2.).astype(np.float32)
    ix, iy = np.floor(rx), np.floor(ry)
    fx, fy = rx - ix, ry - iy
    padded = np.pad(image.astype(np.float32, copy=False), ((0, 0), (1, 1), (1, 1)))
    col, col1 = _padded_index(ix, src_w), _padded_index(ix + 1, src_w)
    row, row1 = _padded_index(iy, src_h), _padded_index(iy + 1, src_h)
    return ((1 - fy) * (1 - fx) * padded[:, row, col] + fy * (1 - fx) * padded[:, row1, col]
            + (1 - fy) * fx * padded[:, row, col1] + fy * fx * padded[:, row1, col1]).astype(np.float32)


def _padded_index(index: np.ndarray, size: int) -> np.ndarray:
    """Pixel indices into an image padded with one ring of zeros: every index outside the image
    lands on the ring, so it reads 0."""
    return np.clip(index.astype(np.int64), -1, size) + 1


def random_augment_image(image: np.ndarray, rng: np.random.Generator, options: CropOptions,
                         w: int, h: int) -> np.ndarray:
    """Darknet's random training crop (3, h, w) of `image` (3, H, W) (image.c:random_augment_args)."""
    _, src_h, src_w = image.shape
    aspect = rand_scale(rng, options.aspect)
    low, high = sorted((options.min, options.max))
    side = int(rng.integers(low, high + 1))
    # DARKNET(image.c:random_augment_args): the shorter side (after aspect), truncated to int
    shorter = int(src_h if src_h < src_w * aspect else src_w * aspect)
    scale = side / shorter
    rad = rand_uniform(rng, -options.angle, options.angle) * 2 * np.pi / 360.
    dx = (src_w * scale / aspect - w) / 2.
    # DARKNET(image.c:random_augment_args): the vertical slack is measured against the crop WIDTH
    dy = (src_h * scale - w) / 2.
    dx = rand_uniform(rng, -dx, dx)
    dy = rand_uniform(rng, -dy, dy)
    return rotate_crop_image(image, rad, scale, w, h, dx, dy, aspect)


def augment_classification(image: np.ndarray, options: CropOptions, w: int, h: int,
                           rng: np.random.Generator) -> np.ndarray:
    """One training input (3, h, w) float32 from an (H, W, 3) uint8 RGB image (data.c:load_image_augment_paths)."""
    crop = random_augment_image(image_to_chw(image), rng, options, w, h)
    if rng.integers(2):
        crop = crop[:, :, ::-1]
    return np.ascontiguousarray(random_distort_image(crop, rng, options.hue, options.saturation, options.exposure))


def center_crop_image(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """The central square of `image` (3, H, W) resized to (3, h, w) (image.c:center_crop_image)."""
    _, src_h, src_w = image.shape
    side = min(src_w, src_h)
    x0, y0 = (src_w - side) // 2, (src_h - side) // 2
    return resize_image(image[:, y0:y0 + side, x0:x0 + side], w, h)


class ClassificationDataset(Dataset):
    """Training images of a list with their path-derived truths.

    `dataset[key]` gives `(image (3, h, w), truth (k,))` tensors, a random training crop whose size
    and random stream come from the SampleKey, or a SkippedSample. `tree` makes the truths hierarchical.
    """

    def __init__(self, paths: Sequence[str], labels: Sequence[str], size: tuple[int, int], options: CropOptions,
                 tree: WordTree | None = None, decoder: str = "stb"):
        if not paths:
            raise ValueError("ClassificationDataset needs at least one image path")
        if tree is not None and tree.n != len(labels):
            raise ValueError(f"{len(labels)} labels for a tree of {tree.n} nodes")
        self.paths, self.labels, self.size, self.options, self.tree = list(paths), list(labels), size, options, tree
        self.decoder = decoder   # see image.load_image

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | SampleKey) -> tuple[Tensor, Tensor] | SkippedSample:
        if not isinstance(key, SampleKey):
            key = SampleKey(int(key), *self.size, rng_key=(int(key),))
        path = self.paths[key.index]
        try:
            image = load_image(path, self.decoder)
        except BAD_SAMPLE_ERRORS as exc:
            return SkippedSample(path, str(exc))
        chw = augment_classification(image, self.options, key.w, key.h, np.random.default_rng(key.rng_key))
        return torch.from_numpy(chw), torch.from_numpy(classification_truth(path, self.labels, self.tree))


def classification_train_loader(dataset: ClassificationDataset, batch: int, subdivisions: int, max_batches: int, *,
                                start_batch: int = 0, seed: int = 0, workers: int = 2,
                                stride: int = 1) -> DetectionLoader:
    """Training mini-batches (images (B, 3, h, w), truths (B, k)) for steps start_batch..max_batches-1
    (every `stride`-th: see `DarknetBatchSampler`).

    DARKNET(classifier.c:train_classifier): every step draws batch images at random with replacement.
    """
    sampler = DarknetBatchSampler(len(dataset), batch, subdivisions, max_batches, dataset.size, start_batch,
                                  random=False, seed=seed, stride=stride)
    return DetectionLoader(DataLoader(dataset, batch_sampler=sampler, num_workers=workers,
                                      collate_fn=collate_detections))


def classification_valid_loader(paths: Sequence[str], size: tuple[int, int], batch_size: int,
                                workers: int = 2) -> DataLoader:
    """(indices (B,), centre crops (B, 3, h, w)) of every image once, in list order.

    A bad image raises: Darknet's validation stops there too.
    """
    return DataLoader(_CentreCrops(paths, size), batch_size=batch_size, shuffle=False, num_workers=workers)


class _CentreCrops(Dataset):
    def __init__(self, paths: Sequence[str], size: tuple[int, int]):
        self.paths, self.size = list(paths), size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, Tensor]:
        image = image_to_chw(load_image(self.paths[index]))
        return index, torch.from_numpy(center_crop_image(image, *self.size))


def class_labels(data: DataConfig, classes: int) -> list[str]:
    """The first `classes` names of the .data file's `labels=` list."""
    labels = read_names(data.get_path("labels", "data/labels.list"))
    if len(labels) < classes:
        raise data.error(f"classes={classes} but the labels file lists {len(labels)} labels", "labels")
    return labels[:classes]
