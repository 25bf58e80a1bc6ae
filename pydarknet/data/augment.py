"""Darknet's detection augmentation (data.c:load_data_detection), one image at a time; at the end YOLOv1's
(data.c:load_data_region, `augment_region`).

Pipeline, in Darknet's order of random draws: a jittered aspect ratio decides the size of the image
on a `w x h` canvas filled with 0.5 (the longer side fills the canvas), a random offset places it;
hue/saturation/exposure are distorted in HSV space; the result is mirrored with probability 1/2;
the truths are shuffled, mapped onto the canvas (clipped), capped at `max` and tiny ones dropped.

Images are float32 (3, H, W) RGB in [0, 1] after decoding. Truth rows are Darknet's
`(x, y, w, h, class)`, boxes cxcywh relative to the image they describe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..image import image_to_chw, resize_image
from .labels import CLASSIFICATION_ONLY_ABOVE

MIN_TRUTH_SIZE = 0.001  # DARKNET(data.c:fill_truth_detection): narrower/shorter truths are dropped


@dataclass(frozen=True)
class AugmentOptions:
    """The options that drive augmentation, named as in the cfg.

    `jitter` and `max` come from `[region]`, `hue`, `saturation`, `exposure` from `[net]`
    (defaults as in parser.c).
    """

    jitter: float = 0.2
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    max: int = 30

    def __post_init__(self):
        zero_means_unchanged(self, "saturation", "exposure")


def zero_means_unchanged(options, *names: str) -> None:
    """DARKNET(data.c:load_thread): a zero saturation, exposure or aspect means "no change" (1), not black/gray."""
    for name in names:
        if getattr(options, name) == 0:
            object.__setattr__(options, name, 1.0)  # the option dataclasses are frozen


@dataclass(frozen=True)
class Placement:
    """Where the image lands on the canvas, in canvas pixels (floats, as Darknet computes them)."""

    nw: float
    nh: float
    dx: float
    dy: float


def random_placement(rng: np.random.Generator, orig_w: int, orig_h: int, w: int, h: int,
                     jitter: float) -> Placement:
    """Draw the jittered size and offset of an `orig_w x orig_h` image on a `w x h` canvas."""
    dw, dh = jitter * orig_w, jitter * orig_h
    new_ar = (orig_w + rng.uniform(-dw, dw)) / (orig_h + rng.uniform(-dh, dh))
    # DARKNET(data.c:load_data_detection): scale is fixed at 1, the longer side spans the canvas
    if new_ar < 1:
        nh = float(h)
        nw = nh * new_ar
    else:
        nw = float(w)
        nh = nw / new_ar
    return Placement(nw, nh, rand_uniform(rng, 0, w - nw), rand_uniform(rng, 0, h - nh))


def rand_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Uniform in [low, high]; a reversed range is swapped (utils.c:rand_uniform).

    On a non-square canvas the image can be longer than the canvas side, and its offset is then
    drawn from a negative range (the image hangs off the canvas).
    """
    return rng.uniform(min(low, high), max(low, high))


def place_image(image: np.ndarray, placement: Placement, w: int, h: int) -> np.ndarray:
    """Resize `image` (3, H, W) float32 and paste it on a 0.5 canvas; returns (3, h, w) float32.

    DARKNET(image.c:place_image): size and offset are truncated to int, canvas pixel x samples the
    source at x/nw*W (no half-pixel centring) and pixels beyond the source read as 0, so upscaling
    darkens the last row and column.
    """
    nw, nh, dx, dy = (int(v) for v in (placement.nw, placement.nh, placement.dx, placement.dy))
    canvas = np.full((3, h, w), 0.5, dtype=np.float32)
    cols = np.arange(max(0, -dx), min(nw, w - dx))
    rows = np.arange(max(0, -dy), min(nh, h - dy))
    if cols.size == 0 or rows.size == 0:
        return canvas
    src_h, src_w = image.shape[1:]
    padded = np.pad(image.astype(np.float32, copy=False), ((0, 0), (0, 1), (0, 1)))
    rx = cols.astype(np.float32) / np.float32(nw) * np.float32(src_w)
    ry = rows.astype(np.float32) / np.float32(nh) * np.float32(src_h)
    ix, iy = np.floor(rx).astype(np.int64), np.floor(ry).astype(np.int64)
    fx = rx - ix                                                     # [W']
    fy = (ry - iy)[:, None]                                          # [H', 1]
    blended_rows = padded[:, iy] * (1 - fy) + padded[:, iy + 1] * fy  # [3, H', src_w+1]
    canvas[:, rows[0] + dy: rows[-1] + dy + 1, cols[0] + dx: cols[-1] + dx + 1] = (
        blended_rows[:, :, ix] * (1 - fx) + blended_rows[:, :, ix + 1] * fx)
    return canvas


