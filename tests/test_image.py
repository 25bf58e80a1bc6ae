"""Image loading, Darknet's resize/letterbox (bit-exact against the reference inputs) and drawing."""
from __future__ import annotations

import numpy as np
import pytest

from pydarknet.detections import Detection
from pydarknet.image import (class_color, draw_detections, image_to_chw, letterbox_image, letterbox_size,
                             load_image, resize_image, save_image)

# every inputs/<img>_<W>x<H>.npy of the pack (README §4)
LETTERBOX_CASES = [
    ("dog", 224), ("dog", 256), ("dog", 416), ("dog", 544), ("eagle", 256),
    ("horses", 224), ("horses", 416), ("horses", 544),
    ("person", 224), ("person", 416), ("person", 544),
]


@pytest.mark.parametrize("image,size", LETTERBOX_CASES, ids=[f"{i}_{s}" for i, s in LETTERBOX_CASES])
def test_letterbox_is_bit_exact(reference, image, size):
    decoded = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
    expected = np.load(reference / "inputs" / f"{image}_{size}x{size}.npy")
    actual = letterbox_image(image_to_chw(decoded), size, size)
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    np.testing.assert_array_equal(actual, expected)


def test_image_to_chw_equals_darknets_double_division():
    levels = np.arange(256, dtype=np.uint8)
    image = np.stack([levels, levels[::-1], levels], axis=-1)[None]          # (1, 256, 3)
    chw = image_to_chw(image)
    assert chw.shape == (3, 1, 256) and chw.dtype == np.float32
    # load_image_stb: (float)x / 255. is a double division rounded to float
    np.testing.assert_array_equal(chw[0, 0], (levels / 255.).astype(np.float32))
    np.testing.assert_array_equal(chw[1, 0], (levels[::-1] / 255.).astype(np.float32))


def test_resize_image_hand_computed():
    image = np.array([[[0, 1], [2, 3]]], dtype=np.float32)                  # (1, 2, 2)
    expected = np.array([[[0, .5, 1], [1, 1.5, 2], [2, 2.5, 3]]], dtype=np.float32)
    np.testing.assert_array_equal(resize_image(image, 3, 3), expected)
    np.testing.assert_array_equal(resize_image(image, 2, 2), image)
    np.testing.assert_array_equal(resize_image(image, 1, 2), [[[1], [3]]])   # one column: the last one


def test_resize_image_last_row_keeps_only_upper_weight():
    # DARKNET quirk: float32 (2-1)/(42-1)*41 = 0.99999994, so the last row interpolates
    # between rows 0 and 1 but only its (1-dy) term on row 0 is kept: almost black
    image = np.ones((1, 2, 3), dtype=np.float32)
    out = resize_image(image, 3, 42)
    assert out.shape == (1, 42, 3)
    np.testing.assert_array_equal(out[0, :-1], 1)
    assert 0 < out[0, -1, 0] < 1e-6


@pytest.mark.parametrize("im_w,im_h,net_w,net_h,expected", [
    (768, 576, 416, 416, (416, 312)),
    (640, 424, 416, 416, (416, 275)),
    (300, 600, 416, 416, (208, 416)),
    (773, 512, 544, 544, (544, 360)),
    (100, 100, 416, 208, (208, 208)),
])
def test_letterbox_size(im_w, im_h, net_w, net_h, expected):
    assert letterbox_size(im_w, im_h, net_w, net_h) == expected


def test_letterbox_pads_with_grey_centred():
    image = np.zeros((3, 2, 4), dtype=np.float32)                          # 4 wide, 2 high
    boxed = letterbox_image(image, 4, 4)
    np.testing.assert_array_equal(boxed[:, 1:3], 0)
    np.testing.assert_array_equal(boxed[:, [0, 3]], 0.5)


def test_opencv_decoder_matches_stb_decode_closely(reference):
    decoded = np.load(reference / "inputs" / "dog_decoded_uint8_hwc.npy")
    loaded = load_image(reference / "darknet" / "data" / "dog.jpg", decoder="opencv")
    assert loaded.shape == decoded.shape and loaded.dtype == np.uint8
    diff = np.abs(loaded.astype(int) - decoded)
    # README §4: libjpeg vs stb_image differ by up to 3 levels on ~7% of values; a BGR/RGB mix-up is far off
    assert diff.max() <= 3 and diff.mean() < 0.2


def test_save_then_load_png_round_trips(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    save_image(path, image)
    np.testing.assert_array_equal(load_image(path), image)


def test_load_image_missing_file_names_path(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(FileNotFoundError, match="nope.jpg"):
        load_image(path)


def test_load_image_unreadable_file_names_path(tmp_path):
    path = tmp_path / "text.jpg"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="text.jpg"):
        load_image(path)


def test_save_image_bad_extension_names_path(tmp_path):
    with pytest.raises(ValueError, match="out.nosuchformat"):
        save_image(tmp_path / "out.nosuchformat", np.zeros((2, 2, 3), np.uint8))


def test_image_to_chw_rejects_float_images():
    with pytest.raises(ValueError, match="uint8"):
        image_to_chw(np.zeros((2, 2, 3), np.float32))


def test_class_color_follows_darknet_ramp():
    # class 0: offset 0 -> ramp colour 0 = (1,0,1) in Darknet's (b,g,r) columns -> magenta
    assert class_color(0, 20) == (255, 0, 255)
    # class 1: offset 123457 % 20 = 17 -> ratio 4.25: .75*(1,1,0) + .25*(1,0,0) read as (b,g,r)
    assert class_color(1, 20) == (0, 191, 255)


def test_draw_detections_box_geometry():
    image = np.zeros((200, 100, 3), dtype=np.uint8)
    probs = np.array([0.9, 0.0], dtype=np.float32)
    # pixel box: left 20, right 60, top 50, bottom 150; width = int(200*.006) = 1
    det = Detection(np.array([0.4, 0.5, 0.4, 0.5], np.float32), 0.9, probs)
    hidden = Detection(np.array([0.5, 0.5, 0.2, 0.2], np.float32), 0.9, np.array([0.1, 0.0], np.float32))
    drawn = draw_detections(image, [det, hidden], ["a", "b"], thresh=0.5)
    assert not image.any(), "the input image must not be modified"
    magenta = [255, 0, 255]
    np.testing.assert_array_equal(drawn[150, 20:61], np.tile(magenta, (41, 1)))      # bottom edge
    np.testing.assert_array_equal(drawn[60:151, 20], np.tile(magenta, (91, 1)))      # left edge
    np.testing.assert_array_equal(drawn[60:151, 60], np.tile(magenta, (91, 1)))      # right edge
    assert (drawn[40:50, 20:40] == magenta).all(axis=-1).any(), "the label strip sits above the box"
    assert not drawn[151:].any() and not drawn[:, 61:].any(), "nothing is drawn outside the box and label"
    assert not drawn[75:125, 35:60].any(), "the box below thresh is not drawn, the inside stays untouched"
