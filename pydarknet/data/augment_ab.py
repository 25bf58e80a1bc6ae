"""AlexeyAB's detection augmentation of one image (data.c:load_data_detection, OpenCV build, and
image_opencv.cpp:image_data_augmentation), the step that mosaic and mixup (`mosaic.py`) repeat per image.

Per image, in AlexeyAB's order: a crop window whose four sides move by up to `jitter` of the image (and
by `resize=` of the [yolo] layer; with `letter_box=1` widened to the net's aspect ratio) is cut out of the
image (outside: the image's mean colour) and stretched to the network size; the result is mirrored
(`flip=1`, probability 1/2), distorted in OpenCV's 8-bit HSV, blurred (`blur=`) and noised
(`gaussian_noise=`). The truths are shuffled, moved as the pixels are, capped at the layer's `max`, and
boxes under one network pixel dropped.

Every random number a transform uses comes in an `ImageDraws` (`draw_image` makes them), so the geometry
of each step can be tested on chosen draws. Images are (H, W, 3) uint8 RGB until `augment_image` returns
(3, h, w) float32 in [0, 1]; truth rows are `(x, y, w, h, class)`, boxes cxcywh relative.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..image import image_to_chw
from .augment import correct_boxes, rand_scale

FULL_BLUR_KERNEL = 17     # DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): blur=1's Gaussian kernel
MAX_NOISE_SIGMA = 127     # DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): gaussian_noise is capped
HUE_RANGE = 179           # DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): hsv[0] += 179 * dhue
BLUR_BOX_DIVISOR = 8      # DARKNET(AlexeyAB data.c:load_data_detection): blur at most a 1/8 of the smallest box

# AlexeyAB's `use_mixup` codes (parser.c:parse_net_options, data.c:load_data_detection)
MIX_NONE, MIX_MIXUP, MIX_CUTMIX, MIX_MOSAIC, MIX_MOSAIC_CUTMIX = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class AlexeyabAugmentOptions:
    """What drives AlexeyAB's augmentation, named as in the cfg.

    From [net]: hue, saturation, exposure, flip, blur, gaussian_noise, letter_box, mosaic_bound, and `mix`
    (`mix_code` of mixup/cutmix/mosaic); from the last detection layer: jitter, resize and `max`.
    """

    jitter: float = 0.2
    resize: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: int = 1
    blur: int = 0
    gaussian_noise: int = 0
    mix: int = MIX_NONE
    letter_box: int = 0
    mosaic_bound: int = 0
    max: int = 200

    def __post_init__(self):
        # DARKNET(AlexeyAB data.c:load_thread): a zero saturation or exposure means "no change"
        for name in ("saturation", "exposure"):
            if getattr(self, name) == 0:
                object.__setattr__(self, name, 1.0)


def mix_code(mixup: int, cutmix: int, mosaic: int) -> int:
    """AlexeyAB's use_mixup of the [net] keys (parser.c:parse_net_options: mosaic and cutmix override mixup)."""
    if mosaic and cutmix:
        return MIX_MOSAIC_CUTMIX
    if cutmix:
        return MIX_CUTMIX
    if mosaic:
        return MIX_MOSAIC
    return mixup


def detector_mix(code: int) -> int:
    """DARKNET(AlexeyAB data.c:load_data_detection): cutmix is for classifiers; with mosaic it is dropped,
    alone it means no mixing (the caller prints AlexeyAB's note)."""
    return {MIX_CUTMIX: MIX_NONE, MIX_MOSAIC_CUTMIX: MIX_MOSAIC}.get(code, code)


@dataclass(frozen=True)
class ImageDraws:
    """The random numbers of one image: `jitter` (r1..r4: left, right, top, bottom) and `resize` (resize_r1,
    resize_r2) in [0, 1); flip; dhue, dsat, dexp; blur (0 none, 1 the background, >1 the whole image with that
    kernel); noise: (h, w, 3) normal draws of sigma `gaussian_noise` or None; corner: mosaic moves the image
    to its corner."""

    jitter: tuple[float, float, float, float] = (0.5, 0.5, 0.5, 0.5)
    resize: tuple[float, float] = (0.5, 0.5)
    flip: bool = False
    dhue: float = 0.0
    dsat: float = 1.0
    dexp: float = 1.0
    blur: int = 0
    noise: np.ndarray | None = None
    corner: bool = False


