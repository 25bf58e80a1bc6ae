"""The hierarchical synthetic dataset and YOLO9000-style joint training on it (`make demo9000`)."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from pydarknet.data.dataset import DetectionDataset, training_data
from pydarknet.data.files import label_path, read_data_file, read_list, read_names
from pydarknet.data.labels import CLASSIFICATION_ONLY_VALUE, read_labels
from pydarknet.data.synth9k import PREFIX, Hierarchy, make_synth9k
from pydarknet.dialect import PJREDDIE
from pydarknet.demo9000 import DEMO_CFG, mapped_map, run_demo
from pydarknet.engine.sgd import DarknetSGD
from pydarknet.engine.step import train_step
from pydarknet.image import load_image
from pydarknet.network import Darknet, load_network
from pydarknet.tree import WordTree, read_map

REPO = Path(__file__).resolve().parent.parent
HIERARCHY = Hierarchy()


@pytest.fixture(scope="module")
def synth9k(tmp_path_factory) -> Path:
    return make_synth9k(tmp_path_factory.mktemp("synth9k") / "out", det=8, cls=8, valid=4, size=128, seed=3)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_shipped_tree_names_and_map_are_the_hierarchy(tmp_path):
    written = HIERARCHY.write_files(tmp_path)
    for suffix in ("tree", "names", "map"):
        assert (REPO / "data" / f"{PREFIX}.{suffix}").read_text() == written[suffix].read_text(), suffix


def test_tree_and_maps_are_consistent():
    tree = WordTree.read(REPO / "data" / f"{PREFIX}.tree", REPO / "data" / f"{PREFIX}.names")
    coarse = read_map(REPO / "data" / f"{PREFIX}.map")
    assert tree.n == 16 and tree.groups == 5
    assert [tree.names[node] for node in coarse] == list(HIERARCHY.shapes)
    assert coarse.tolist() != list(range(len(coarse)))          # a real mapping, as coco9k.map
    fine = np.array(HIERARCHY.fine_map)
    assert tree.leaf[fine].all() and sorted(fine.tolist()) == np.flatnonzero(tree.leaf).tolist()
    np.testing.assert_array_equal(tree.parent[fine], coarse[HIERARCHY.fine_coarse])
    assert [tree.names[node] for node in fine] == HIERARCHY.fine_names


def test_same_seed_same_bytes(synth9k, tmp_path):
    again = make_synth9k(tmp_path / "out", det=8, cls=8, valid=4, size=128, seed=3)
    first, second = files_of(synth9k.parent), files_of(again.parent)
    images = [name for name in first if name.startswith(("images", "labels"))]
    assert images and all(first[name] == second[name] for name in images)


def test_data_file_lists_and_label_kinds(synth9k):
    out = synth9k.parent
    config = read_data_file(synth9k, required=("classes", "train", "valid", "names", "backup", "map"))
    assert config.classes == 16 and len(read_names(config.get_path("names"))) == 16
    assert read_map(config.get_path("map")).tolist() == HIERARCHY.fine_map
    train = read_list(config.get_path("train"))
    assert train == read_list(out / "det.txt") + read_list(out / "cls.txt")
    n_coarse, n_fine = len(HIERARCHY.shapes), len(HIERARCHY.fine)
    for image in read_list(out / "det.txt"):
        rows = read_labels(label_path(image), config.classes)
        assert len(rows) >= 1 and (rows[:, 4] < n_coarse).all() and (rows[:, 0] < 1).all()
    for image in read_list(out / "cls.txt"):
        text = Path(label_path(image)).read_text().split()
        assert len(text) == 5 and text[1:] == ["0"] * 4 and int(text[0]) in HIERARCHY.fine_map
        rows = read_labels(label_path(image), config.classes)
        assert rows.shape == (1, 5) and (rows[0, :4] == CLASSIFICATION_ONLY_VALUE).all()
    for image in read_list(config.get_path("valid")):
        rows = read_labels(label_path(image), n_fine)
        assert len(rows) >= 1 and (rows[:, 0] < 1).all()


def test_box_centres_show_the_labelled_colour(synth9k):
    """Every filled shape covers its box centre: the pixel there has the fine class's colour."""
    palette = np.array([rgb for _, _, rgb in HIERARCHY.fine], dtype=float)
    for image_path in read_list(synth9k.parent / "valid.txt"):
        image = load_image(image_path).astype(float)
        height, width = image.shape[:2]
        for x, y, _, _, fine in read_labels(label_path(image_path), len(HIERARCHY.fine)):
            pixel = image[int(y * height), int(x * width)]
            nearest = np.argmin(((palette - pixel) ** 2).sum(axis=1))
            assert nearest == int(fine)


