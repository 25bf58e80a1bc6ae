"""Training data: .data/.names/list files, label paths and files, augmentation, dataset and loaders."""
from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pydarknet.cfg import CfgError

from pydarknet.data.augment import (AugmentOptions, Placement, augment_detection, correct_boxes, distort_image,
                                    fill_truth, hsv_to_rgb, place_image, rand_scale, random_placement, rgb_to_hsv)
from pydarknet.data.dataset import (MULTISCALE_EVERY, BadSampleWarning, DarknetBatchSampler, DetectionDataset,
                                    DetectionLoader, SkippedSample, collate_detections, letterbox_sample, multiscale_dim,
                                    train_loader)
from pydarknet.data.files import label_path, read_data_file, read_list, read_names, resolve_data_path
from pydarknet.data.labels import CLASSIFICATION_ONLY_VALUE, LabelError, parse_labels, read_labels
from pydarknet.image import image_to_chw, letterbox_image

REPO = Path(__file__).resolve().parent.parent


# ----------------------------------------------------------------------------- label paths

@pytest.mark.parametrize("image, label", [
    ("/voc/VOCdevkit/VOC2007/JPEGImages/000001.jpg", "/voc/VOCdevkit/VOC2007/labels/000001.txt"),
    ("/coco/images/train2014/COCO_train2014_000000000009.jpg", "/coco/labels/train2014/COCO_train2014_000000000009.txt"),
    ("data/raw/frame.png", "data/labels/frame.txt"),
    ("/d/images/a.JPG", "/d/labels/a.txt"),
    ("/d/images/a.JPEG", "/d/labels/a.txt"),
    ("relative/images/b.png", "relative/labels/b.txt"),
])
def test_label_path_rules(image, label):
    assert label_path(image) == label


def test_label_path_replaces_only_the_first_occurrence():
    assert label_path("/images/images/x.jpg") == "/labels/images/x.txt"
    assert label_path("/d/images/a.jpg.b.jpg") == "/d/labels/a.txt.b.jpg"


def test_label_path_replaces_raw_anywhere():
    # "draw" contains "raw": Darknet rewrites it too
    assert label_path("/home/draw/images/x.jpg") == "/home/dlabels/labels/x.txt"


def test_label_path_keeps_extensions_darknet_does_not_know():
    assert label_path("/d/images/x.jpeg") == "/d/labels/x.jpeg"
    assert label_path("/d/images/x.bmp") == "/d/labels/x.bmp"


def test_label_path_without_any_rule_is_an_error():
    with pytest.raises(ValueError, match="/pics/x.bmp"):
        label_path("/pics/x.bmp")


# ----------------------------------------------------------------------------- .data, list, names files

def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_data_file_comments_and_whitespace(tmp_path):
    path = write(tmp_path / "x.data", "# a comment\n; another\n\nclasses= 20\n  train  = /d/train.txt\n"
                                      "names = data/my names.txt\nbackup=backup/\r\ntop=5\n")
    config = read_data_file(path, required=("classes", "train"))
    assert config.classes == 20
    assert config.get_str("train") == "/d/train.txt"
    assert config.get_str("names") == "data/mynames.txt"   # Darknet strips blanks inside values too
    assert config.get_str("backup") == "backup/"
    assert config.get_int("top") == 5
    assert config.get_str("valid", None) is None
    assert config.options["train"].lineno == 5


def test_read_data_file_missing_required_key_names_the_file(tmp_path):
    path = write(tmp_path / "x.data", "classes=3\n")
    with pytest.raises(CfgError, match=r"x\.data: missing required key\(s\) train, names"):
        read_data_file(path, required=("classes", "train", "names"))
    with pytest.raises(CfgError, match=r"x\.data: missing required option 'valid'"):
        read_data_file(path).get_str("valid")


@pytest.mark.parametrize("line", ["train /d/train.txt", "backup=", "=value"])
def test_read_data_file_malformed_line_names_file_and_line(tmp_path, line):
    path = write(tmp_path / "x.data", f"classes=3\n{line}\n")
    with pytest.raises(CfgError, match=r"x\.data:2: expected key=value"):
        read_data_file(path)