def draw_image(rng: np.random.Generator, options: AlexeyabAugmentOptions, w: int, h: int,
               mosaic: bool = False) -> ImageDraws:
    """Draw one image's `ImageDraws` as load_data_detection does (the resize draws first, then jitter, flip, HSV,
    blur, noise, and the mosaic corner)."""
    resize = tuple(float(v) for v in rng.random(2))
    jitter = tuple(float(v) for v in rng.random(4))
    flip = bool(rng.integers(2)) if options.flip else False
    dhue = float(rng.uniform(-options.hue, options.hue)) if options.hue else 0.0
    dsat, dexp = rand_scale(rng, options.saturation), rand_scale(rng, options.exposure)
    blur = 0
    if options.blur:
        # DARKNET(AlexeyAB data.c:load_data_detection): rand_int(0, 2): none, the background, the whole image
        blur = (0, 1, options.blur)[int(rng.integers(3))]
    noise = None
    if options.gaussian_noise and rng.integers(2):
        sigma = min(max(options.gaussian_noise, 0), MAX_NOISE_SIGMA)
        noise = rng.normal(0, sigma, (h, w, 3)).astype(np.float32)
    corner = bool(rng.integers(2)) if mosaic else False
    return ImageDraws(jitter, resize, flip, dhue, dsat, dexp, blur, noise, corner)


@dataclass(frozen=True)
class Crop:
    """The window cut from an `ow x oh` image, in image pixels: `pleft` and `ptop` may be negative (the window
    reaches past the image), `pright`/`pbot` are how far the right/bottom sides moved in."""

    pleft: int
    ptop: int
    pright: int
    pbot: int
    swidth: int
    sheight: int


def _precalc(low: float, high: float, draw: float) -> np.float32:
    """DARKNET(AlexeyAB utils.c:rand_precalc_random): low + draw * (high - low), the range swapped if reversed."""
    low, high = min(low, high), max(low, high)
    return np.float32(draw) * (np.float32(high) - np.float32(low)) + np.float32(low)


def _c_int(value) -> int:
    """C's float -> int conversion: truncation toward zero."""
    return int(np.trunc(value))


def crop_window(ow: int, oh: int, w: int, h: int, options: AlexeyabAugmentOptions, draws: ImageDraws,
                quadrant: int | None = None) -> Crop:
    """The crop window of an `ow x oh` image for a `w x h` network (quadrant: 0..3 in a mosaic, else None)."""
    dw, dh = _c_int(np.float32(ow) * np.float32(options.jitter)), _c_int(np.float32(oh) * np.float32(options.jitter))
    r1, r2, r3, r4 = draws.jitter
    pleft, pright = _c_int(_precalc(-dw, dw, r1)), _c_int(_precalc(-dw, dw, r2))
    ptop, pbot = _c_int(_precalc(-dh, dh, r3)), _c_int(_precalc(-dh, dh, r4))
    resize = np.float32(options.resize)
    down = resize if resize <= 1 else np.float32(1) / resize
    up = resize if resize >= 1 else np.float32(1) / resize
    min_rdw, min_rdh = (_c_int(side * (np.float32(1) - np.float32(1) / down) / 2) for side in (ow, oh))   # <= 0
    max_rdw, max_rdh = (_c_int(side * (np.float32(1) - np.float32(1) / up) / 2) for side in (ow, oh))     # >= 0
    if resize < 1:   # DARKNET(AlexeyAB data.c:load_data_detection): resize < 1 only shrinks the objects
        max_rdw = max_rdh = 0
    rr1, rr2 = draws.resize
    # DARKNET(AlexeyAB data.c:load_data_detection): `int += float` adds in float, then truncates
    pleft, pright = _c_int(pleft + _precalc(min_rdw, max_rdw, rr1)), _c_int(pright + _precalc(min_rdw, max_rdw, rr2))
    ptop, pbot = _c_int(ptop + _precalc(min_rdh, max_rdh, rr1)), _c_int(pbot + _precalc(min_rdh, max_rdh, rr2))
    if options.letter_box:
        pleft, pright, ptop, pbot = _letter_box(ow, oh, w, h, pleft, pright, ptop, pbot)
    if quadrant is not None and draws.corner:
        pleft, pright, ptop, pbot = _to_corner(quadrant, draws.flip, pleft, pright, ptop, pbot)
    swidth, sheight = ow - pleft - pright, oh - ptop - pbot
    if swidth <= 0 or sheight <= 0 or ow - pleft <= 0 or oh - ptop <= 0:
        # DARKNET(AlexeyAB data.c:load_data_detection): "WARNING: invalid resize": the whole image; pright and pbot
        # keep their values (mosaic's shifts read them)
        return Crop(0, 0, pright, pbot, ow, oh)
    return Crop(pleft, ptop, pright, pbot, swidth, sheight)


