"""`classifier train` / `classifier valid`: path labels, WordTree truths, softmax loss, loop, backups, output."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.data.classification import (SECRET_NUM, CropOptions, LabelCountWarning, augment_classification,
                                           center_crop_image, class_of_path, fill_hierarchy, path_truth,
                                           rotate_crop_image)
from pydarknet.engine import classifier as engine
from pydarknet.engine.classifier import ClassifierForward, classifier_step, crop_options, train_classifier
from pydarknet.losses.softmax import classifier_loss
from pydarknet.evaluate import validate_classifier
from pydarknet.predict import top_k
from pydarknet.engine.sgd import DarknetSGD
from pydarknet.image import save_image
from pydarknet.layers.structure import CostLayer
from pydarknet.network import Darknet, load_network
from pydarknet.tree import WordTree

# A toy WordTree: two roots, two colours under each; labels are the wnids (found in image paths)
TREE_LINES = [("Lwarm", -1), ("Lcool", -1), ("Lred", 0), ("Lyellow", 0), ("Lblue", 1), ("Lgreen", 1)]
COLOURS = {"Lred": (220, 40, 40), "Lyellow": (230, 210, 40), "Lblue": (40, 70, 230), "Lgreen": (40, 190, 60)}

# no batch norm: its rolling statistics (momentum .01) would need far more than the test's 60 mini-batches
CFG = """[net]
batch=8
subdivisions=2
width=24
height=24
channels=3
momentum=0.9
decay=0.0005
learning_rate=0.05
policy=constant
max_batches=100
min_crop=24
max_crop=32
angle=5
aspect=.9
saturation=1.2
exposure=1.2

[convolutional]
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters={classes}
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1
{softmax}
{cost}
"""


def toy_tree() -> WordTree:
    return WordTree([wnid for wnid, _ in TREE_LINES], [parent for _, parent in TREE_LINES])


def write_cfg(folder: Path, tree: bool, cost: str = "") -> Path:
    (folder / "toy.tree").write_text("".join(f"{wnid} {parent}\n" for wnid, parent in TREE_LINES))
    cfg = folder / ("toy-tree.cfg" if tree else "toy.cfg")
    cfg.write_text(CFG.format(classes=6 if tree else 2, softmax=f"tree={folder / 'toy.tree'}" if tree else "",
                              cost=cost))
    return cfg


def write_images(folder: Path, labels: list[str], count: int, seed: int) -> list[str]:
    """`count` noisy 32x40 images per label, each a blob of the label's colour; the label is in the path."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        for label in labels:
            image = np.clip(rng.normal(128, 20, (32, 40, 3)), 0, 255)
            image[6:26, 8:32] = np.clip(np.array(COLOURS[label]) + rng.normal(0, 15, (20, 24, 3)), 0, 255)
            path = folder / "images" / f"{label}_{i:03d}.png"
            save_image(path, image.astype(np.uint8))
            paths.append(str(path))
    return paths


def write_data(folder: Path, labels: list[str], classes: int, top: int = 1) -> Path:
    train = write_images(folder / "train", labels, 8, seed=1)
    valid = write_images(folder / "valid", labels, 3, seed=2)
    (folder / "train.list").write_text("".join(f"{p}\n" for p in train))
    (folder / "valid.list").write_text("".join(f"{p}\n" for p in valid))
    (folder / "labels.list").write_text("".join(f"{wnid}\n" for wnid, _ in TREE_LINES[:classes])
                                        if classes == 6 else "".join(f"{label}\n" for label in labels))
    data = folder / "toy.data"
    data.write_text(f"classes={classes}\ntrain={folder / 'train.list'}\nvalid={folder / 'valid.list'}\n"
                    f"labels={folder / 'labels.list'}\nbackup={folder / 'backup'}\ntop={top}\n")
    return data


# ---------------------------------------------------------------------------- truths

