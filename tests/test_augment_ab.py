"""AlexeyAB's training data path (augmentation, mosaic, mixup, multi-scale), YOLOv1's, and the engine's one entry
point `detector_training_loader`.

The random streams cannot match the C programs', so each transform's geometry is tested on chosen draws (a box
drawn into an image must land where its truth says after the transform) and the draws' distributions over many
samples (ranges and frequencies as the C code's formulas give them).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.cfg import CfgError
from pydarknet.data.augment import (AugmentOptions, RegionCrop, augment_region, crop_edge_extended,
                                    random_region_crop, region_truths)
from pydarknet.data.augment_ab import (MIX_MIXUP, MIX_MOSAIC, AlexeyabAugmentOptions, Crop, ImageDraws, add_noise,
                                       augment_one, augment_truths, blur_image, crop_window, distort_hsv, draw_image,
                                       effective_blur, mix_code, detector_mix)
from pydarknet.data.dataset import (CUTMIX_NOTE, AlexeyabAugmenter, DetectionDataset, PjreddieAugmenter,
                                    RegionAugmenter, SampleKey, detector_training_loader, train_loader, training_data)
from pydarknet.data.files import read_list
from pydarknet.data.mosaic import (Cut, Piece, Shifts, alexeyab_sample, compose_mixup, compose_mosaic, draw_cut,
                                   mosaic_truths, quadrant_shifts, quadrant_window)
from pydarknet.data.multiscale import AlexeyabMultiscale, pjreddie_multiscale
from pydarknet.data.synth import make_synth
from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.errors import DataError
from pydarknet.image import image_to_chw, resize_image
from pydarknet.network import Darknet

REPO = Path(__file__).resolve().parent.parent
BACKGROUND, WHITE = 60, 250
MID = (BACKGROUND + WHITE) / 2 / 255


def box_image(ow: int, oh: int, x0: int, y0: int, x1: int, y1: int, background=BACKGROUND) -> tuple[np.ndarray, np.ndarray]:
    """An (oh, ow, 3) uint8 image with a white rectangle over pixels [x0, x1) x [y0, y1), and its truth (1, 5)."""
    image = np.full((oh, ow, 3), background, np.uint8)
    image[y0:y1, x0:x1] = WHITE
    truth = np.float32([[(x0 + x1) / 2 / ow, (y0 + y1) / 2 / oh, (x1 - x0) / ow, (y1 - y0) / oh, 1]])
    return image, truth


def white_extent(chw: np.ndarray, region=(slice(None), slice(None))) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) pixel edges of the white pixels of a (3, h, w) input within `region`."""
    mask = np.zeros(chw.shape[1:], bool)
    mask[region] = chw[0][region] > MID
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return cols[0], rows[0], cols[-1] + 1, rows[-1] + 1