def test_read_data_file_bad_classes_names_the_line(tmp_path):
    with pytest.raises(CfgError, match=r"x\.data:2: option 'classes=twenty' is not an integer"):
        read_data_file(write(tmp_path / "x.data", "train=t\nclasses=twenty\n")).classes
    with pytest.raises(CfgError, match=r"x\.data:1: classes must be positive"):
        read_data_file(write(tmp_path / "x.data", "classes=0\n")).classes


def test_read_data_file_duplicate_key_keeps_the_first(tmp_path):
    path = write(tmp_path / "x.data", "classes=3\nclasses=5\nfancy=1\n")
    with pytest.warns(UserWarning) as record:
        config = read_data_file(path)
    assert config.classes == 3
    messages = [str(w.message) for w in record]
    assert any("x.data:2: duplicate key 'classes'" in m for m in messages)
    assert any("x.data:3: unknown key 'fancy'" in m for m in messages)


def test_darknet_data_files_parse():
    for name, classes in [("voc", 20), ("coco", 80), ("combine9k", 9418), ("imagenet1k", 1000)]:
        config = read_data_file(REPO / "cfg" / f"{name}.data")
        assert config.classes == classes
    assert read_data_file(REPO / "cfg" / "voc.data").get_str("names") == "data/voc.names"
    assert read_data_file(REPO / "cfg" / "coco.data").get_str("valid") == "data/coco/val2014.txt"  # not a # line


def test_data_paths_resolve_against_the_working_directory_first(tmp_path, monkeypatch):
    path = write(tmp_path / "cfg" / "x.data", "classes=1\nnames=data/x.names\ntrain=/abs/train.txt\n")
    write(tmp_path / "data" / "x.names", "a\n")
    config = read_data_file(path)
    monkeypatch.chdir(tmp_path)
    assert config.get_path("names") == Path("data/x.names")                  # as Darknet's fopen sees it
    monkeypatch.chdir(tmp_path / "cfg")
    assert config.get_path("names") == tmp_path / "data" / "x.names"        # else beside the cfg/ folder
    with pytest.raises(FileNotFoundError, match="/abs/train.txt"):
        config.get_path("train")
    assert resolve_data_path("a/b", cwd="/c") == Path("/c/a/b")


def test_read_list(tmp_path):
    path = write(tmp_path / "train.txt", "/a/images/1.jpg\r\n\n  /a/images/2.jpg\n")
    assert read_list(path) == ["/a/images/1.jpg", "/a/images/2.jpg"]
    with pytest.raises(CfgError, match=r"empty\.txt: list file contains no paths"):
        read_list(write(tmp_path / "empty.txt", "\n \n"))
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_list(tmp_path / "missing.txt")


def test_read_names(tmp_path):
    assert read_names(write(tmp_path / "a.names", "person\ntraffic light\n\n")) == ["person", "traffic light"]
    with pytest.raises(CfgError, match=r"b\.names:2: empty class name"):
        read_names(write(tmp_path / "b.names", "cat\n\ndog\n"))
    assert len(read_names(REPO / "data" / "voc.names")) == 20


# ----------------------------------------------------------------------------- label files

def test_parse_labels_darknet_truth_order():
    truths = parse_labels("1 0.5 0.25 0.2 0.1\n\n0 0.1 0.2 0.3 0.4\n", classes=2)
    assert truths.dtype == np.float32 and truths.shape == (2, 5)
    np.testing.assert_array_equal(truths, np.float32([[0.5, 0.25, 0.2, 0.1, 1], [0.1, 0.2, 0.3, 0.4, 0]]))
    assert parse_labels("", classes=2).shape == (0, 5)