def _letter_box(ow: int, oh: int, w: int, h: int, pleft: int, pright: int, ptop: int, pbot: int):
    """DARKNET(AlexeyAB data.c:load_data_detection): widen the window to the network's aspect ratio."""
    img_ar = np.float32(ow) / np.float32(oh)
    net_ar = np.float32(w) / np.float32(h)
    if img_ar / net_ar > 1:
        delta_h = (np.float32(ow) / net_ar - np.float32(oh)) / np.float32(2)
        return pleft, pright, _c_int(ptop - delta_h), _c_int(pbot - delta_h)
    delta_w = (np.float32(oh) * net_ar - np.float32(ow)) / np.float32(2)
    return _c_int(pleft - delta_w), _c_int(pright - delta_w), ptop, pbot


def _to_corner(quadrant: int, flip: bool, pleft: int, pright: int, ptop: int, pbot: int):
    """DARKNET(AlexeyAB data.c:load_data_detection): "move each 2nd image to the corner - so that most of it was
    visible": in each pair of sides one takes both moves and the other none; which one depends on the quadrant
    (and, left or right, on the flip)."""
    toward_left = (quadrant in (1, 3)) != flip     # pleft takes both horizontal moves
    toward_top = quadrant in (2, 3)                # ptop takes both vertical moves
    if toward_left:
        pleft, pright = pleft + pright, 0
    else:
        pleft, pright = 0, pleft + pright
    if toward_top:
        ptop, pbot = ptop + pbot, 0
    else:
        ptop, pbot = 0, ptop + pbot
    return pleft, pright, ptop, pbot


@dataclass(frozen=True)
class AugmentedTruths:
    """The truths of one augmented image, (N, 5) `(x, y, w, h, class)` in AlexeyAB's order after the cap and
    the drops, and min_w_h: the smallest side of a kept box in network pixels (int, 0 without boxes)."""

    rows: np.ndarray
    min_w_h: int


def augment_truths(shuffled: np.ndarray, crop: Crop, ow: int, oh: int, flip: bool, w: int, h: int,
                   max_truths: int) -> AugmentedTruths:
    """Move shuffled truths (N, 5) relative to the `ow x oh` image onto the cropped, stretched (and flipped)
    `w x h` network input, as DARKNET(AlexeyAB data.c:fill_truth_detection) does."""
    sx, sy = np.float32(crop.swidth) / np.float32(ow), np.float32(crop.sheight) / np.float32(oh)
    dx, dy = np.float32(crop.pleft) / np.float32(ow) / sx, np.float32(crop.ptop) / np.float32(oh) / sy
    x, y, bw, bh = shuffled[:, :4].T
    # DARKNET(AlexeyAB data.c:correct_boxes): a label wholly outside its image (and x = y = 0) is marked and later
    # dropped with "Wrong annotation"; it still uses up one of the `max` places
    labelled = ~((x + bw / 2 < 0) | (y + bh / 2 < 0) | (x - bw / 2 > 1) | (y - bh / 2 > 1) | ((x == 0) & (y == 0)))
    # DARKNET(AlexeyAB data.c:load_data_detection): `1. / sx` is a double division, passed on as a float
    moved = correct_boxes(shuffled, dx, dy, np.float32(1 / np.float64(sx)), np.float32(1 / np.float64(sy)),
                          flip)[:max_truths]
    x, y, bw, bh = moved[:, :4].T
    # DARKNET(AlexeyAB data.c:fill_truth_detection): boxes under one network pixel are dropped, and centres on the
    # left or top border
    kept = (labelled[:max_truths] & (bw >= np.float32(1) / np.float32(w)) & (bh >= np.float32(1) / np.float32(h))
            & (x > 0) & (x <= 1) & (y > 0) & (y <= 1))
    rows = moved[kept]
    min_w_h = _c_int(min((rows[:, 2] * np.float32(w)).min(), (rows[:, 3] * np.float32(h)).min())) if len(rows) else 0
    return AugmentedTruths(rows, min_w_h)


def effective_blur(blur: int, min_w_h: int) -> int:
    """DARKNET(AlexeyAB data.c:load_data_detection): a whole-image blur is cut to a 1/8 of the smallest box (so 0
    without boxes, and 1, the background blur, for boxes of 8..15 pixels)."""
    return min_w_h // BLUR_BOX_DIVISOR if blur > 1 and min_w_h // BLUR_BOX_DIVISOR < blur else blur


def crop_and_stretch(image: np.ndarray, crop: Crop, w: int, h: int) -> np.ndarray:
    """The crop window of `image` (H, W, 3) uint8, stretched to (h, w, 3) uint8 with OpenCV's bilinear resize;
    what lies outside the image is its mean colour."""
    oh, ow = image.shape[:2]
    if (crop.pleft, crop.ptop, crop.swidth, crop.sheight) == (0, 0, ow, oh):
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    # DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): cropped.setTo(cv::mean(img))
    mean = np.rint(cv2.mean(image)[:image.shape[2]]).astype(np.uint8)
    window = np.empty((crop.sheight, crop.swidth, image.shape[2]), np.uint8)
    window[:] = mean
    left, top = max(crop.pleft, 0), max(crop.ptop, 0)
    right, bottom = min(crop.pleft + crop.swidth, ow), min(crop.ptop + crop.sheight, oh)
    if right > left and bottom > top:
        window[top - crop.ptop:bottom - crop.ptop, left - crop.pleft:right - crop.pleft] = image[top:bottom, left:right]
    return cv2.resize(window, (w, h), interpolation=cv2.INTER_LINEAR)