def truth_edges(truth: np.ndarray, w: int, h: int) -> np.ndarray:
    x, y, bw, bh = truth[:4]
    return np.array([(x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h])


# ----------------------------------------------------------------------------- one image, fixed draws

@pytest.mark.parametrize("jitter_draws, resize, resize_draws, flip, letter_box", [
    ((0.5, 0.5, 0.5, 0.5), 1.0, (0.5, 0.5), False, 0),      # no jitter: the whole image stretched
    ((0.1, 0.9, 0.2, 0.7), 1.0, (0.5, 0.5), False, 0),      # window past the left and top edges, in on the others
    ((0.1, 0.9, 0.2, 0.7), 1.0, (0.5, 0.5), True, 0),       # the same, mirrored
    ((0.9, 0.1, 0.8, 0.3), 1.5, (0.9, 0.1), False, 0),      # resize=1.5: the objects grow and shrink too
    ((0.4, 0.6, 0.3, 0.5), 0.6, (0.2, 0.8), True, 0),       # resize<1: only shrinks
    ((0.3, 0.6, 0.5, 0.5), 1.0, (0.5, 0.5), False, 1),      # letter_box=1: the net's aspect ratio kept
])
def test_truth_box_lands_on_the_drawn_box(jitter_draws, resize, resize_draws, flip, letter_box):
    image, truth = box_image(160, 100, 40, 30, 100, 70)
    w, h = 96, 64
    options = AlexeyabAugmentOptions(jitter=0.3, resize=resize, letter_box=letter_box)
    draws = ImageDraws(jitter=jitter_draws, resize=resize_draws, flip=flip)
    out = augment_one(image, truth, w, h, options, draws, np.arange(1))
    assert out.input.shape == (3, h, w) and out.input.dtype == np.float32
    assert len(out.truths) == 1
    np.testing.assert_allclose(white_extent(out.input), truth_edges(out.truths[0], w, h), atol=1.5)


def test_crop_window_follows_alexeyabs_jitter_rule():
    """DARKNET(AlexeyAB data.c:load_data_detection): dw = (int)(ow*jitter); p = (int)(r*(2dw) - dw)."""
    options = AlexeyabAugmentOptions(jitter=0.2)
    crop = crop_window(100, 50, 64, 64, options, ImageDraws(jitter=(0.0, 1.0, 0.25, 0.75)))
    assert crop == Crop(pleft=-20, ptop=-5, pright=20, pbot=5, swidth=100, sheight=50)
    # -38.4 and 38.4 truncate toward zero
    crop = crop_window(160, 100, 64, 64, AlexeyabAugmentOptions(jitter=0.3), ImageDraws(jitter=(0.1, 0.9, 0.2, 0.7)))
    assert (crop.pleft, crop.pright, crop.ptop, crop.pbot) == (-38, 38, -18, 12)


def test_crop_window_resize_moves_the_sides_together():
    """resize=2: each side also moves by rand in [ow*(1-2)/2, ow*(1-1/2)/2] = [-50, 25] for ow=100 (resize_r1 for
    left and top, resize_r2 for right and bottom); resize=0.5 only outward: [-50, 0]."""
    draws = ImageDraws(jitter=(0.5, 0.5, 0.5, 0.5), resize=(0.0, 1.0))
    grow = crop_window(100, 100, 64, 64, AlexeyabAugmentOptions(jitter=0, resize=2.0), draws)
    assert (grow.pleft, grow.ptop, grow.pright, grow.pbot) == (-50, -50, 25, 25)
    shrink = crop_window(100, 100, 64, 64, AlexeyabAugmentOptions(jitter=0, resize=0.5), draws)
    assert (shrink.pleft, shrink.ptop, shrink.pright, shrink.pbot) == (-50, -50, 0, 0)


def test_letter_box_places_the_image_in_the_middle_on_its_mean_colour():
    image, truth = box_image(200, 100, 0, 0, 100, 100)        # left half white, right half background
    out = augment_one(image, truth, 64, 64, AlexeyabAugmentOptions(jitter=0, letter_box=1), ImageDraws(), np.arange(1))
    mean = np.rint((WHITE + BACKGROUND) / 2) / 255
    # the window is 200 x 200: the image fills rows 16..47 of the 64 x 64 input
    np.testing.assert_allclose(out.input[:, :15], mean, atol=1 / 255)
    np.testing.assert_allclose(out.input[:, 49:], mean, atol=1 / 255)
    np.testing.assert_allclose(out.truths[0, :4], [0.25, 0.5, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(white_extent(out.input), [0, 16, 32, 48], atol=1)


def test_an_invalid_window_falls_back_to_the_whole_image():
    """DARKNET(AlexeyAB data.c:load_data_detection): "WARNING: invalid resize": pleft = ptop = 0, the whole image."""
    crop = crop_window(10, 10, 64, 64, AlexeyabAugmentOptions(jitter=0.9), ImageDraws(jitter=(1.0, 1.0, 0.5, 0.5)))
    assert (crop.pleft, crop.ptop, crop.swidth, crop.sheight) == (0, 0, 10, 10) and crop.pright == 9


def test_truths_are_capped_before_tiny_and_outside_boxes_are_dropped():
    """DARKNET(AlexeyAB data.c:fill_truth_detection): count = min(count, max) first; then boxes under 1/net_w or
    1/net_h and labels wholly outside their image are dropped."""
    truths = np.float32([[1.5, 0.5, 0.2, 0.2, 0],     # wholly right of the image
                         [0.5, 0.5, 0.005, 0.3, 1],   # under one pixel of a 100-pixel-wide net
                         [0.5, 0.5, 0.25, 0.25, 2],
                         [0.7, 0.7, 0.2, 0.2, 3]])
    full = Crop(0, 0, 0, 0, 100, 100)
    kept = augment_truths(truths, full, 100, 100, False, 100, 100, max_truths=3)
    np.testing.assert_allclose(kept.rows, truths[2:3])
    assert kept.min_w_h == 25
    assert len(augment_truths(truths, full, 100, 100, False, 100, 100, max_truths=4).rows) == 2
    assert augment_truths(truths[:2], full, 100, 100, False, 100, 100, 4).min_w_h == 0


def test_blur_limit_follows_the_smallest_box():
    assert effective_blur(5, 80) == 5
    assert effective_blur(5, 24) == 3       # a whole-image blur at most 1/8 of the smallest box
    assert effective_blur(5, 0) == 0        # no box: no blur at all
    assert effective_blur(5, 12) == 1       # becomes the background blur
    assert effective_blur(1, 0) == 1


def test_background_blur_keeps_the_boxes_sharp():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    boxes = np.float32([[0.25, 0.25, 0.25, 0.25, 0]])     # pixels 8..23
    blurred = blur_image(image, 1, boxes)
    np.testing.assert_array_equal(blurred[8:24, 8:24], image[8:24, 8:24])
    assert np.abs(blurred[40:, 40:].astype(int) - image[40:, 40:]).mean() > 20
    assert np.abs(blur_image(image, 5, boxes)[8:24, 8:24].astype(int) - image[8:24, 8:24]).mean() > 20


def test_gaussian_noise_only_brightens():
    """DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): cv::randn into a uint8 matrix: negative draws
    become 0."""
    image = np.full((8, 8, 3), 100, np.uint8)
    np.testing.assert_array_equal(add_noise(image, np.full((8, 8, 3), -30, np.float32)), image)
    assert (add_noise(image, np.full((8, 8, 3), 30.4, np.float32)) == 130).all()
    assert (add_noise(image, np.full((8, 8, 3), 300, np.float32)) == 255).all()


def test_hsv_in_opencv_8bit_steps():
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    assert distort_hsv(red, 0, 1, 1) is red
    # hue +60 of 179 steps (1/3 of the circle): red becomes green
    green = distort_hsv(red, 60 / 179, 1, 1)
    assert green[0, 0, 1] == 200 and green[0, 0, 0] < 5 and green[0, 0, 2] < 5
    # a hue pushed below 0 saturates at 0 (stays red); value scaling saturates at 255
    np.testing.assert_array_equal(distort_hsv(red, -0.3, 1, 1), red)
    assert distort_hsv(red, 0, 1, 2)[0, 0, 0] == 255
    grey = np.full((2, 2, 3), 90, np.uint8)
    np.testing.assert_array_equal(distort_hsv(grey, 0.2, 1.5, 1), grey)    # no saturation to scale, hue moot


# ----------------------------------------------------------------------------- mosaic and mixup, fixed draws

def _pieces(draws: list[ImageDraws], options: AlexeyabAugmentOptions, w: int, h: int) -> list[Piece]:
    """Four images, each with its own background and a white box near the mosaic's centre."""
    specs = [(120, 80, 70, 40, 110, 75), (100, 100, 5, 50, 45, 95), (90, 120, 40, 10, 85, 60),
             (110, 90, 10, 5, 60, 50)]
    pieces = []
    for quadrant, ((ow, oh, *box), draw) in enumerate(zip(specs, draws)):
        image, truth = box_image(ow, oh, *box, background=20 + 30 * quadrant)
        pieces.append(Piece(augment_one(image, truth, w, h, options, draw, np.arange(1), quadrant), ow, oh))
    return pieces


MOSAIC_DRAWS = [ImageDraws(jitter=(0.5, 0.2, 0.5, 0.1)),                 # right and bottom windows past the image
                ImageDraws(jitter=(0.1, 0.5, 0.5, 0.2), flip=True),
                ImageDraws(jitter=(0.2, 0.5, 0.1, 0.5), corner=True),
                ImageDraws(jitter=(0.5, 0.5, 0.5, 0.5))]


def test_mosaic_quadrant_windows():
    """DARKNET(AlexeyAB data.c:load_data_detection): quadrant 0 takes the part of its input left of and above the
    point (w - cut_x - right_shift, h - cut_y - bot_shift), quadrant 3 the part right of and below
    (left_shift, top_shift)."""
    cut, shifts = Cut(30, 20), Shifts(left=4, right=6, top=3, bot=5)
    w, h = 96, 64
    assert quadrant_window(0, cut, shifts, w, h).__dict__ == dict(dest_x=0, dest_y=0, src_x=60, src_y=39,
                                                                  width=30, height=20)
    assert quadrant_window(1, cut, shifts, w, h).__dict__ == dict(dest_x=30, dest_y=0, src_x=4, src_y=39,
                                                                  width=66, height=20)
    assert quadrant_window(2, cut, shifts, w, h).__dict__ == dict(dest_x=0, dest_y=20, src_x=60, src_y=3,
                                                                  width=30, height=44)
    assert quadrant_window(3, cut, shifts, w, h).__dict__ == dict(dest_x=30, dest_y=20, src_x=4, src_y=3,
                                                                  width=66, height=44)


def test_mosaic_shifts_are_how_far_the_window_reached_past_the_image():
    """left_shift = min(cut_x, max(0, -pleft*w/ow)) in integers; a flipped image swaps pleft and pright."""
    crop = Crop(pleft=-25, ptop=-10, pright=-50, pbot=7, swidth=175, sheight=103)
    assert quadrant_shifts(crop, False, 100, 100, 96, 64, Cut(40, 30)) == Shifts(left=24, right=48, top=6, bot=0)
    assert quadrant_shifts(crop, True, 100, 100, 96, 64, Cut(40, 30)) == Shifts(left=40, right=24, top=6, bot=0)


@pytest.mark.parametrize("mosaic_bound", [0, 1])
def test_mosaic_pixels_and_truths_move_together(mosaic_bound):
    w, h, cut = 96, 64, Cut(40, 28)
    options = AlexeyabAugmentOptions(jitter=0.3, mosaic_bound=mosaic_bound)
    pieces = _pieces(MOSAIC_DRAWS, options, w, h)
    canvas, block = compose_mosaic(pieces, cut, w, h, options.max, bool(mosaic_bound))
    truths = block[block[:, 2] > 0]
    assert block.shape == (200, 5) and len(truths) == 4
    np.testing.assert_array_equal(truths[:, 4], 1)
    quadrants = [(slice(0, cut.y), slice(0, cut.x)), (slice(0, cut.y), slice(cut.x, w)),
                 (slice(cut.y, h), slice(0, cut.x)), (slice(cut.y, h), slice(cut.x, w))]
    for quadrant, (region, piece, truth) in enumerate(zip(quadrants, pieces, truths)):
        shifts = quadrant_shifts(piece.image.crop, piece.image.flip, piece.ow, piece.oh, w, h, cut)
        window = quadrant_window(quadrant, cut, shifts, w, h)
        source = piece.image.input[:, window.src_y:window.src_y + window.height, window.src_x:window.src_x + window.width]
        np.testing.assert_array_equal(canvas[(slice(None), *region)], source)
        extent = white_extent(canvas, region)
        edges = truth_edges(truth, w, h)
        if mosaic_bound:   # the box clipped to its quadrant: exactly the white pixels there
            np.testing.assert_allclose(extent, edges, atol=1.5)
        else:              # the box moved with its image, reaching over the neighbouring quadrants
            moved = truth_edges(piece.image.truths[0], w, h) + [window.dest_x - window.src_x,
                                                               window.dest_y - window.src_y] * 2
            np.testing.assert_allclose(edges, np.clip(moved, 0, [w, h, w, h]), atol=1.01)
            assert np.all(edges[:2] <= np.array(extent[:2]) + 1.5) and np.all(edges[2:] >= np.array(extent[2:]) - 1.5)


def test_mosaic_truths_fill_only_the_places_left():
    w, h, cut = 96, 64, Cut(40, 28)
    options = AlexeyabAugmentOptions(jitter=0.3, max=2)
    _, block = compose_mosaic(_pieces(MOSAIC_DRAWS, options, w, h), cut, w, h, 2, False)
    assert block.shape == (2, 5) and (block[:, 2] > 0).all()


def test_mixup_averages_the_inputs_and_appends_the_truths():
    options = AlexeyabAugmentOptions(jitter=0)
    first = augment_one(*box_image(100, 100, 10, 10, 40, 40), 64, 64, options, ImageDraws(), np.arange(1))
    second = augment_one(*box_image(50, 80, 25, 40, 50, 80), 64, 64, options, ImageDraws(), np.arange(1))
    blended, block = compose_mixup(first, second, 200)
    np.testing.assert_allclose(blended, (first.input + second.input) / 2, atol=1e-7)
    np.testing.assert_allclose(block[:2], np.concatenate([first.truths, second.truths]))
    assert not block[2:].any()


# ----------------------------------------------------------------------------- draws: ranges and frequencies

def test_image_draw_distributions():
    rng = np.random.default_rng(1)
    options = AlexeyabAugmentOptions(hue=0.1, saturation=1.5, exposure=1.5, blur=5, gaussian_noise=20)
    draws = [draw_image(rng, options, 4, 4, mosaic=True) for _ in range(3000)]
    flips = np.mean([d.flip for d in draws])
    assert 0.46 < flips < 0.54 and 0.46 < np.mean([d.corner for d in draws]) < 0.54
    hues = np.array([d.dhue for d in draws])
    assert hues.min() >= -0.1 and hues.max() <= 0.1 and hues.min() < -0.09 and hues.max() > 0.09
    sats = np.array([d.dsat for d in draws])
    assert sats.min() >= 1 / 1.5 - 1e-6 and sats.max() <= 1.5 + 1e-6 and 0.46 < np.mean(sats > 1) < 0.54
    blur = np.array([d.blur for d in draws])
    assert set(blur) == {0, 1, 5} and all(0.3 < np.mean(blur == v) < 0.37 for v in (0, 1, 5))
    noisy = [d.noise for d in draws if d.noise is not None]
    assert 0.46 < len(noisy) / len(draws) < 0.54 and 18 < np.std(np.concatenate(noisy)) < 22
    plain = [draw_image(rng, AlexeyabAugmentOptions(flip=0), 4, 4) for _ in range(200)]
    assert not any(d.flip or d.corner or d.blur or d.noise is not None for d in plain)


def test_jitter_window_ranges():
    rng = np.random.default_rng(2)
    options = AlexeyabAugmentOptions(jitter=0.3)
    crops = [crop_window(200, 100, 64, 64, options, draw_image(rng, options, 1, 1)) for _ in range(3000)]
    lefts, tops = np.array([c.pleft for c in crops]), np.array([c.ptop for c in crops])
    assert lefts.min() == -59 and lefts.max() == 59 and tops.min() == -29 and tops.max() == 29   # |p| < dw: truncation


def test_cut_points_lie_in_the_middle_60_percent():
    rng = np.random.default_rng(3)
    cuts = [draw_cut(rng, 416, 256) for _ in range(4000)]
    xs, ys = {c.x for c in cuts}, {c.y for c in cuts}
    assert xs == set(range(83, 333)) and ys == set(range(51, 205))    # rand_int(int(w*0.2), int(w*0.8))


def test_half_the_samples_are_mixed():
    """DARKNET(AlexeyAB data.c:load_data_detection): use_mixup = 0 when random_gen() % 2 == 0."""
    loads = []

    def load(index):
        loads.append(index)
        return box_image(40, 30, 5, 5, 20, 20)

    rng = np.random.default_rng(4)
    options = AlexeyabAugmentOptions(mix=MIX_MOSAIC)
    calls = []
    for _ in range(400):
        before = len(loads)
        image, block = alexeyab_sample(load, 3, 10, 32, 32, options, rng)
        calls.append(len(loads) - before)
        assert image.shape == (3, 32, 32) and block.shape == (200, 5) and loads[before] == 3
    assert set(calls) == {1, 4} and 0.44 < calls.count(4) / len(calls) < 0.56
    assert set(loads) == set(range(10))
    mixup = []
    for _ in range(100):
        before = len(loads)
        alexeyab_sample(load, 0, 10, 32, 32, AlexeyabAugmentOptions(mix=MIX_MIXUP), rng)
        mixup.append(len(loads) - before)
    assert set(mixup) == {1, 2}


def test_mix_codes():
    """DARKNET(AlexeyAB parser.c:parse_net_options, data.c:load_data_detection)."""
    assert mix_code(1, 0, 0) == MIX_MIXUP and mix_code(1, 0, 1) == MIX_MOSAIC and mix_code(0, 1, 1) == 4
    assert detector_mix(mix_code(0, 1, 0)) == 0 and detector_mix(mix_code(0, 1, 1)) == MIX_MOSAIC


# ----------------------------------------------------------------------------- multi-scale

def test_alexeyab_sizes_are_relative_to_the_cfg():
    rule = AlexeyabMultiscale(random=1)
    assert rule.size_for(1.0, (416, 416)) == (448, 448)       # roundl(416/32 + 1) * 32: the + 1 rounds up
    assert rule.size_for(0.99, (416, 416)) == (416, 416)      # a factor under 1 never grows the net
    assert rule.size_for(1 / 1.4, (416, 416)) == (320, 320)
    assert rule.size_for(1.4, (416, 256)) == (608, 384)
    assert AlexeyabMultiscale(random=1, resize_step=64).size_for(1.4, (416, 416)) == (640, 640)
    assert AlexeyabMultiscale(random=1.2).coefficient == 1.2 and rule.coefficient == 1.4


def test_alexeyab_size_draws():
    rule = AlexeyabMultiscale(random=1)
    rng = np.random.default_rng(5)
    sizes = [rule(rng, 10 * k, 500, 10000, (416, 416)) for k in range(1, 2000)]
    ws = np.array([s.w for s in sizes])
    assert set(ws) == set(range(320, 609, 32)) and all(s.w == s.h for s in sizes)
    assert 0.45 < np.mean(ws > 416) < 0.55
    assert rule(rng, 3, 500, 10000, (416, 416)) is None
    first = rule(rng, 0, 500, 10000, (416, 416))              # the first draw of a run: the largest size
    assert (first.w, first.h) == (608, 608)
    assert first.line == "Resizing, random_coef = 1.40 \n\n 608 x 608 "
    assert {rule(rng, 10, 9901, 10000, (416, 416)).w for _ in range(20)} == {608}   # the last 100 steps


def test_pjreddie_sizes_ignore_the_cfg():
    rng = np.random.default_rng(6)
    sizes = {pjreddie_multiscale(rng, 10, 50, 10000, (160, 160)).w for _ in range(500)}
    assert sizes == set(range(320, 609, 32))
    assert pjreddie_multiscale(rng, 0, 9900, 10000, (160, 160)).line == "Resizing\n608"


# ----------------------------------------------------------------------------- YOLOv1 (pjreddie's load_data_region)

def test_region_crop_repeats_the_border():
    """DARKNET(image.c:crop_image): source rows and columns clamped into the image."""
    image = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    crop = crop_edge_extended(image, RegionCrop(pleft=-2, pright=1, ptop=1, pbot=-1))
    assert crop.shape == (3, 4, 6)
    np.testing.assert_array_equal(crop[0, :, 0], crop[0, :, 2])
    np.testing.assert_array_equal(crop[0, 0], [5, 5, 5, 6, 7, 8])
    np.testing.assert_array_equal(crop[0, -1], crop[0, -2])


@pytest.mark.parametrize("crop, flip", [(RegionCrop(-20, 15, 10, -12), False), (RegionCrop(12, -30, -8, 9), True)])
def test_region_truth_lands_on_the_drawn_box(crop, flip):
    image, truth = box_image(160, 100, 40, 30, 100, 70)
    sized = resize_image(crop_edge_extended(image_to_chw(image), crop), 96, 64)
    if flip:
        sized = sized[:, :, ::-1]
    block = region_truths(truth, crop, 160, 100, flip, 90)
    assert block.shape == (90, 5) and not block[1:].any()
    np.testing.assert_allclose(white_extent(sized), truth_edges(block[0], 96, 64), atol=1.5)


def test_region_truths_keep_the_shuffled_order_and_drop_tiny_boxes():
    truths = np.float32([[0.3, 0.3, 0.2, 0.2, 0], [0.5, 0.5, 0.0005, 0.2, 1], [0.7, 0.7, 0.2, 0.2, 2]])
    block = region_truths(truths, RegionCrop(0, 0, 0, 0), 100, 100, False, 90)
    np.testing.assert_allclose(block[:2, 4], [0, 2])
    assert not block[2:].any()


def test_region_sample_draws():
    rng = np.random.default_rng(7)
    crops = [random_region_crop(rng, 200, 100, 0.2) for _ in range(2000)]
    lefts = np.array([c.pleft for c in crops])
    assert lefts.min() == -39 and lefts.max() == 39
    image, _ = box_image(64, 48, 10, 10, 30, 30)
    truths = np.float32([[0.2, 0.2, 0.1, 0.1, 0], [0.6, 0.6, 0.1, 0.1, 1], [0.8, 0.3, 0.1, 0.1, 2]])
    firsts = set()
    for seed in range(40):
        sample, block = augment_region(image, truths, 32, 32, AugmentOptions(jitter=0.2, max=90),
                                       np.random.default_rng(seed))
        assert sample.shape == (3, 32, 32) and block.shape == (90, 5)
        firsts.add(int(block[0, 4]))
    assert firsts == {0, 1, 2}      # the boxes are shuffled


# ----------------------------------------------------------------------------- datasets and the entry point

@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict[str, Path]:
    """Two small synthetic sets: labels in labels/ (pjreddie's layout) and beside the images (AlexeyAB's)."""
    root = tmp_path_factory.mktemp("synth")
    return {layout: make_synth(root / layout, 6, 1, size=96, layout=layout) for layout in ("darknet", "alexeyab")}


def _train_list(data_file: Path) -> Path:
    return data_file.parent / "train.txt"


def _net(tmp_path: Path, source: str, replace: dict[str, str]) -> Darknet:
    text = (REPO / "cfg" / source).read_text()
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    cfg = tmp_path / source
    cfg.write_text(text)
    return Darknet.from_cfg(cfg)


def test_the_dialect_decides_where_labels_are(synth):
    paths = read_list(_train_list(synth["alexeyab"]))
    beside = DetectionDataset(paths, 5, (64, 64), dialect=ALEXEYAB)
    beside.require_a_sample()
    assert beside[0][1].shape == (30, 5)
    pjreddie = DetectionDataset(paths, 5, (64, 64))
    with pytest.raises(DataError, match="label files lie where alexeyab's rule looks \\(a .txt beside the image.*\\): add -ab"):
        pjreddie.require_a_sample()
    with pytest.raises(DataError, match="where pjreddie's rule looks \\(the first images.*\\): leave out -ab"):
        DetectionDataset(read_list(_train_list(synth["darknet"])), 5, dialect=ALEXEYAB).require_a_sample()


def test_a_region_net_trains_on_todays_path(synth, tmp_path):
    """The entry point gives a [region] net exactly what DetectionDataset + train_loader gave it (and now says
    `Resizing` at each multi-scale draw)."""
    net = _net(tmp_path, "synth-tiny.cfg", {"max_batches=1000": "max_batches=11", "batch=16": "batch=1",
                                                      "random=0": "random=1"})
    train = _train_list(synth["darknet"])
    region = net.layers[-1]
    expected = train_loader(DetectionDataset.from_list(
        train, region.options.classes, size=(net.width, net.height),
        options=AugmentOptions(jitter=region.options.jitter, hue=net.options.hue, saturation=net.options.saturation,
                               exposure=net.options.exposure, max=region.options.max)),
        1, 1, 11, seed=4, workers=0, random=bool(region.options.random))
    lines = []
    loader = detector_training_loader(net, train, dialect=PJREDDIE, start_batch=0, seed=4, workers=0, decoder="stb",
                                      log=lines.append)
    got = list(loader)
    assert len(got) == 11
    for (images, truths), (want_images, want_truths) in zip(got, expected):
        torch.testing.assert_close(images, want_images, rtol=0, atol=0)
        torch.testing.assert_close(truths, want_truths, rtol=0, atol=0)
    assert lines == [f"Resizing\n{got[0][0].shape[-1]}", f"Resizing\n{got[10][0].shape[-1]}"]


def test_alexeyab_yolo_loader_resizes_relative_to_the_cfg(synth, tmp_path):
    net = _net(tmp_path, "synth-v4-tiny.cfg", {"random=0": "random=1", "hue=.1": "hue=.1\nmosaic=1\nblur=1",
                                              "max_batches=3000": "max_batches=200", "batch=16": "batch=2"})
    data = training_data(net, ALEXEYAB)
    assert isinstance(data.augmenter, AlexeyabAugmenter) and data.augmenter.options.mix == MIX_MOSAIC
    lines = []
    loader = detector_training_loader(net, _train_list(synth["alexeyab"]), dialect=ALEXEYAB, start_batch=50,
                                      seed=1, workers=0, decoder="stb", log=lines.append)
    sizes = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for k, (images, truths) in enumerate(loader):
            sizes.append(images.shape[-1])
            assert truths.shape == (2, 200, 5) and images.shape[-2] == images.shape[-1]
            if k == 25:
                break
    assert sizes[:10] == [224] * 10          # the run's first draw: roundl(1.4 * 128 / 32 + 1) * 32
    assert set(sizes) <= {128, 160, 192, 224} and len(set(sizes)) > 1
    assert lines[0] == "Resizing, random_coef = 1.40 \n\n 224 x 224 " and len(lines) == 3


def test_alexeyab_cfg_combinations(tmp_path, synth):
    both = _net(tmp_path, "synth-v4-tiny.cfg", {"hue=.1": "hue=.1\nmosaic=1\nletter_box=1"})
    with pytest.raises(CfgError, match="letter_box=1 and mosaic=1 cannot be combined"):
        training_data(both, ALEXEYAB)
    training_data(both, PJREDDIE)     # pjreddie's path reads neither
    cutmix = _net(tmp_path, "synth-v4-tiny.cfg", {"hue=.1": "hue=.1\ncutmix=1"})
    assert training_data(cutmix, ALEXEYAB).note == CUTMIX_NOTE
    assert training_data(cutmix, ALEXEYAB).augmenter.options.mix == 0


def test_a_bad_mosaic_image_names_itself(synth, tmp_path):
    paths = read_list(_train_list(synth["alexeyab"]))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    (tmp_path / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    dataset = DetectionDataset(paths[:1] + [str(broken)], 5, (64, 64), dialect=ALEXEYAB,
                               augmenter=AlexeyabAugmenter(AlexeyabAugmentOptions(mix=MIX_MOSAIC)))
    skipped = [dataset[SampleKey(0, 64, 64, (seed,))] for seed in range(30)]
    named = {item.path for item in skipped if not isinstance(item, tuple)}
    assert named == {str(broken)}


def test_pjreddie_yolo_and_yolov1_data(tmp_path):
    """Under pjreddie's dialect a [yolo] net trains on load_data_detection with the last [yolo] layer's jitter and
    max and pjreddie's sizes (AlexeyAB's sizes under its dialect, [region] nets too); YOLOv1 on load_data_region,
    at its cfg size."""
    yolo = _net(tmp_path, "synth-v4-tiny.cfg", {"random=0": "random=1"})
    data = training_data(yolo, PJREDDIE)
    last = yolo.layers[-1].options
    assert data.augmenter == PjreddieAugmenter(AugmentOptions(jitter=last.jitter, hue=0.1, saturation=1.5,
                                                              exposure=1.5, max=last.max))
    assert data.multiscale is pjreddie_multiscale and data.max_truths == 200
    assert training_data(yolo, ALEXEYAB).multiscale == AlexeyabMultiscale(1.0, 32)
    region = _net(tmp_path, "synth-tiny.cfg", {"random=0": "random=1"})
    assert training_data(region, PJREDDIE).multiscale is pjreddie_multiscale
    assert training_data(region, ALEXEYAB).multiscale == AlexeyabMultiscale(1, 32)   # sizes relative to the cfg's
    v1 = training_data(Darknet.from_cfg(REPO / "cfg" / "yolov1-tiny.cfg"), PJREDDIE)
    assert isinstance(v1.augmenter, RegionAugmenter) and v1.multiscale is None and v1.max_truths == 90


def test_alexeyab_batches_are_the_same_with_workers(synth, tmp_path):
    net = _net(tmp_path, "synth-v4-tiny.cfg", {"hue=.1": "hue=.1\nmosaic=1\nmixup=1\nblur=1\ngaussian_noise=10",
                                              "max_batches=3000": "max_batches=2", "batch=16": "batch=4"})
    train = _train_list(synth["alexeyab"])
    serial, parallel = (list(detector_training_loader(net, train, dialect=ALEXEYAB, start_batch=0, seed=9,
                                                      workers=workers, decoder="stb")) for workers in (0, 2))
    assert len(serial) == 2
    for (a_images, a_truths), (b_images, b_truths) in zip(serial, parallel):
        torch.testing.assert_close(a_images, b_images, rtol=0, atol=0)
        torch.testing.assert_close(a_truths, b_truths, rtol=0, atol=0)


# ----------------------------------------------------------------------------- against AlexeyAB's C code

AB_TRUTHS = json.loads((Path(__file__).parent / "fixtures" / "ab_augment" / "ab_truths.json").read_text())


@pytest.mark.parametrize("case", AB_TRUTHS["mosaic"], ids=range(len(AB_TRUTHS["mosaic"])))
def test_mosaic_truths_as_alexeyabs_blend_truth_mosaic(case):
    w, h, cut = case["w"], case["h"], Cut(*case["cut"])
    window = quadrant_window(case["quadrant"], cut, Shifts(*case["shifts"]), w, h)
    considered = np.float32(case["truths"])[:case["max"] - case["existing"]]
    moved = mosaic_truths(considered, case["quadrant"], cut, window, w, h, bool(case["mosaic_bound"]))
    np.testing.assert_allclose(moved, np.float32(case["c_out"]).reshape(-1, 5), rtol=0, atol=1e-6)


@pytest.mark.parametrize("case", AB_TRUTHS["fill"], ids=range(len(AB_TRUTHS["fill"])))
def test_truths_as_alexeyabs_fill_truth_detection(case):
    class_id, *box = case["label"]
    truths = np.float32([[*map(float, box), int(class_id)]])
    moved = augment_truths(truths, Crop(*case["crop"]), case["ow"], case["oh"], bool(case["flip"]), *case["net"], 4)
    np.testing.assert_allclose(moved.rows, np.float32(case["c_out"]).reshape(-1, 5), rtol=0, atol=1e-6)
    assert moved.min_w_h == case["min_w_h"]