@pytest.mark.parametrize("line, message", [
    ("1 0.5 0.5 0.2", "expected 'class x y w h'"),
    ("1 0.5 0.5 0.2 0.2 7", "expected 'class x y w h'"),
    ("1.5 0.5 0.5 0.2 0.2", "expected an integer class"),
    ("1 0.5 half 0.2 0.2", "expected an integer class"),
    ("3 0.5 0.5 0.2 0.2", "class id 3 is outside 0..2"),
    ("-1 0.5 0.5 0.2 0.2", "class id -1 is outside 0..2"),
    ("1 nan 0.5 0.2 0.2", "non-finite"),
    ("1 0.5 0.5 inf 0.2", "non-finite"),
    ("1 0.5 0.5 -0.2 0.2", "negative box size"),
])
def test_label_errors_name_file_and_line(tmp_path, line, message):
    path = write(tmp_path / "labels" / "x.txt", f"0 0.5 0.5 0.1 0.1\n{line}\n")
    with pytest.raises(LabelError, match=rf"labels/x\.txt:2: {message}"):
        read_labels(path, classes=3)


def test_missing_label_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.txt"):
        read_labels(tmp_path / "nothing.txt", classes=3)


def test_classification_only_rows():
    truths = parse_labels("7 0 0 0 0\n2 0 0.5 0.1 0.1\n", classes=9)
    np.testing.assert_array_equal(truths[0], [CLASSIFICATION_ONLY_VALUE] * 4 + [7])
    np.testing.assert_array_equal(truths[1], np.float32([0, 0.5, 0.1, 0.1, 2]))   # only x == y == 0 counts
    corrected = correct_boxes(truths, -0.1, 0.2, 0.7, 0.5, flip=True)
    np.testing.assert_array_equal(corrected[0], truths[0])
    np.testing.assert_array_equal(fill_truth(corrected, 30)[0], truths[0])


def test_box_outside_image_is_clipped_not_fatal():
    truths = parse_labels("0 0.95 0.5 0.3 0.2\n1 -0.1 -0.1 0.4 0.4\n", classes=2)
    clipped = correct_boxes(truths, 0, 0, 1, 1, flip=False)
    np.testing.assert_allclose(clipped[0], [0.9, 0.5, 0.2, 0.2, 0], atol=1e-6)     # right edge 1.1 -> 1
    np.testing.assert_allclose(clipped[1], [0.05, 0.05, 0.1, 0.1, 1], atol=1e-6)   # left/top -0.3 -> 0


# ----------------------------------------------------------------------------- augmentation

def darknet_place_image(image: np.ndarray, nw: int, nh: int, dx: int, dy: int, w: int, h: int) -> np.ndarray:
    """Pixel-by-pixel image.c:place_image on a 0.5 canvas (reference for small images)."""
    canvas = np.full((3, h, w), 0.5, np.float32)
    src_h, src_w = image.shape[1:]

    def pixel(c, x, y):
        return image[c, y, x] if 0 <= x < src_w and 0 <= y < src_h else 0.0

    for c in range(3):
        for y in range(nh):
            for x in range(nw):
                rx, ry = np.float32(x) / nw * src_w, np.float32(y) / nh * src_h
                ix, iy = int(np.floor(rx)), int(np.floor(ry))
                fx, fy = rx - ix, ry - iy
                value = ((1 - fy) * (1 - fx) * pixel(c, ix, iy) + fy * (1 - fx) * pixel(c, ix, iy + 1)
                         + (1 - fy) * fx * pixel(c, ix + 1, iy) + fy * fx * pixel(c, ix + 1, iy + 1))
                if 0 <= x + dx < w and 0 <= y + dy < h:
                    canvas[c, y + dy, x + dx] = value
    return canvas


@pytest.mark.parametrize("placement", [
    Placement(12.9, 7.2, 0.0, 1.7),      # upscaling, fractional size and offset truncated
    Placement(5.0, 4.0, 3.0, 2.0),       # downscaling
    Placement(14.0, 11.0, -2.5, -1.2),   # larger than the canvas, negative offset
])
def test_place_image_matches_darknet_loop(placement):
    image = np.random.default_rng(1).random((3, 5, 7), dtype=np.float32)
    ours = place_image(image, placement, 12, 10)
    reference = darknet_place_image(image, int(placement.nw), int(placement.nh), int(placement.dx),
                                    int(placement.dy), 12, 10)
    np.testing.assert_allclose(ours, reference, atol=1e-6)