def test_joint_training_step_gives_both_kinds_of_deltas(synth9k):
    """A mixed mini-batch: detection images train boxes and ROOT classes (mapped), classification-only
    images train the class path down to their FINE leaf at one cell, and no box."""
    torch.manual_seed(0)
    net = Darknet.from_cfg(DEMO_CFG)
    region = net.region
    out = synth9k.parent
    paths = read_list(out / "det.txt")[:2] + read_list(out / "cls.txt")[:2]
    dataset = DetectionDataset(paths, region.options.classes, size=(net.width, net.height),
                               options=training_data(net, PJREDDIE).augmenter.options)
    images, truths = (torch.stack(items) for items in zip(*(dataset[i] for i in range(4))))
    net.options.batch = 4
    result = train_step(net, images, truths, DarknetSGD(net), seen=20000)
    delta = result.loss.delta                                     # [B, A, 5+C, H, W]
    tree = region.tree
    class_delta = delta[:, :, 5:].abs().sum(dim=(1, 3, 4))        # [B, C]
    leaf = torch.from_numpy(tree.leaf)
    det, cls = slice(0, 2), slice(2, 4)
    assert (delta[det, :, :4] != 0).any() and (class_delta[det][:, ~leaf] > 0).any()
    assert (class_delta[det][:, leaf] == 0).all()                 # detection labels stop at the coarse roots
    assert (delta[cls, :, :4] == 0).all()                         # no box for classification-only truths
    for b in range(2, 4):
        node = int(truths[b, 0, 4])
        touched = set(np.flatnonzero(class_delta[b].numpy() > 0).tolist())
        groups = {int(tree.group[n]) for n in tree.path(node)}
        assert touched == {n for n in range(tree.n) if tree.group[n] in groups}
        assert ((delta[b, :, 5:] != 0).flatten(2).any(1).sum()) == 1  # the class deltas sit at one anchor/cell


@pytest.mark.slow
def test_demo9000_pipeline_at_toy_size(tmp_path, capsys, monkeypatch):
    """`make demo9000` end to end on a few images (the mAP target itself needs the full run)."""
    monkeypatch.chdir(tmp_path)
    fine_map, coarse_map = run_demo(tmp_path / "demo", det=8, cls=8, valid=4, seed=0, max_batches=2, workers=0)
    printed = capsys.readouterr().out
    assert re.search(r"^2: \d+\.\d{6}, \d+\.\d{6} avg, ", printed, re.M)           # Darknet's training line
    assert f"demo9000: fine-class mAP@0.5 = {fine_map:.4f}" in printed
    assert f"coarse-class mAP@0.5 = {coarse_map:.4f}, on 4 validation images" in printed
    assert cv2.imread(str(tmp_path / "demo" / "predictions.jpg")) is not None
    data = tmp_path / "demo" / "data"
    net = load_network(DEMO_CFG, data / "backup" / "synth9k-tiny_final.weights")
    paths = read_list(data / "valid.txt")
    fine = mapped_map(net, paths, HIERARCHY.fine_map, np.arange(len(HIERARCHY.fine)), workers=0)
    coarse = mapped_map(net, paths, HIERARCHY.coarse_map, HIERARCHY.fine_coarse, workers=0)
    assert fine.ap.shape == (12,) and coarse.ap.shape == (4,)
    assert coarse.num_positives.sum() == fine.num_positives.sum() > 0
    assert fine.mean_ap == pytest.approx(fine_map, nan_ok=True) and coarse.mean_ap == pytest.approx(coarse_map)
