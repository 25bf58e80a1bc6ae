"""The synthetic detection dataset: layout, labels that match the pixels, determinism by seed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pydarknet.data.dataset import DetectionDataset
from pydarknet.data.files import label_path, read_data_file, read_list, read_names
from pydarknet.data.labels import read_labels
from pydarknet.data.synth import ShapeScheme, make_synth
from pydarknet.image import load_image


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth") / "out", train=12, valid=4, size=160, seed=1)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_layout_and_data_file(synth, tmp_path, monkeypatch):
    out = synth.parent
    monkeypatch.chdir(tmp_path)    # the dataset must not depend on the working directory
    config = read_data_file(synth, required=("classes", "train", "valid", "names", "backup"))
    assert config.classes == 5
    assert read_names(config.get_path("names")) == ["circle", "square", "triangle", "cross", "ring"]
    assert config.get_path("backup").is_dir()
    train, valid = read_list(config.get_path("train")), read_list(config.get_path("valid"))
    assert len(train) == 12 and len(valid) == 4 and not set(train) & set(valid)
    for image in train + valid:
        assert Path(image).is_absolute() and Path(image).parent == out / "images" and Path(image).is_file()
        assert Path(label_path(image)).is_file()


def test_labels_are_valid_and_objects_not_tiny(synth):
    counts = []
    for image_path in read_list(synth.parent / "train.txt"):
        truths = read_labels(label_path(image_path), classes=5)
        counts.append(len(truths))
        assert np.all(truths[:, 0] - truths[:, 2] / 2 >= 0) and np.all(truths[:, 0] + truths[:, 2] / 2 <= 1)
        assert np.all(truths[:, 1] - truths[:, 3] / 2 >= 0) and np.all(truths[:, 1] + truths[:, 3] / 2 <= 1)
        assert np.all(truths[:, 2:4] >= 0.05)
    assert min(counts) >= 1 and max(counts) <= 4 and len(set(counts)) > 1


def test_box_centres_have_the_class_colour(synth):
    """Where no other box covers it, a (non-ring) object's centre pixel is nearest its class colour."""
    scheme = ShapeScheme()
    palette = np.array([scheme.colours[name] for name in scheme.names], dtype=float)
    checked = 0
    for image_path in read_list(synth.parent / "train.txt") + read_list(synth.parent / "valid.txt"):
        image = load_image(image_path).astype(float)
        truths = read_labels(label_path(image_path), classes=5)
        height, width = image.shape[:2]
        for i, (x, y, _w, _h, cls) in enumerate(truths):
            others = np.delete(truths, i, axis=0)
            covered = np.any((np.abs(others[:, 0] - x) < others[:, 2] / 2) & (np.abs(others[:, 1] - y) < others[:, 3] / 2))
            if scheme.names[int(cls)] == "ring" or covered:
                continue
            pixel = image[int(y * height), int(x * width)]
            assert np.argmin(np.abs(palette - pixel).sum(axis=1)) == cls
            checked += 1
    assert checked >= 10


def test_same_seed_gives_identical_bytes(synth, tmp_path):
    out = synth.parent
    again = make_synth(tmp_path / "again", train=12, valid=4, size=160, seed=1).parent
    ours, theirs = files_of(out), files_of(again)
    assert ours.keys() == theirs.keys()
    for name, content in ours.items():
        # lists and the .data file hold absolute paths: equal up to the output folder
        assert content.replace(bytes(str(out), "utf8"), b"OUT") == theirs[name].replace(bytes(str(again), "utf8"), b"OUT"), name
    assert files_of(out / "images") == files_of(again / "images")


def test_other_seed_gives_other_images(synth, tmp_path):
    other = make_synth(tmp_path / "other", train=2, valid=1, size=160, seed=2).parent
    assert (other / "images" / "train_00000.jpg").read_bytes() != (synth.parent / "images" / "train_00000.jpg").read_bytes()


def test_train_images_do_not_depend_on_the_valid_count(synth, tmp_path):
    fewer = make_synth(tmp_path / "fewer", train=3, valid=1, size=160, seed=1).parent
    for i in range(3):
        name = f"train_{i:05d}"
        assert (fewer / "images" / f"{name}.jpg").read_bytes() == (synth.parent / "images" / f"{name}.jpg").read_bytes()
        assert (fewer / "labels" / f"{name}.txt").read_bytes() == (synth.parent / "labels" / f"{name}.txt").read_bytes()


def test_image_sizes_follow_size(synth):
    sizes = {load_image(p).shape[:2] for p in read_list(synth.parent / "train.txt")}
    assert all(80 <= side <= 160 for size in sizes for side in size) and len(sizes) > 3


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="train=0"):
        make_synth(tmp_path, train=0, valid=1)
    with pytest.raises(ValueError, match="too small"):
        make_synth(tmp_path, train=1, valid=1, size=32)


def test_dataset_reads_synth(synth):
    config = read_data_file(synth)
    dataset = DetectionDataset.from_list(config.get_path("train"), config.classes, size=(96, 96))
    image, truth = dataset[0]
    assert image.shape == (3, 96, 96)
    assert len(read_labels(label_path(dataset.paths[0]), 5)) == int((truth[:, 0] != 0).sum())
