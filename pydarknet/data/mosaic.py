"""AlexeyAB's training sample from one to four images: plain, `mixup=1` (two images averaged) or `mosaic=1`
(four images, one per quadrant around a random cut point), as DARKNET(AlexeyAB data.c:load_data_detection)
makes them in its OpenCV build.

Each image is augmented on its own (`augment_ab.augment_one`, its own draws). For the mosaic, image q
(0: top left, 1: top right, 2: bottom left, 3: bottom right) gives the part of its augmented input next to
the cut point, shifted back by how far its crop window reached past the image (`Shifts`); its truths
move with it (`mosaic_truths`). Pixels, truths and cut points take their random numbers as arguments.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .augment import truth_block
from .augment_ab import (MIX_MIXUP, MIX_MOSAIC, AlexeyabAugmentOptions, AugmentedImage, Crop, augment_one,
                         draw_image)

MOSAIC_MIN_OFFSET = 0.2   # DARKNET(AlexeyAB data.c:load_data_detection): cut points lie in 20%..80% of each side
MIXUP_WEIGHT = 0.5        # DARKNET(AlexeyAB data.c:load_data_detection): blend_images_cv(ai, 0.5, old_img, 0.5)

LoadImage = Callable[[int], tuple[np.ndarray, np.ndarray]]   # list index -> (H, W, 3) uint8 image, (N, 5) truths


@dataclass(frozen=True)
class Cut:
    """The mosaic's cut point in network pixels: quadrants 0 and 2 are left of x, 0 and 1 above y."""

    x: int
    y: int


def draw_cut(rng: np.random.Generator, w: int, h: int) -> Cut:
    """DARKNET(AlexeyAB data.c:load_data_detection): rand_int(w*0.2, w*0.8), both ends included, likewise for y."""
    low, high = np.float32(MOSAIC_MIN_OFFSET), np.float32(1) - np.float32(MOSAIC_MIN_OFFSET)
    x = rng.integers(int(np.float32(w) * low), int(np.float32(w) * high) + 1)
    y = rng.integers(int(np.float32(h) * low), int(np.float32(h) * high) + 1)
    return Cut(int(x), int(y))


@dataclass(frozen=True)
class Shifts:
    """How far (network pixels) an image's crop window reached past its left, right, top and bottom edges, capped
    by the quadrant: the mosaic takes its piece that much further in, so that less of the fill shows."""

    left: int
    right: int
    top: int
    bot: int