def distort_hsv(image: np.ndarray, dhue: float, dsat: float, dexp: float) -> np.ndarray:
    """Shift hue by `dhue` (of the 179 OpenCV hue steps), scale saturation and value, in OpenCV's 8-bit HSV; (H, W, 3)
    uint8 RGB in and out. DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): each channel saturates at
    0..255 (a hue pushed below 0 stays red, above 179 wraps)."""
    if dsat == 1 and dexp == 1 and dhue == 0:
        return image
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] += np.float32(HUE_RANGE) * np.float32(dhue)
    hsv[..., 1] *= np.float32(dsat)
    hsv[..., 2] *= np.float32(dexp)
    return cv2.cvtColor(np.clip(np.rint(hsv), 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)


def blur_image(image: np.ndarray, blur: int, boxes: np.ndarray) -> np.ndarray:
    """`blur=1`: a 17x17 Gaussian blur of the background, the truth boxes (N, 5) left sharp; `blur>1`: the whole
    image with a (blur/2*2+1)-pixel kernel. (H, W, 3) uint8."""
    if not blur:
        return image
    ksize = FULL_BLUR_KERNEL if blur == 1 else blur // 2 * 2 + 1
    blurred = cv2.GaussianBlur(image, (ksize, ksize), 0)
    if blur == 1:
        rows, cols = image.shape[:2]
        for x, y, bw, bh in boxes[:, :4].astype(np.float64):   # a loop over truths: at most `max` rectangles
            left, top = _c_int((x - bw / 2) * cols), _c_int((y - bh / 2) * rows)
            right, bottom = left + _c_int(bw * cols), top + _c_int(bh * rows)
            left, top, right, bottom = max(left, 0), max(top, 0), min(right, cols), min(bottom, rows)
            blurred[top:bottom, left:right] = image[top:bottom, left:right]
    return blurred


def add_noise(image: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
    """Add rounded normal `noise` (H, W, 3) to an (H, W, 3) uint8 image.

    DARKNET(AlexeyAB image_opencv.cpp:image_data_augmentation): cv::randn fills a uint8 matrix, so negative draws
    become 0: the noise only brightens.
    """
    if noise is None:
        return image
    positive = np.clip(np.rint(noise), 0, 255)
    return np.clip(image.astype(np.float32) + positive, 0, 255).astype(np.uint8)


def augment_image(image: np.ndarray, crop: Crop, w: int, h: int, draws: ImageDraws, blur: int,
                  boxes: np.ndarray) -> np.ndarray:
    """The augmented network input (3, h, w) float32 of `image` (H, W, 3) uint8: crop and stretch, flip, HSV,
    blur (`blur`, after `effective_blur`; `boxes` are the kept truths), noise."""
    sized = crop_and_stretch(image, crop, w, h)
    if draws.flip:
        sized = sized[:, ::-1]
    sized = distort_hsv(np.ascontiguousarray(sized), draws.dhue, draws.dsat, draws.dexp)
    sized = add_noise(blur_image(sized, blur, boxes), draws.noise)
    return image_to_chw(sized)


@dataclass(frozen=True)
class AugmentedImage:
    """One image after `augment_one`: its input (3, h, w) float32, its truths, and the crop window and flip the
    mosaic needs to place it."""

    input: np.ndarray
    truths: np.ndarray
    crop: Crop
    flip: bool


def augment_one(image: np.ndarray, truths: np.ndarray, w: int, h: int, options: AlexeyabAugmentOptions,
                draws: ImageDraws, order: np.ndarray, quadrant: int | None = None) -> AugmentedImage:
    """AlexeyAB's augmentation of one (H, W, 3) uint8 image with truths (N, 5) on fixed draws; `order` is the
    truths' shuffle (a permutation of N)."""
    oh, ow = image.shape[:2]
    crop = crop_window(ow, oh, w, h, options, draws, quadrant)
    moved = augment_truths(truths[order], crop, ow, oh, draws.flip, w, h, options.max)
    blur = effective_blur(draws.blur, moved.min_w_h)
    return AugmentedImage(augment_image(image, crop, w, h, draws, blur, moved.rows), moved.rows, crop, draws.flip)