def test_place_image_darkens_last_column_when_upscaling():
    ones = np.ones((3, 4, 4), np.float32)
    canvas = place_image(ones, Placement(16, 16, 0, 0), 16, 16)
    np.testing.assert_allclose(canvas[:, :12, :12], 1, atol=1e-6)
    assert canvas[0, 0, 15] == pytest.approx(0.25) and canvas[0, 15, 15] == pytest.approx(0.0625)


def test_random_placement_keeps_the_longer_side_on_the_canvas():
    rng = np.random.default_rng(0)
    for _ in range(200):
        orig_w, orig_h = rng.integers(50, 800, 2)
        p = random_placement(rng, int(orig_w), int(orig_h), 416, 416, 0.3)
        assert max(p.nw, p.nh) == 416
        assert 0 <= p.dx <= 416 - p.nw and 0 <= p.dy <= 416 - p.nh
    no_jitter = random_placement(rng, 200, 100, 416, 416, 0.0)
    assert (no_jitter.nw, no_jitter.nh) == (416, 208)


def test_hsv_round_trip_and_agrees_with_opencv():
    image = np.random.default_rng(2).random((3, 20, 30), dtype=np.float32)
    image[:, 0, 0] = 0.4   # grey pixel: hue 0, saturation 0
    hsv = rgb_to_hsv(image)
    reference = cv2.cvtColor(np.ascontiguousarray(image.transpose(1, 2, 0)), cv2.COLOR_RGB2HSV).transpose(2, 0, 1)
    np.testing.assert_allclose(hsv[0] * 360, reference[0], atol=5e-3)
    np.testing.assert_allclose(hsv[1:], reference[1:], atol=1e-5)
    assert hsv[0, 0, 0] == 0 and hsv[1, 0, 0] == 0
    np.testing.assert_allclose(hsv_to_rgb(hsv), image, atol=1e-6)