def quadrant_shifts(crop: Crop, flip: bool, ow: int, oh: int, w: int, h: int, cut: Cut) -> Shifts:
    """DARKNET(AlexeyAB data.c:load_data_detection): left_shift = min(cut_x, max(0, -pleft*w/ow)) etc. in integers,
    pleft and pright swapped when the image was flipped."""
    pleft, pright = (crop.pright, crop.pleft) if flip else (crop.pleft, crop.pright)
    return Shifts(left=min(cut.x, max(0, -pleft * w // ow)), right=min(w - cut.x, max(0, -pright * w // ow)),
                  top=min(cut.y, max(0, -crop.ptop * h // oh)), bot=min(h - cut.y, max(0, -crop.pbot * h // oh)))


@dataclass(frozen=True)
class QuadrantWindow:
    """Where quadrant q lies in the mosaic (dest_*, size) and where its piece starts in its image's input (src_*)."""

    dest_x: int
    dest_y: int
    src_x: int
    src_y: int
    width: int
    height: int


def quadrant_window(quadrant: int, cut: Cut, shifts: Shifts, w: int, h: int) -> QuadrantWindow:
    """DARKNET(AlexeyAB data.c:load_data_detection): the memcpy of each row of quadrant q."""
    left_side, top_side = quadrant in (0, 2), quadrant in (0, 1)
    return QuadrantWindow(dest_x=0 if left_side else cut.x, dest_y=0 if top_side else cut.y,
                          src_x=w - cut.x - shifts.right if left_side else shifts.left,
                          src_y=h - cut.y - shifts.bot if top_side else shifts.top,
                          width=cut.x if left_side else w - cut.x, height=cut.y if top_side else h - cut.y)


def paste_quadrant(canvas: np.ndarray, piece: np.ndarray, window: QuadrantWindow) -> None:
    """Copy the window of `piece` (3, h, w) into `canvas` (3, h, w) in place."""
    canvas[:, window.dest_y:window.dest_y + window.height, window.dest_x:window.dest_x + window.width] = \
        piece[:, window.src_y:window.src_y + window.height, window.src_x:window.src_x + window.width]


def mosaic_truths(truths: np.ndarray, quadrant: int, cut: Cut, window: QuadrantWindow, w: int, h: int,
                  mosaic_bound: bool) -> np.ndarray:
    """Quadrant q's truths (N, 5) moved as its pixels were, as DARKNET(AlexeyAB data.c:blend_truth_mosaic) does:
    box edges truncated to network pixels, then clipped to the quadrant (mosaic_bound=1) or else only to the
    mosaic's edges; boxes left outside, empty, or under one network pixel dropped."""
    fw, fh = np.float32(w), np.float32(h)
    x = truths[:, 0] + np.float32(window.dest_x - window.src_x) / fw
    y = truths[:, 1] + np.float32(window.dest_y - window.src_y) / fh
    bw, bh = truths[:, 2], truths[:, 3]
    if mosaic_bound:
        x, bw = _clip_to(x, bw, fw, window.dest_x, window.dest_x + window.width)
        y, bh = _clip_to(y, bh, fh, window.dest_y, window.dest_y + window.height)
    else:
        x, bw = _fit_inside(x, bw, fw)
        y, bh = _fit_inside(y, bh, fh)
    left, right = _edges(x, bw, fw)
    top, bot = _edges(y, bh, fh)
    inside = ((left >= 0) & (right <= w) & (top >= 0) & (bot <= h) & (bw > 0) & (bw < 1) & (bh > 0) & (bh < 1)
              & (x > 0) & (x < 1) & (y > 0) & (y < 1) & (bw > np.float32(1) / fw) & (bh > np.float32(1) / fh))
    moved = np.stack([x, y, bw, bh, truths[:, 4]], axis=1).astype(np.float32)
    return moved[inside]


def _edges(centre: np.ndarray, size: np.ndarray, scale: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """DARKNET(AlexeyAB data.c:blend_truth_mosaic): `int left = (xb - wb / 2)*w`: truncated toward zero."""
    return (np.trunc((centre - size / 2) * scale).astype(np.int64),
            np.trunc((centre + size / 2) * scale).astype(np.int64))


def _clip_to(centre: np.ndarray, size: np.ndarray, scale: np.float32, low: int, high: int):
    """mosaic_bound=1: the pixel edges clamped to [low, high], the box rebuilt from them."""
    left, right = _edges(centre, size, scale)
    left, right = np.maximum(left, low), np.minimum(right, high)
    return ((left + right).astype(np.float32) / 2 / scale, (right - left).astype(np.float32) / scale)


def _fit_inside(centre: np.ndarray, size: np.ndarray, scale: np.float32):
    """mosaic_bound=0: a box reaching past the mosaic's left (then right) edge loses what lies outside."""
    left, right = _edges(centre, size, scale)
    below = np.minimum(left, 0).astype(np.float32) / scale          # <= 0: how far past the low edge
    centre, size = centre - below / 2, size + below
    above = np.maximum(right - scale.astype(np.int64), 0).astype(np.float32) / scale
    return centre - above / 2, size - above


def append_truths(block: list[np.ndarray], count: int, rows: np.ndarray, max_truths: int) -> int:
    """Append up to `max_truths - count` of `rows` to `block`; returns the new count.

    DARKNET(AlexeyAB data.c:blend_truth, blend_truth_mosaic): the next image's truths fill the places left."""
    taken = rows[:max(max_truths - count, 0)]
    block.append(taken)
    return count + len(taken)


def pack(block: list[np.ndarray], max_truths: int) -> np.ndarray:
    """The truths of a sample as a (max_truths, 5) float32 block, zero rows after the last."""
    return truth_block(np.concatenate(block) if block else np.zeros((0, 5), np.float32), max_truths)


@dataclass(frozen=True)
class Piece:
    """One image of a sample after `augment_ab.augment_one`, with its original size (the mosaic's shifts need it)."""

    image: AugmentedImage
    ow: int
    oh: int


def augment_piece(load: LoadImage, index: int, w: int, h: int, options: AlexeyabAugmentOptions,
                  rng: np.random.Generator, quadrant: int | None = None) -> Piece:
    """Load image `index` and augment it on draws from `rng`."""
    image, truths = load(index)
    draws = draw_image(rng, options, w, h, mosaic=quadrant is not None)
    # DIVERGES: a uniform permutation; AlexeyAB's randomize_boxes swaps each row with any row (biased)
    order = rng.permutation(len(truths))
    return Piece(augment_one(image, truths, w, h, options, draws, order, quadrant), image.shape[1], image.shape[0])


def compose_mixup(first: AugmentedImage, second: AugmentedImage, max_truths: int) -> tuple[np.ndarray, np.ndarray]:
    """DARKNET(AlexeyAB data.c:load_data_detection, blend_truth): the two inputs averaged, the first image's truths
    then the second's."""
    block: list[np.ndarray] = []
    append_truths(block, append_truths(block, 0, first.truths, max_truths), second.truths, max_truths)
    return second.input * np.float32(MIXUP_WEIGHT) + first.input * np.float32(MIXUP_WEIGHT), pack(block, max_truths)


def compose_mosaic(pieces: list[Piece], cut: Cut, w: int, h: int, max_truths: int,
                   mosaic_bound: bool) -> tuple[np.ndarray, np.ndarray]:
    """The mosaic of four pieces (quadrants 0..3, augmented with `quadrant=` set) around `cut`: input (3, h, w)
    float32 and truths (max_truths, 5)."""
    canvas = np.zeros((3, h, w), np.float32)
    block: list[np.ndarray] = []
    count = 0
    for quadrant, piece in enumerate(pieces):
        shifts = quadrant_shifts(piece.image.crop, piece.image.flip, piece.ow, piece.oh, w, h, cut)
        window = quadrant_window(quadrant, cut, shifts, w, h)
        paste_quadrant(canvas, piece.image.input, window)
        # DARKNET(AlexeyAB data.c:blend_truth_mosaic): only the places left are looked at, before the drops
        considered = piece.image.truths[:max(max_truths - count, 0)]
        count = append_truths(block, count, mosaic_truths(considered, quadrant, cut, window, w, h, mosaic_bound),
                              max_truths)
    return canvas, pack(block, max_truths)


def alexeyab_sample(load: LoadImage, index: int, images: int, w: int, h: int, options: AlexeyabAugmentOptions,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sample as AlexeyAB's load_data_detection makes it: image `index` of a list of `images`, with
    (mixup, mosaic) 1 or 3 more drawn from the whole list, each on its own draws. Returns the input (3, h, w)
    float32 and truths (options.max, 5) float32."""
    # DARKNET(AlexeyAB data.c:load_data_detection): `if (random_gen() % 2 == 0) use_mixup = 0`, half the samples
    # plain. DIVERGES: decided per sample; AlexeyAB decides once per loading thread's share of the batch
    mix = options.mix if rng.integers(2) else 0
    if mix == MIX_MOSAIC:
        cut = draw_cut(rng, w, h)
        pieces = [augment_piece(load, index if quadrant == 0 else int(rng.integers(images)), w, h, options, rng,
                                quadrant) for quadrant in range(4)]
        return compose_mosaic(pieces, cut, w, h, options.max, bool(options.mosaic_bound))
    first = augment_piece(load, index, w, h, options, rng).image
    if mix == MIX_MIXUP:
        return compose_mixup(first, augment_piece(load, int(rng.integers(images)), w, h, options, rng).image,
                             options.max)
    return first.input, pack([first.truths], options.max)
