"""`classifier valid`: top-1 / top-k accuracy as DARKNET(classifier.c:validate_classifier_single)."""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..data.classification import class_labels, class_of_path, classification_valid_loader
from ..data.files import read_data_file, read_list, read_names
from ..network import Darknet, network_mode
from ..predict import top_k
from ..tree import WordTree

VALID_BATCH = 8          # images per forward in `validate_classifier`; only float rounding depends on it


@dataclass(frozen=True)
class ClassifierAccuracy:
    """Top-1 and top-k accuracy over `images` validation images."""

    top1: float
    topk: float
    k: int
    images: int


def leaf_mask(tree: WordTree, leaves_path: str | os.PathLike | None = None) -> np.ndarray:
    """(n,) bool: the nodes whose probability counts, the tree's leaves or those a `leaves=` file names.

    DARKNET(tree.c:change_leaves): with a leaves file, exactly the nodes whose wnid it lists.
    """
    if leaves_path is None:
        return tree.leaf.copy()
    return np.isin(np.array(tree.name), read_names(leaves_path))


@torch.no_grad()
def validate_classifier(net: Darknet, data_path: str | os.PathLike, *, workers: int = 2,
                        batch: int = VALID_BATCH, log: Callable[[str], None] = print) -> ClassifierAccuracy:
    """`darknet classifier valid data cfg weights`: top-1/top-k accuracy on the `valid=` list.

    .data keys: `classes` (2), `valid` (data/train.list), `labels` (data/labels.list), `top` (1),
    `leaves`. Prints, per image, Darknet's two lines (path, true class, first two probabilities;
    the running accuracies).
    """
    data = read_data_file(data_path)
    classes = data.get_int("classes", 2)
    topk = data.get_int("top", 1)
    labels = class_labels(data, classes)
    paths = read_list(data.get_path("valid", "data/train.list"))
    # DARKNET(parser.c:parse_network_cfg): net->hierarchy is the tree of a [softmax] layer
    tree = net.hierarchy
    if tree is not None:
        leaves = torch.from_numpy(leaf_mask(tree, data.get_path("leaves") if data.has("leaves") else None))
    top1_hits = topk_hits = 0
    with network_mode(net, False):
        for indices, images in classification_valid_loader(paths, (net.width, net.height), batch, workers):
            probs = net(images.to(net.device)).flatten(1).float().cpu()
            if tree is not None:
                # DARKNET(classifier.c:validate_classifier_single): hierarchy_predictions with only_leaves=1
                probs = tree.hierarchy_predictions(probs, dim=1) * leaves
            best = top_k(probs[:, :classes], topk)
            for index, row, order in zip(indices.tolist(), probs, best.tolist()):
                truth = class_of_path(paths[index], labels)
                top1_hits += order[0] == truth
                topk_hits += truth in order
                seen = np.float32(index + 1)
                log(f"{paths[index]}, {truth}, {float(row[0]):f}, {float(row[1]):f}, ")
                log(f"{index}: top 1: {np.float32(top1_hits) / seen:f}, top {topk}: {np.float32(topk_hits) / seen:f}")
    return ClassifierAccuracy(top1_hits / len(paths), topk_hits / len(paths), topk, len(paths))
