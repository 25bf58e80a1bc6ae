"""Dimension clusters (YOLOv2 paper, section 2): anchors from the training labels' box sizes.

k-means over (w, h) with distance 1 - IoU, each box and centroid aligned at a common corner, so only
their sizes count; k-means++ seeding and a few restarts, the best mean IoU kept. Anchors come out
sorted by area in the two units cfgs use:

- `[region]` (YOLOv2): grid cells of the last layer, w * width / 32 (yolo-voc.cfg's 1.08,1.19, ...
  are cells of its 13x13 grid at 416x416);
- `[yolo]` (YOLOv3, AlexeyAB's `calc_anchors -width 416 -height 416`): network input pixels, w * width.

`detector calc_anchors` is AlexeyAB's command (pjreddie's Darknet has none): it prints AlexeyAB's lines
(`AnchorResult.alexeyab_lines`) and writes its anchors.txt and counters_per_class.txt.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import numpy as np

from ..cfloat import running_sum
from ..errors import DataError
from .files import label_path, read_data_file, read_list
from .labels import CLASSIFICATION_ONLY_ABOVE, read_labels

GRID_STRIDE = 32        # DARKNET(cfg/yolo-voc.cfg): [region] anchors are cells of the stride-32 grid
DEFAULT_RESTARTS = 20   # k-means++ runs; the one with the best mean IoU is kept
MAX_ITERATIONS = 1000   # DARKNET(matrix.c:do_kmeans): AlexeyAB's iteration limit
RESTART_SAMPLE = 20_000  # boxes the restarts cluster; more only slow them down


class EmptyLabelWarning(UserWarning):
    """Listed images without a label file, or labels without a usable box, left out of the clusters."""


@dataclass(frozen=True)
class AnchorResult:
    """Anchors of a training set.

    anchors: (k, 2) relative w, h (fractions of the image), ascending area;
    width, height: the network input the anchors are scaled to; mean_iou: mean over the boxes of
    their best IoU with an anchor (AlexeyAB's "avg IoU", as a fraction); box_sizes: (N, 2) the
    relative w, h of the clustered boxes; notes: what was left out; images: the train list's length;
    counters_per_class: boxes per class id over every label line read (AlexeyAB's counters_per_class).
    """
    anchors: np.ndarray
    width: int
    height: int
    mean_iou: float
    box_sizes: np.ndarray
    notes: tuple[str, ...] = ()
    images: int = 0
    counters_per_class: tuple[int, ...] = ()

    @property
    def grid(self) -> np.ndarray:
        """(k, 2) anchors in `[region]` units: cells of the width/32 x height/32 grid."""
        return self.anchors * [self.width / GRID_STRIDE, self.height / GRID_STRIDE]

    @property
    def pixels(self) -> np.ndarray:
        """(k, 2) anchors in `[yolo]` units: pixels of the network input."""
        return self.anchors * [self.width, self.height]

    def region_line(self) -> str:
        """`anchors = 1.08,1.19, ...` for a `[region]` section (two decimals, as in yolo-voc.cfg)."""
        return "anchors = " + ", ".join(f"{w:.2f},{h:.2f}" for w, h in self.grid)

    def yolo_line(self) -> str:
        """`anchors = 10,13, ...` for a `[yolo]` section, rounded to whole pixels as AlexeyAB's `%3.0f`."""
        # DIVERGES: AlexeyAB pads each number to 3 characters; cfgs do not
        return "anchors = " + ", ".join(f"{w:.0f},{h:.0f}" for w, h in self.pixels)

    def alexeyab_anchors(self) -> str:
        """The anchors as AlexeyAB prints them and writes anchors.txt: pixels `%3.0f,%3.0f` joined by ", "."""
        # DARKNET(AlexeyAB detector.c:calc_anchors): whole pixels padded to 3; for a width <= 32 (anchors in
        # [region] grid cells, -width 13 -height 13) four decimals
        form = "{:3.0f},{:3.0f}" if self.width > 32 else "{:2.4f},{:2.4f}"
        return ", ".join(form.format(w, h) for w, h in self.pixels)

    def alexeyab_avg_iou(self) -> float:
        """AlexeyAB's printed avg IoU, in percent: float32 IoU of each box (pixels) with its nearest anchor
        (the first of equals), summed in box order in float32, times 100 over the number of boxes."""
        # DARKNET(AlexeyAB detector.c:calc_anchors): box sizes are float truth.w * width, float arithmetic
        boxes = self.box_sizes.astype(np.float32) * np.array([self.width, self.height], np.float32)   # [N, 2]
        anchors = self.pixels.astype(np.float32)                                                       # [k, 2]
        intersection = np.minimum(boxes[:, None, 0], anchors[:, 0]) * np.minimum(boxes[:, None, 1], anchors[:, 1])
        union = (boxes[:, 0] * boxes[:, 1])[:, None] + anchors[:, 0] * anchors[:, 1] - intersection
        iou = intersection / union                                                                     # [N, k]
        best = iou[np.arange(len(boxes)), np.argmin(1 - iou, axis=1)]
        total = running_sum(best)   # sequential, as the C loop
        return float(np.float32(100) * total / np.float32(len(boxes)))

    def alexeyab_lines(self) -> list[str]:
        """The lines AlexeyAB's `detector calc_anchors` prints (its empty lines included)."""
        # DARKNET(AlexeyAB detector.c:calc_anchors): its printf's, line by line; DIVERGES: the "\r loaded"
        # progress is printed once, with the final counts, and do_kmeans' " iterations = N" is left out (the
        # clusters here come from k-means++ restarts, not its one random start)
        return ["", f" num_of_clusters = {len(self.anchors)}, width = {self.width}, height = {self.height} ",
                f" read labels from {self.images} images ",
                f" loaded \t image: {self.images} \t box: {sum(self.counters_per_class)}", " all loaded. ",
                "", " calculating k-means++ ...", "", "",
                f"counters_per_class = {', '.join(map(str, self.counters_per_class))}",
                "", f" avg IoU = {self.alexeyab_avg_iou():2.2f} % ",
                "", "Saving anchors to the file: anchors.txt ", f"anchors = {self.alexeyab_anchors()}"]

    def write_alexeyab_files(self, folder: str | os.PathLike = ".") -> None:
        """DARKNET(AlexeyAB detector.c:calc_anchors): anchors.txt and counters_per_class.txt in the current folder,
        each one line without a newline."""
        Path(folder, "anchors.txt").write_text(self.alexeyab_anchors())
        Path(folder, "counters_per_class.txt").write_text(
            "counters_per_class = " + ", ".join(map(str, self.counters_per_class)))

    def report(self) -> list[str]:
        """The lines `detector calc_anchors` prints."""
        return [f"num_of_clusters = {len(self.anchors)}, width = {self.width}, height = {self.height}",
                f"boxes = {len(self.box_sizes)}",
                f"avg IoU = {100 * self.mean_iou:.2f} %",
                f"[region] {self.region_line()}",
                f"[yolo]   {self.yolo_line()}",
                *self.notes]


def calc_anchors(data_path: str | os.PathLike, num_of_clusters: int, width: int, height: int, seed: int = 0,
                 restarts: int = DEFAULT_RESTARTS, label_rule: Callable[[str], str] = label_path) -> AnchorResult:
    """Cluster the boxes of the `.data` file's train list into `num_of_clusters` anchors for a
    `width` x `height` network (AlexeyAB's `detector calc_anchors`, deterministic for a seed).
    label_rule: image path -> label path (`Dialect.label_path`; AlexeyAB's own: `files.alexeyab_label_path`)."""
    if num_of_clusters < 1 or width < 1 or height < 1:
        raise DataError(f"{data_path}: num_of_clusters, width and height must be positive, "
                        f"got {num_of_clusters}, {width}, {height}")
    sizes, notes, images, counters = _read_train_boxes(data_path, label_rule)
    if len(sizes) < num_of_clusters:
        raise DataError(f"{data_path}: {len(sizes)} boxes in the train list's labels, fewer than "
                        f"num_of_clusters={num_of_clusters}")
    anchors, mean_iou = kmeans_anchors(sizes, num_of_clusters, seed, restarts)
    return AnchorResult(anchors, width, height, mean_iou, sizes, tuple(notes), images, counters)


def read_box_sizes(data_path: str | os.PathLike) -> tuple[np.ndarray, list[str]]:
    """(N, 2) relative w, h of every box in the label files of the data file's train list, and notes
    on what was left out: images without a label file, classification-only lines, zero-size boxes."""
    sizes, notes, _, _ = _read_train_boxes(data_path)
    return sizes, notes


def _read_train_boxes(data_path: str | os.PathLike, label_rule: Callable[[str], str] = label_path
                      ) -> tuple[np.ndarray, list[str], int, tuple[int, ...]]:
    """`read_box_sizes`, and the train list's length and the boxes per class id of every label line read."""
    data = read_data_file(data_path, required=("train",))
    classes = data.classes
    images = read_list(data.get_path("train"))
    boxes, unlabelled = [], []
    for image in images:
        labels = Path(label_rule(image))
        if labels.is_file():
            boxes.append(read_labels(labels, classes)[:, 2:5])   # w, h, class
        else:
            unlabelled.append(str(labels))   # DARKNET(AlexeyAB detector.c:calc_anchors): skipped, not fatal
    read = np.concatenate(boxes).astype(np.float64) if boxes else np.zeros((0, 3))
    # DARKNET(AlexeyAB detector.c:calc_anchors): counters_per_class over every box read, .data classes long
    counters = tuple(int(n) for n in np.bincount(read[:, 2].astype(np.int64), minlength=classes))
    sizes = read[:, :2]
    notes = []
    if unlabelled:
        notes.append(f"{len(unlabelled)} of {len(images)} images have no label file, first: {unlabelled[0]}")
    classification_only = sizes[:, 0] > CLASSIFICATION_ONLY_ABOVE
    empty = ~classification_only & ((sizes <= 0).any(axis=1))
    if classification_only.any():
        notes.append(f"{classification_only.sum()} classification-only label line(s) have no box")
    if empty.any():
        # DIVERGES: AlexeyAB counts a zero-size box with IoU 0 in its average
        notes.append(f"{empty.sum()} box(es) of zero width or height left out")
    for note in notes:
        warnings.warn(f"{data_path}: {note}", EmptyLabelWarning, stacklevel=3)
    return sizes[~classification_only & ~empty], notes, len(images), counters


def wh_iou(sizes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(N, k) IoU of boxes (N, 2) w, h with anchors (k, 2) w, h, all sharing a corner."""
    intersection = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * \
        np.minimum(sizes[:, None, 1], anchors[None, :, 1])   # [N, k]
    union = (sizes[:, 0] * sizes[:, 1])[:, None] + anchors[:, 0] * anchors[:, 1] - intersection
    return intersection / union


def kmeans_anchors(sizes: np.ndarray, k: int, seed: int = 0, restarts: int = DEFAULT_RESTARTS
                   ) -> tuple[np.ndarray, float]:
    """The k centroids (k, 2) of `sizes` (N, 2) under 1 - IoU, ascending area, and their mean best IoU.

    Each of `restarts` runs seeds with k-means++ and iterates to a fixed assignment; the best run
    wins. Past RESTART_SAMPLE boxes the restarts run on a random sample and the winner is then
    iterated on every box.
    """
    rng = np.random.default_rng(seed)
    boxes = sizes.astype(np.float32)   # the iterations in float32: twice as fast, the same clusters
    sample = boxes if len(boxes) <= RESTART_SAMPLE else boxes[rng.choice(len(boxes), RESTART_SAMPLE, replace=False)]
    runs = [_lloyd(sample, _kmeans_plus_plus(sample, k, rng)) for _ in range(max(1, restarts))]
    anchors = max(runs, key=lambda centroids: mean_best_iou(sample, centroids))
    if sample is not boxes:
        anchors = _lloyd(boxes, anchors)
    anchors = anchors.astype(np.float64)[np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")]  # AlexeyAB: by area
    return anchors, mean_best_iou(np.asarray(sizes, np.float64), anchors)


def mean_best_iou(sizes: np.ndarray, anchors: np.ndarray) -> float:
    """Mean over the boxes of the IoU with their best anchor."""
    return float(wh_iou(sizes, anchors).max(axis=1).mean())


def plot_anchors(result: AnchorResult, path: str | os.PathLike) -> Path:
    """Write a picture (`-show`): the boxes' w, h in network pixels with the anchors marked; no window."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    boxes = result.box_sizes * [result.width, result.height]
    axes.scatter(boxes[:, 0], boxes[:, 1], s=3, alpha=0.3, color="tab:blue", label=f"{len(boxes)} boxes")
    axes.scatter(result.pixels[:, 0], result.pixels[:, 1], s=120, marker="x", color="tab:red",
                 label=f"{len(result.anchors)} anchors")
    axes.set(xlabel=f"width (pixels of {result.width})", ylabel=f"height (pixels of {result.height})",
             title=f"avg IoU {100 * result.mean_iou:.2f} %", xlim=(0, result.width), ylim=(0, result.height))
    axes.legend(loc="upper left")
    figure.savefig(path)
    return Path(path)


def _kmeans_plus_plus(sizes: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next centroid a box drawn with probability proportional to its squared
    distance (1 - IoU) to the nearest centroid so far."""
    centroids = [sizes[rng.integers(len(sizes))]]
    distance = 1 - wh_iou(sizes, centroids[0][None])[:, 0]
    for _ in range(1, k):
        weights = distance.astype(np.float64) ** 2
        total = weights.sum()
        index = rng.choice(len(sizes), p=weights / total) if total > 0 else rng.integers(len(sizes))
        centroids.append(sizes[index])
        distance = np.minimum(distance, 1 - wh_iou(sizes, sizes[index][None])[:, 0])
    return np.array(centroids)


def _lloyd(sizes: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Assign each box to its best-IoU centroid, move the centroids to their boxes' mean w, h, repeat
    until no box changes cluster; an emptied cluster restarts at the worst-fitting box."""
    k = len(centroids)
    assignment = None
    for _ in range(MAX_ITERATIONS):
        iou = wh_iou(sizes, centroids)   # [N, k]
        nearest = iou.argmax(axis=1)
        if assignment is not None and np.array_equal(nearest, assignment):
            break
        assignment = nearest
        counts = np.bincount(assignment, minlength=k)
        sums = np.stack([np.bincount(assignment, weights=sizes[:, axis], minlength=k) for axis in (0, 1)], axis=1)
        empty = counts == 0
        centroids = (sums / np.maximum(counts, 1)[:, None]).astype(sizes.dtype)
        if empty.any():
            worst = np.argsort(iou.max(axis=1))[:empty.sum()]
            centroids[empty] = sizes[worst]
    return centroids