def test_distort_image_identity_and_hue_wraps_once():
    image = np.random.default_rng(3).random((3, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(distort_image(image, 0, 1, 1), image, atol=1e-6)
    red_magenta = np.float32([[[1.0]], [[0.0]], [[0.3]]])         # hue 1 - 0.05
    shifted = rgb_to_hsv(distort_image(red_magenta, 0.1, 1, 1))
    assert shifted[0, 0, 0] == pytest.approx(0.05, abs=1e-5)
    grey = np.full((3, 1, 1), 0.4, np.float32)
    np.testing.assert_allclose(distort_image(grey, 0.3, 2, 2), 0.8, atol=1e-6)   # exposure scales V
    np.testing.assert_array_equal(distort_image(grey, 0, 1, 3), 1)               # clipped to [0, 1]
    over_saturated = distort_image(np.float32([[[0.8]], [[0.4]], [[0.6]]]), 0, 3, 1)
    assert over_saturated[1, 0, 0] == 0 and over_saturated[0, 0, 0] == pytest.approx(0.8)


def test_rand_scale_both_directions():
    rng = np.random.default_rng(4)
    draws = np.array([rand_scale(rng, 1.5) for _ in range(400)])
    assert draws.min() >= 1 / 1.5 and draws.max() <= 1.5
    assert (draws > 1).sum() > 150 and (draws < 1).sum() > 150


def test_zero_saturation_and_exposure_mean_unchanged():
    options = AugmentOptions(saturation=0, exposure=0)
    assert (options.saturation, options.exposure) == (1.0, 1.0)


def test_correct_boxes_flip_mirrors_x():
    truths = np.float32([[0.2, 0.3, 0.1, 0.2, 4], [0.7, 0.6, 0.3, 0.1, 1]])
    flipped = correct_boxes(truths, 0, 0, 1, 1, flip=True)
    np.testing.assert_allclose(flipped[:, 0], 1 - truths[:, 0], atol=1e-6)
    np.testing.assert_allclose(flipped[:, 1:], truths[:, 1:], atol=1e-6)


def test_correct_boxes_maps_onto_the_placed_image():
    truths = np.float32([[0.5, 0.5, 0.5, 0.5, 0]])
    # image 208 px tall placed at dy=104 on a 416 canvas: y' = 0.25 + 0.5*y, h' = 0.5*h
    np.testing.assert_allclose(correct_boxes(truths, 0, -0.25, 1, 0.5, False)[0], [0.5, 0.5, 0.5, 0.25, 0], atol=1e-6)


def test_max_truths_cap():
    rng = np.random.default_rng(5)
    truths = np.column_stack([rng.uniform(0.2, 0.8, (45, 2)), np.full((45, 2), 0.1), np.arange(45)]).astype(np.float32)
    image = np.zeros((100, 100, 3), np.uint8)
    _, block = augment_detection(image, truths, 64, 64, AugmentOptions(), rng)
    assert block.shape == (30, 5) and np.all(block[:, 2] > 0)
    _, small = augment_detection(image, truths, 64, 64, AugmentOptions(max=10), rng)
    assert small.shape == (10, 5) and np.all(small[:, 2] > 0)


def test_cap_applies_before_tiny_boxes_are_dropped():
    tiny = np.tile(np.float32([0.5, 0.5, 0.0005, 0.2, 1]), (30, 1))
    good = np.tile(np.float32([0.5, 0.5, 0.2, 0.2, 2]), (5, 1))
    np.testing.assert_array_equal(fill_truth(np.concatenate([tiny, good]), 30), 0)
    kept = fill_truth(np.concatenate([tiny[:3], good]), 30)
    np.testing.assert_array_equal(kept[:5], good)
    np.testing.assert_array_equal(kept[5:], 0)


def test_truths_are_shuffled_before_the_cap():
    truths = np.column_stack([np.linspace(0.1, 0.9, 40), np.full((40, 3), 0.05), np.arange(40)]).astype(np.float32)
    image = np.zeros((64, 64, 3), np.uint8)
    kept_sets = set()
    for seed in range(5):
        _, block = augment_detection(image, truths, 64, 64, AugmentOptions(jitter=0), np.random.default_rng(seed))
        kept_sets.add(frozenset(block[:, 4].astype(int)))
        assert len(set(block[:, 4].astype(int))) == 30
    assert len(kept_sets) == 5


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """n truths (x, y, w, h, class), some reaching outside the image."""
    centres = rng.uniform(-0.1, 1.1, (n, 2))
    sizes = rng.uniform(0.01, 0.6, (n, 2))
    return np.column_stack([centres, sizes, rng.integers(0, 5, n)]).astype(np.float32)


def test_augmented_boxes_stay_inside_the_image():
    rng = np.random.default_rng(6)
    options = AugmentOptions(jitter=0.3, hue=0.1, saturation=1.5, exposure=1.5)
    for _ in range(60):
        image = rng.integers(0, 256, (int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), dtype=np.uint8)
        w, h = (int(v) for v in rng.integers(3, 8, 2) * 16)
        net_input, block = augment_detection(image, random_boxes(rng, int(rng.integers(0, 12))), w, h, options, rng)
        assert net_input.shape == (3, h, w) and net_input.dtype == np.float32
        assert net_input.min() >= 0 and net_input.max() <= 1
        rows = block[block[:, 0] != 0]
        assert np.all(rows[:, 2:4] >= 0.001)
        assert np.all(rows[:, 0] - rows[:, 2] / 2 >= -1e-6) and np.all(rows[:, 0] + rows[:, 2] / 2 <= 1 + 1e-6)
        assert np.all(rows[:, 1] - rows[:, 3] / 2 >= -1e-6) and np.all(rows[:, 1] + rows[:, 3] / 2 <= 1 + 1e-6)


def test_augmented_box_covers_the_painted_object():
    rng = np.random.default_rng(7)
    colour, background = np.uint8([200, 30, 60]), np.uint8([20, 120, 220])
    options = AugmentOptions(jitter=0.3, hue=0, saturation=1, exposure=1)
    for _ in range(40):
        im_h, im_w = (int(v) for v in rng.integers(60, 200, 2))
        image = np.tile(background, (im_h, im_w, 1))
        x0, y0 = int(rng.integers(2, im_w // 3)), int(rng.integers(2, im_h // 3))
        x1, y1 = int(rng.integers(x0 + im_w // 3, im_w - 2)), int(rng.integers(y0 + im_h // 3, im_h - 2))
        image[y0:y1, x0:x1] = colour
        truths = np.float32([[(x0 + x1) / 2 / im_w, (y0 + y1) / 2 / im_h, (x1 - x0) / im_w, (y1 - y0) / im_h, 3]])
        net_input, block = augment_detection(image, truths, 160, 160, options, rng)
        x, y, w, h, cls = block[0]
        assert cls == 3
        left, right, top, bottom = (x - w / 2) * 160, (x + w / 2) * 160, (y - h / 2) * 160, (y + h / 2) * 160
        margin = 160 / min(im_w, im_h) + 2      # one source pixel of blending plus int truncation
        inside = net_input[:, int(np.ceil(top + margin)):int(bottom - margin), int(np.ceil(left + margin)):int(right - margin)]
        assert inside.size > 0
        np.testing.assert_allclose(inside, np.broadcast_to(colour[:, None, None] / 255, inside.shape), atol=1e-5)
        outside = [(top - margin, x * 160), (bottom + margin, x * 160), (y * 160, left - margin), (y * 160, right + margin)]
        for row, col in outside:
            if 0 <= row < 160 and 0 <= col < 160:
                assert not np.allclose(net_input[:, int(row), int(col)], colour / 255, atol=0.05)


def test_flip_mirrors_image_and_boxes():
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    truths = np.float32([[0.3, 0.4, 0.2, 0.3, 1]])
    plain = image_to_chw(image)
    outcomes = set()
    for seed in range(20):   # jitter 0 on a square image: the only random change left is the flip
        net_input, block = augment_detection(image, truths, 64, 64, AugmentOptions(jitter=0), np.random.default_rng(seed))
        flipped = block[0, 0] != pytest.approx(0.3)
        outcomes.add(bool(flipped))
        np.testing.assert_allclose(net_input, plain[:, :, ::-1] if flipped else plain, atol=1e-6)
        np.testing.assert_allclose(block[0], [0.7 if flipped else 0.3, 0.4, 0.2, 0.3, 1], atol=1e-6)
    assert outcomes == {True, False}


def test_augmentation_is_deterministic_by_seed():
    rng = np.random.default_rng(9)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    truths = random_boxes(rng, 8)
    options = AugmentOptions(jitter=0.2, hue=0.1, saturation=1.5, exposure=1.5)
    first = augment_detection(image, truths, 96, 96, options, np.random.default_rng(42))
    again = augment_detection(image, truths, 96, 96, options, np.random.default_rng(42))
    other = augment_detection(image, truths, 96, 96, options, np.random.default_rng(43))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])


# ----------------------------------------------------------------------------- dataset and loaders

@pytest.fixture
def sample_dir(tmp_path) -> Path:
    """Two good samples, then a missing label, a corrupt image and a malformed label."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rng = np.random.default_rng(10)
    for i, size in enumerate([(40, 60), (50, 30), (40, 40), (40, 40), (40, 40)]):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        (tmp_path / "labels" / f"{i}.txt").write_text("1 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.2 0.2\n")
    (tmp_path / "labels" / "2.txt").unlink()
    (tmp_path / "images" / "3.png").write_bytes(b"not a png at all")
    (tmp_path / "labels" / "4.txt").write_text("1 0.5 0.5 0.5 0.5\n9 0.5 0.5 0.5 0.5\n")
    write(tmp_path / "list.txt", "".join(f"{tmp_path}/images/{i}.png\n" for i in range(5)))
    return tmp_path


def test_dataset_returns_tensors_and_skipped_samples(sample_dir):
    dataset = DetectionDataset.from_list(sample_dir / "list.txt", classes=3, size=(64, 32))
    image, truth = dataset[0]
    assert image.shape == (3, 32, 64) and image.dtype == torch.float32
    assert truth.shape == (30, 5) and int((truth[:, 0] != 0).sum()) == 2
    reasons = {i: dataset[i] for i in (2, 3, 4)}
    assert all(isinstance(r, SkippedSample) for r in reasons.values())
    assert "labels/2.txt" in reasons[2].reason
    assert reasons[3].path.endswith("images/3.png") and "not a readable image" in reasons[3].reason
    assert "labels/4.txt:2: class id 9" in reasons[4].reason



def test_a_missing_image_is_skipped_as_a_missing_image_not_a_missing_label(sample_dir):
    """data.c:load_data_detection loads the image before its labels: with both files gone the skip names the
    image, and with the label alone gone it names the label."""
    (sample_dir / "images" / "1.png").unlink()
    (sample_dir / "labels" / "1.txt").unlink()
    dataset = DetectionDataset.from_list(sample_dir / "list.txt", classes=3, size=(32, 32))
    both_missing, label_missing = dataset[1], dataset[2]
    assert isinstance(both_missing, SkippedSample) and both_missing.path.endswith("images/1.png")
    assert "no such image file" in both_missing.reason and "labels/1.txt" not in both_missing.reason
    assert isinstance(label_missing, SkippedSample) and "labels/2.txt: no such label file" in label_missing.reason

@pytest.mark.parametrize("workers", [0, 2])
def test_loader_skips_and_counts_bad_samples(sample_dir, workers):
    dataset = DetectionDataset.from_list(sample_dir / "list.txt", classes=3, size=(32, 32))
    loader = DetectionLoader(DataLoader(dataset, batch_size=2, num_workers=workers,   # every image once, in order
                                        collate_fn=collate_detections))
    with pytest.warns(BadSampleWarning) as record:
        batches = list(loader)
    assert [images.shape[0] for images, _ in batches] == [2]     # batch 2 has only bad samples, batch 3 one bad
    assert loader.skipped_count == 3
    assert set(loader.skipped) == {f"{sample_dir}/images/{i}.png" for i in (2, 3, 4)}
    assert sum(f"{sample_dir}/images/3.png" in str(w.message) for w in record) == 1


def test_empty_list_file_is_an_error(tmp_path):
    with pytest.raises(CfgError, match="list file contains no paths"):
        DetectionDataset.from_list(write(tmp_path / "list.txt", ""), classes=1)


def test_validation_path_letterboxes(sample_dir):
    dataset = DetectionDataset.from_list(sample_dir / "list.txt", classes=3, size=(64, 64), augment=False)
    image, truth = dataset[0]      # 60 wide, 40 tall -> 64 x 42 at row offset 11
    expected = letterbox_image(image_to_chw(cv2.imread(str(sample_dir / "images" / "0.png"))[..., ::-1]), 64, 64)
    np.testing.assert_array_equal(image.numpy(), expected)
    np.testing.assert_allclose(truth[0].numpy(), [0.5, 0.5, 0.5, 0.5 * 42 / 64, 1], atol=1e-6)
    np.testing.assert_allclose(truth[1].numpy(), [0.25, (11 + 0.25 * 42) / 64, 0.2, 0.2 * 42 / 64, 0], atol=1e-6)


def test_letterbox_sample_clips_boxes_outside_the_image():
    image = np.zeros((50, 100, 3), np.uint8)
    _, block = letterbox_sample(image, np.float32([[0.95, 0.5, 0.3, 0.2, 2]]), 100, 100, 30)
    np.testing.assert_allclose(block[0], [0.9, 0.5, 0.2, 0.1, 2], atol=1e-6)


def test_multiscale_dim_rule():
    rng = np.random.default_rng(11)
    assert multiscale_dim(rng, 3, 50, 10000) is None
    dims = {multiscale_dim(rng, 10 * k, 50, 10000) for k in range(300)}
    assert dims == set(range(320, 609, 32))
    assert multiscale_dim(rng, 0, 9801, 10000) == 608       # last 200 batches train at 608
    assert multiscale_dim(rng, 0, 9799, 10000) in dims


def test_batch_sampler_multiscale_every_ten_steps():
    sampler = DarknetBatchSampler(7, batch=4, subdivisions=2, max_batches=300, size=(416, 416), random=True, seed=3)
    assert len(sampler) == 600
    batches = list(itertools.islice(sampler, 120))     # the first 60 steps
    assert all(len(b) == 2 for b in batches)
    step_sizes = [batches[2 * s][0].w for s in range(60)]
    assert all(key.w == key.h == step_sizes[i // 2] for i, b in enumerate(batches) for key in b)
    assert all(step_sizes[s] == step_sizes[s - s % MULTISCALE_EVERY] for s in range(60))
    assert len(set(step_sizes)) > 1 and set(step_sizes) <= set(range(320, 609, 32))
    assert all(0 <= key.index < 7 for b in batches for key in b)
    assert len({key.rng_key for b in batches for key in b}) == 240
    near_the_end = DarknetBatchSampler(7, 4, 2, max_batches=300, start_batch=150, random=True, seed=3)
    assert {key.w for b in near_the_end for key in b} == {608}


def test_batch_sampler_resumes_with_the_same_draws():
    full = list(DarknetBatchSampler(100, 6, 3, 20, size=(96, 96), seed=5))
    resumed = list(DarknetBatchSampler(100, 6, 3, 20, size=(96, 96), start_batch=8, seed=5))
    assert resumed == full[8 * 3:]
    assert full != list(DarknetBatchSampler(100, 6, 3, 20, size=(96, 96), seed=6))


def test_train_loader_is_the_same_with_workers(sample_dir):
    dataset = DetectionDataset.from_list(sample_dir / "list.txt", classes=3, size=(32, 32),
                                         options=AugmentOptions(hue=0.1, saturation=1.5, exposure=1.5))
    dataset.paths = dataset.paths[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # no bad samples here: any skip warning fails the test
        serial = list(train_loader(dataset, batch=4, subdivisions=2, max_batches=3, workers=0))
        parallel = list(train_loader(dataset, batch=4, subdivisions=2, max_batches=3, workers=2))
    assert len(serial) == 6 and serial[0][0].shape == (2, 3, 32, 32) and serial[0][1].shape == (2, 30, 5)
    for (a_images, a_truths), (b_images, b_truths) in zip(serial, parallel):
        torch.testing.assert_close(a_images, b_images, rtol=0, atol=0)
        torch.testing.assert_close(a_truths, b_truths, rtol=0, atol=0)


def test_batch_sampler_stride_is_one_process_share_of_a_multi_gpu_run():
    """DARKNET(detector.c:train_detector): N GPUs advance the iteration counter by N per round, so a process
    trains steps start, start + N, ...; step s keeps its random stream, and the final-608 rule of
    multi-scale reads the global step."""
    full = list(DarknetBatchSampler(100, 6, 3, 21, size=(96, 96), seed=5))
    share = DarknetBatchSampler(100, 6, 3, 21, size=(96, 96), start_batch=1, seed=5, stride=2)
    assert len(share) == 10 * 3                      # steps 1, 3, ..., 19
    assert list(share) == [batch for step in range(1, 21, 2) for batch in full[3 * step:3 * step + 3]]
    near_the_end = DarknetBatchSampler(7, 4, 2, max_batches=300, start_batch=0, random=True, seed=3, stride=2)
    sizes = [batch[0].w for batch in near_the_end][::2]   # one per round (2 mini-batches each)
    # sizes are drawn every 10 rounds; the first draw past step 100 (100 + 200 > 300 is not yet) is round 60,
    # step 120, where one process alone would reach it at round 110
    assert len(sizes) == 150 and sizes[60:] == [608] * 90 and set(sizes[:60]) != {608}