def rgb_to_hsv(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 RGB in [0, 1] -> (3, H, W) float32 HSV with hue in [0, 1)."""
    r, g, b = image
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    s = np.divide(delta, v, out=np.zeros_like(v), where=v > 0)
    # Gray pixels (delta 0) get hue 0 where Darknet computes 0/0; their saturation 0 makes it moot.
    colourful = delta > 0
    hue = np.where(r == v, np.divide(g - b, delta, out=np.zeros_like(v), where=colourful),
                   np.where(g == v, 2 + np.divide(b - r, delta, out=np.zeros_like(v), where=colourful),
                            4 + np.divide(r - g, delta, out=np.zeros_like(v), where=colourful)))
    hue = np.where(hue < 0, hue + 6, hue) / 6
    return np.stack([hue, s, v]).astype(np.float32, copy=False)


# Which of (v, p, q, t) each of r, g, b takes in hue sectors 0..5 (image.c:hsv_to_rgb)
_SECTOR_SOURCES = np.array([[0, 2, 1, 1, 3, 0],    # r
                            [3, 0, 0, 2, 1, 1],    # g
                            [1, 1, 3, 0, 0, 2]])   # b


def hsv_to_rgb(image: np.ndarray) -> np.ndarray:
    """(3, H, W) float32 HSV -> (3, H, W) float32 RGB, not clipped (saturation may exceed 1)."""
    h, s, v = image
    h6 = 6 * h
    sector = np.floor(h6)
    f = h6 - sector
    candidates = np.stack([v, v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))])  # [4, H, W] v, p, q, t
    # DARKNET(image.c:hsv_to_rgb): any sector >= 5 (h == 1 after the hue shift) uses sector 5's formula
    sources = _SECTOR_SOURCES[:, np.clip(sector, 0, 5).astype(np.intp)]              # [3, H, W]
    return np.take_along_axis(candidates, sources, axis=0)


def distort_image(image: np.ndarray, hue: float, sat: float, val: float) -> np.ndarray:
    """Shift hue by `hue`, scale saturation by `sat` and value by `val`; (3, H, W) float32 RGB."""
    hue_plane, s, v = rgb_to_hsv(image)
    shifted = hue_plane + np.float32(hue)
    # DARKNET(image.c:distort_image): the hue is wrapped once, not taken modulo 1
    shifted = np.where(shifted > 1, shifted - 1, np.where(shifted < 0, shifted + 1, shifted))
    hsv = np.stack([shifted, s * np.float32(sat), v * np.float32(val)])
    return np.clip(hsv_to_rgb(hsv), 0, 1)


def rand_scale(rng: np.random.Generator, s: float) -> float:
    """A factor in [1, s] or its reciprocal, each with probability 1/2 (utils.c:rand_scale)."""
    scale = rand_uniform(rng, 1, s)
    return scale if rng.integers(2) else 1 / scale


def random_distort_image(image: np.ndarray, rng: np.random.Generator, hue: float, saturation: float,
                         exposure: float) -> np.ndarray:
    """Darknet's random HSV distortion of a (3, H, W) float32 RGB image."""
    dhue = rand_uniform(rng, -hue, hue)
    dsat = rand_scale(rng, saturation)
    dexp = rand_scale(rng, exposure)
    return distort_image(image, dhue, dsat, dexp)


def correct_boxes(truths: np.ndarray, dx: float, dy: float, sx: float, sy: float, flip: bool) -> np.ndarray:
    """Map truths (N, 5) `(x, y, w, h, class)` from image to canvas coordinates, clipped to [0, 1].

    Arguments as in data.c: canvas = image * s - d (so d is minus the relative offset), then mirror
    if `flip`. Classification-only rows pass through unchanged.
    """
    out = truths.astype(np.float32, copy=True)
    has_box = ~(out[:, 0] > CLASSIFICATION_ONLY_ABOVE)
    boxes = out[has_box]
    x, y, w, h = boxes[:, :4].T
    left, right = (x - w / 2) * sx - dx, (x + w / 2) * sx - dx
    top, bottom = (y - h / 2) * sy - dy, (y + h / 2) * sy - dy
    if flip:
        left, right = 1 - right, 1 - left
    left, right, top, bottom = (np.clip(v, 0, 1) for v in (left, right, top, bottom))
    boxes[:, 0], boxes[:, 1] = (left + right) / 2, (top + bottom) / 2
    boxes[:, 2], boxes[:, 3] = np.clip(right - left, 0, 1), np.clip(bottom - top, 0, 1)
    out[has_box] = boxes
    return out


def fill_truth(truths: np.ndarray, max_truths: int) -> np.ndarray:
    """Pack corrected truths (N, 5) into Darknet's (max_truths, 5) block; unused rows are zero.

    DARKNET(data.c:fill_truth_detection): the cap is applied before boxes under 0.001 are dropped,
    so dropped boxes still use up places among the first `max_truths`.
    """
    return truth_block(_large_enough(truths[:max_truths]), max_truths)


def truth_block(truths: np.ndarray, max_truths: int) -> np.ndarray:
    """The first `max_truths` truths (N, 5) as a (max_truths, 5) float32 block, zero rows after the last."""
    block = np.zeros((max_truths, 5), dtype=np.float32)
    kept = truths[:max_truths]
    block[:len(kept)] = kept
    return block


def _large_enough(truths: np.ndarray) -> np.ndarray:
    """DARKNET(data.c:fill_truth_detection, fill_truth_region): the truths (N, 5) at least 0.001 wide and high."""
    return truths[(truths[:, 2] >= MIN_TRUTH_SIZE) & (truths[:, 3] >= MIN_TRUTH_SIZE)]


def augment_detection(image: np.ndarray, truths: np.ndarray, w: int, h: int, options: AugmentOptions,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sample as data.c:load_data_detection makes it.

    image: (H, W, 3) uint8 RGB. truths: (N, 5) `(x, y, w, h, class)` relative to the image.
    Returns the network input (3, h, w) float32 in [0, 1] and truths (options.max, 5) float32
    relative to that input.
    """
    orig_h, orig_w = image.shape[:2]
    placement = random_placement(rng, orig_w, orig_h, w, h, options.jitter)
    canvas = place_image(image_to_chw(image), placement, w, h)
    canvas = random_distort_image(canvas, rng, options.hue, options.saturation, options.exposure)
    flip = bool(rng.integers(2))
    if flip:
        canvas = canvas[:, :, ::-1]
    # DIVERGES: a uniform permutation; Darknet's randomize_boxes swaps each row with any row (biased)
    shuffled = truths[rng.permutation(len(truths))]
    # DARKNET(data.c:load_data_detection): truths use the float size/offset, pixels the truncated ones
    corrected = correct_boxes(shuffled, -placement.dx / w, -placement.dy / h,
                              placement.nw / w, placement.nh / h, flip)
    return np.ascontiguousarray(canvas), fill_truth(corrected, options.max)


@dataclass(frozen=True)
class RegionCrop:
    """YOLOv1's crop window of an image, in image pixels: each side moved in by its (possibly negative) amount."""

    pleft: int
    pright: int
    ptop: int
    pbot: int


def random_region_crop(rng: np.random.Generator, orig_w: int, orig_h: int, jitter: float) -> RegionCrop:
    """DARKNET(data.c:load_data_region): each side moves by `int rand_uniform(-dw, dw)`, dw = (int)(ow*jitter)."""
    dw, dh = int(np.float32(orig_w) * np.float32(jitter)), int(np.float32(orig_h) * np.float32(jitter))
    pleft, pright = (int(rand_uniform(rng, -dw, dw)) for _ in range(2))
    ptop, pbot = (int(rand_uniform(rng, -dh, dh)) for _ in range(2))
    return RegionCrop(pleft, pright, ptop, pbot)


def crop_edge_extended(image: np.ndarray, crop: RegionCrop) -> np.ndarray:
    """The crop window of `image` (3, H, W); rows and columns past the image repeat its border.

    DARKNET(image.c:crop_image): the source row and column are clamped into the image.
    """
    _, im_h, im_w = image.shape
    rows = np.clip(np.arange(crop.ptop, im_h - crop.pbot), 0, im_h - 1)
    cols = np.clip(np.arange(crop.pleft, im_w - crop.pright), 0, im_w - 1)
    return image[:, rows[:, None], cols[None, :]]


def region_truths(shuffled: np.ndarray, crop: RegionCrop, orig_w: int, orig_h: int, flip: bool,
                  max_truths: int) -> np.ndarray:
    """Shuffled truths (N, 5) moved onto the crop (and flip) as a (max_truths, 5) block, boxes under 0.001 dropped.

    DARKNET(data.c:fill_truth_region): boxes are kept in their shuffled order (the loss gives each cell the first
    box whose centre falls in it). DIVERGES: Darknet keeps every box; here the first `max_truths` ([detection] max)
    after the drop, the places of the truth block.
    """
    sx = np.float32(orig_w - crop.pleft - crop.pright) / np.float32(orig_w)
    sy = np.float32(orig_h - crop.ptop - crop.pbot) / np.float32(orig_h)
    dx, dy = np.float32(crop.pleft) / np.float32(orig_w) / sx, np.float32(crop.ptop) / np.float32(orig_h) / sy
    moved = correct_boxes(shuffled, dx, dy, np.float32(1) / sx, np.float32(1) / sy, flip)
    return truth_block(_large_enough(moved), max_truths)


def augment_region(image: np.ndarray, truths: np.ndarray, w: int, h: int, options: AugmentOptions,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One YOLOv1 training sample as data.c:load_data_region makes it: a jittered crop (edges repeated) stretched
    to `w x h`, mirrored with probability 1/2, distorted in HSV; truths shuffled and moved with the pixels.

    image: (H, W, 3) uint8 RGB; truths: (N, 5). Returns (3, h, w) float32 and (options.max, 5) float32.
    """
    orig_h, orig_w = image.shape[:2]
    crop = random_region_crop(rng, orig_w, orig_h, options.jitter)
    if orig_w - crop.pleft - crop.pright < 1 or orig_h - crop.ptop - crop.pbot < 1:
        raise ValueError(f"jitter={options.jitter} leaves nothing of a {orig_w}x{orig_h} image to crop")
    flip = bool(rng.integers(2))
    sized = resize_image(crop_edge_extended(image_to_chw(image), crop), w, h)
    if flip:
        sized = sized[:, :, ::-1]
    sized = random_distort_image(sized, rng, options.hue, options.saturation, options.exposure)
    # DIVERGES: a uniform permutation; Darknet's randomize_boxes swaps each row with any row (biased)
    shuffled = truths[rng.permutation(len(truths))]
    return np.ascontiguousarray(sized), region_truths(shuffled, crop, orig_w, orig_h, flip, options.max)