def test_fill_truth_sets_every_label_found_in_the_path():
    labels = ["Lred", "Lblue", "Lgreen"]
    np.testing.assert_array_equal(path_truth("/x/images/Lblue_001.png", labels), [0, 1, 0])
    with pytest.warns(LabelCountWarning, match="Too many or too few labels: 2"):
        np.testing.assert_array_equal(path_truth("/Lred/Lgreen.png", labels), [1, 0, 1])
    with pytest.warns(LabelCountWarning, match="Too many or too few labels: 0"):
        path_truth("/x/plain.png", labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path_truth("/x/plain.png", ["Lred"])   # DARKNET(data.c:fill_truth): one label may match nothing
    assert class_of_path("/Lred/Lgreen.png", labels) == 0 and class_of_path("/x.png", labels) == -1


def test_fill_hierarchy_on_a_toy_tree():
    # roots a b | a: c d | b: e f | d: g h
    tree = WordTree(list("abcdefgh"), [-1, -1, 0, 0, 1, 1, 3, 3])
    S = SECRET_NUM
    leaf_g = np.eye(8, dtype=np.float32)[6]
    # the path g -> d -> a is set, its groups' other members are 0, the group {e, f} is masked
    np.testing.assert_array_equal(fill_hierarchy(leaf_g, tree), [1, 0, 0, 1, S, S, 1, 0])
    inner_b = np.eye(8, dtype=np.float32)[1]
    np.testing.assert_array_equal(fill_hierarchy(inner_b, tree), [0, 1, S, S, S, S, S, S])
    both = leaf_g + np.eye(8, dtype=np.float32)[4]
    np.testing.assert_array_equal(fill_hierarchy(both, tree), [1, 1, 0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(fill_hierarchy(np.zeros(8, np.float32), tree), [S] * 8)


# ---------------------------------------------------------------------------- loss and step

def test_softmax_delta_is_masked_with_a_tree_and_a_masked_cost_adds_its_l2_delta():
    probs = torch.tensor([[0.7, 0.3, 0.4, 0.6]])
    truth = torch.tensor([[1.0, 0.0, SECRET_NUM, SECRET_NUM]])
    plain = classifier_loss(probs, truth, tree=True)
    torch.testing.assert_close(plain.delta, torch.tensor([[0.3, -0.3, 0.0, 0.0]]))
    assert plain.costs == pytest.approx([-np.log(0.7)])
    with_cost = classifier_loss(probs, truth, tree=True, cost_layers=[CostLayer("masked", 0.5)])
    torch.testing.assert_close(with_cost.delta, torch.tensor([[0.45, -0.45, 0.0, 0.0]]))
    assert with_cost.costs == pytest.approx([-np.log(0.7), 0.18], rel=1e-6)
    assert with_cost.cost == pytest.approx((-np.log(0.7) + 0.18) / 2, rel=1e-6)   # mean over the loss layers
    with pytest.raises(NotImplementedError, match="L1"):
        classifier_loss(probs, truth, tree=True, cost_layers=[CostLayer("L1", 1)])


@pytest.mark.parametrize("tree", [False, True], ids=["softmax", "tree"])
def test_step_gradient_is_the_cross_entropy_gradient(tmp_path, tree):
    """For truths with one 1 per trained group, Darknet's `truth - p` applied to the softmax input is
    exactly minus the gradient of the summed cross-entropy of the trained groups."""
    torch.manual_seed(0)
    net = Darknet.from_cfg(write_cfg(tmp_path, tree))
    images = torch.rand(4, 3, 24, 24)
    if tree:
        labels = [2, 5, 0, 4]   # leaves and a root
        truths = torch.from_numpy(np.stack([fill_hierarchy(np.eye(6, dtype=np.float32)[k], toy_tree())
                                            for k in labels]))
    else:
        truths = torch.eye(2)[[0, 1, 1, 0]]
    model = ClassifierForward(net)
    net.train()
    logits, probs = model(images)
    trained = truths.clamp(min=0)                                  # the SECRET_NUM groups are left out
    (-(trained * torch.log(probs)).sum()).backward()
    expected = {i: layer.op.weight.grad.clone() for i, layer in enumerate(net.layers) if hasattr(layer, "op")}
    net.zero_grad()
    optimizer = DarknetSGD(net)
    net.options.batch = 8
    classifier_step(net, images, truths, optimizer, apply=False, model=model)
    for index, gradient in expected.items():
        torch.testing.assert_close(optimizer.updates()[index]["weights"], -gradient, rtol=1e-4, atol=1e-6)


def test_step_counts_seen_and_updates_every_subdivisions(tmp_path):
    net = Darknet.from_cfg(write_cfg(tmp_path, tree=False))
    optimizer = DarknetSGD(net)
    before = net.layers[0].op.weight.detach().clone()
    first = classifier_step(net, torch.rand(4, 3, 24, 24), torch.eye(2)[[0, 1, 0, 1]], optimizer)
    assert first.seen == 4 and first.learning_rate is None and torch.equal(net.layers[0].op.weight, before)
    second = classifier_step(net, torch.rand(4, 3, 24, 24), torch.eye(2)[[0, 1, 0, 1]], optimizer)
    assert second.seen == 8 and second.learning_rate == pytest.approx(0.05)
    assert not torch.equal(net.layers[0].op.weight, before)


# ---------------------------------------------------------------------------- augmentation

def test_training_crop_and_centre_crop_shapes_and_determinism():
    image = (np.random.default_rng(0).random((30, 50, 3)) * 255).astype(np.uint8)
    options = CropOptions(min=24, max=48, angle=7, aspect=.75, hue=.1, saturation=1.5, exposure=1.5)
    a = augment_classification(image, options, 24, 20, np.random.default_rng(5))
    b = augment_classification(image, options, 24, 20, np.random.default_rng(5))
    assert a.shape == (3, 20, 24) and a.dtype == np.float32 and np.array_equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    chw = np.random.default_rng(1).random((3, 6, 8), dtype=np.float32)
    np.testing.assert_array_equal(rotate_crop_image(chw, 0, 1, 8, 6, 0, 0, 1), chw)          # identity
    shifted = rotate_crop_image(chw, 0, 1, 8, 6, 2, 0, 1)                                    # 2 px right
    np.testing.assert_array_equal(shifted[:, :, :6], chw[:, :, 2:])
    assert (shifted[:, :, 6:] == 0).all()   # DARKNET(image.c:get_pixel_extend): outside the image is 0
    centre = center_crop_image(np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6), 4, 4)
    np.testing.assert_array_equal(centre[0], np.arange(24, dtype=np.float32).reshape(4, 6)[:, 1:5])


def test_crop_options_follow_darknet_defaults(tmp_path):
    net = Darknet.from_cfg(write_cfg(tmp_path, tree=False))
    assert crop_options(net) == CropOptions(min=24, max=32, angle=5, aspect=.9, saturation=1.2, exposure=1.2)
    cfg = tmp_path / "defaults.cfg"
    cfg.write_text(write_cfg(tmp_path, tree=False).read_text().replace("min_crop=24\nmax_crop=32\n", ""))
    options = crop_options(Darknet.from_cfg(cfg))
    assert (options.min, options.max) == (24, 48)   # DARKNET(parser.c:parse_net_options): w and 2w


def test_top_k_keeps_the_lower_index_first_on_ties():
    assert top_k(torch.tensor([[0.1, 0.4, 0.4, 0.2]]), 3).tolist() == [[1, 2, 3]]


# ---------------------------------------------------------------------------- loop, backups, valid, CLI

@pytest.mark.parametrize("tree", [False, True], ids=["softmax", "tree+masked-cost"])
def test_train_classifier_learns_writes_backups_and_validates(tmp_path, monkeypatch, tree):
    monkeypatch.setattr(engine, "BACKUP_EVERY", 10)
    labels = ["Lred", "Lyellow", "Lblue", "Lgreen"] if tree else ["Lred", "Lblue"]
    data = write_data(tmp_path, labels, classes=6 if tree else 2, top=2)
    cfg = write_cfg(tmp_path, tree, cost="[cost]\ntype=masked" if tree else "")
    lines: list[str] = []
    result = train_classifier(data, cfg, workers=0, max_batches=30, log=lines.append)
    history = result.history
    assert [entry.batch for entry in history] == list(range(1, 31))
    assert np.mean([e.loss for e in history[-5:]]) < 0.5 * np.mean([e.loss for e in history[:5]])
    assert lines[:2] == ["toy-tree" if tree else "toy", "Learning Rate: 0.05, Momentum: 0.9, Decay: 0.0005"]
    epoch = re.escape(f"{240 / (8 * len(labels)):.3f}")   # images seen / images in the list
    number = r"\d+\.\d{6}"
    assert re.fullmatch(rf"30, {epoch}: {number}, {number} avg, 0\.050000 rate, {number} seconds, 240 images",
                        lines[-1])
    backup = tmp_path / "backup"
    base = cfg.stem
    # an epoch is len(train list) = 8 * labels images; iterations train 8 images each
    epochs = 30 * 8 // (8 * len(labels))
    assert {p.name for p in backup.iterdir()} == ({f"{base}_{e}.weights" for e in range(1, epochs + 1)}
                                                  | {f"{base}.backup", f"{base}.weights", "chart.png", f"{base}_log.csv"})
    assert result.final_weights == backup / f"{base}.weights"

    printed: list[str] = []
    accuracy = validate_classifier(load_network(cfg, result.final_weights), data, workers=0, log=printed.append)
    valid = (tmp_path / "valid.list").read_text().split()
    assert len(printed) == 2 * len(valid) and accuracy.images == len(valid) and accuracy.k == 2
    classes = [class_of_path(p, (tmp_path / "labels.list").read_text().split()) for p in valid]
    for i, (path, truth) in enumerate(zip(valid, classes)):
        assert re.fullmatch(rf"{re.escape(path)}, {truth}, \d\.\d{{6}}, \d\.\d{{6}}, ", printed[2 * i])
        assert re.fullmatch(rf"{i}: top 1: \d\.\d{{6}}, top 2: \d\.\d{{6}}", printed[2 * i + 1])
    assert printed[-1].endswith(f"top 1: {accuracy.top1:f}, top 2: {accuracy.topk:f}")
    assert accuracy.top1 >= 0.75 and accuracy.topk >= accuracy.top1


def test_cli_train_then_valid(tmp_path):
    data = write_data(tmp_path, ["Lred", "Lblue"], classes=2)
    cfg = write_cfg(tmp_path, tree=False)
    runner = CliRunner()
    trained = runner.invoke(main, ["classifier", "train", str(data), str(cfg), "--max-batches", "2",
                                   "--workers", "0"], catch_exceptions=False)
    assert trained.exit_code == 0 and re.search(r"^2, 1\.000: ", trained.output, re.M)
    weights = tmp_path / "backup" / "toy.weights"
    valid = runner.invoke(main, ["classifier", "valid", str(data), str(cfg), str(weights), "--workers", "0"],
                          catch_exceptions=False)
    assert valid.exit_code == 0 and valid.output.splitlines()[-1].startswith("5: top 1: ")
