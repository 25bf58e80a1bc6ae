"""Image I/O, Darknet's bilinear resize / letterbox, and detection drawing.

Two layouts are used:
* ``uint8 HWC``: ``(H, W, 3)`` uint8 RGB, as decoded from disk and as drawn/saved;
* ``float CHW``: ``(3, H, W)`` float32 RGB in [0, 1], what the network consumes.

`resize_image` and `letterbox_image` reproduce image.c bit-exactly: every intermediate is
float32 and combined in Darknet's order, so the network inputs equal Darknet's.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from ._resources import shipped_or_given
from .errors import DarknetError, DataError
from .fileio import check_regular_file
from .imdecode import STB_PJREDDIE, check_pixels, decode_image, max_image_pixels

if TYPE_CHECKING:
    from pydarknet.detections import Detection

LETTERBOX_FILL = np.float32(0.5)   # DARKNET(image.c:letterbox_image): canvas grey level
BOX_WIDTH_FRACTION = 0.006         # DARKNET(image.c:draw_detections): line width = im.h * .006
LABEL_HEIGHT_FRACTION = 0.03       # DARKNET(image.c:draw_detections): label size = im.h * .03
CLASS_COLOR_STRIDE = 123457        # DARKNET(image.c:draw_detections): spreads class colours
_COLOR_RAMP = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]], np.float32)


JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"   # SOI, EOI markers


def load_image(path: str | Path, decoder: str = "stb", max_pixels: int | None = None,
               stb_version: str = STB_PJREDDIE) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB; EXIF orientation is ignored, as Darknet ignores it.

    ``decoder="stb"`` (default) gives Darknet's pixels bit for bit: stb_image's JPEG decoding, see
    `pydarknet.imdecode`. ``decoder="opencv"`` is OpenCV's libjpeg decoding (faster, but JPEG pixels
    may differ from Darknet's by a few levels).
    max_pixels: the largest width * height decoded (default `imdecode.max_image_pixels()`: 134 M, or
    $PYDARKNET_MAX_IMAGE_PIXELS); a larger image is refused from its header, before decoding.
    stb_version: with ``decoder="stb"``, the stb_image whose acceptance of malformed JPEGs is reproduced
    (`Dialect.stb_version`; default pjreddie's 2.19).
    Raises `MissingFileError` for a missing file, `DataError` naming the file for an unreadable one
    (a directory, FIFO or device, an empty, broken or too large file).
    """
    path = Path(shipped_or_given(path))   # data/dog.jpg from any directory, as the CLI finds it
    if decoder not in ("stb", "opencv"):
        raise ValueError(f"load_image: decoder must be 'stb' or 'opencv', got {decoder!r}")
    data = _image_bytes(path)
    if decoder == "stb":
        return _within_limit(path, decode_image(path, data, max_pixels, stb_version), max_pixels)
    check_pixels(path, data, max_pixels)
    if data[:2] == JPEG_START and data.rstrip(b"\0\r\n\t ")[-2:] != JPEG_END:
        # libjpeg would decode a cut-off file as a half-grey image, saying only "Premature end of JPEG file"
        raise DataError(f"Cannot load image {str(path)!r}: truncated JPEG (no end-of-image marker)")
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error as error:   # a size above OpenCV's own limit, a header it cannot allocate for
        raise DataError(f"Cannot load image {str(path)!r}: OpenCV: {' '.join(str(error.err).split())}") from None
    if bgr is None:
        raise DataError(f"Cannot load image {str(path)!r}: not a readable image")
    return _within_limit(path, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), max_pixels)


def _within_limit(path: Path, image: np.ndarray, max_pixels: int | None) -> np.ndarray:
    """The last guard of the pixel limit: a header no reader understood may still decode to more."""
    limit = max_image_pixels() if max_pixels is None else max_pixels
    if image.shape[0] * image.shape[1] > limit:
        raise DataError(f"Cannot load image {str(path)!r}: decoded to {image.shape[1]}x{image.shape[0]} pixels, "
                        f"above the limit of {limit}")
    return image


def _image_bytes(path: Path) -> bytes:
    """The bytes of an image file; `MissingFileError` when absent, `DataError` when it is not a regular
    file (checked before `open()`, which blocks on a FIFO), unreadable or empty."""
    where = f"Cannot load image {str(path)!r}"
    try:
        check_regular_file(path, "image file")
        data = path.read_bytes()
    except DarknetError as error:   # "<path>: image file is a FIFO, ..." -> "Cannot load image '<path>': ..."
        raise type(error)(f"{where}: {str(error).removeprefix(f'{path}: ')}") from None
    except OSError as exc:
        raise DataError(f"{where}: {exc.strerror}") from None
    if not data:
        raise DataError(f"{where}: empty file (0 bytes)")
    return data


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write a ``(H, W, 3)`` uint8 RGB image; the format follows the file extension."""
    bgr = cv2.cvtColor(_check_hwc(image), cv2.COLOR_RGB2BGR)
    try:
        written = cv2.imwrite(str(path), bgr)
    except cv2.error as error:   # OpenCV raises for an unknown extension
        raise DataError(f"Cannot save image {str(path)!r}: {error.err}") from None
    if not written:
        raise DataError(f"Cannot save image {str(path)!r}: unwritable path")


def image_to_chw(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 ``x/255``."""
    # float32 division gives the same bits as Darknet's `(float)x/255.` for all 256 levels
    return np.ascontiguousarray(_check_hwc(image).transpose(2, 0, 1), dtype=np.float32) / np.float32(255)


def network_input(image: np.ndarray, width: int, height: int, letterbox: bool = True) -> np.ndarray:
    """The network input of an ``(H, W, 3)`` uint8 image: ``(3, height, width)`` float32, letterboxed
    as DARKNET(detector.c:test_detector) does, or plainly resized (`letterbox=False`, the [net] of
    nets trained without letterbox, and DARKNET(detector.c:validate_detector) for `eval=imagenet`)."""
    fit = letterbox_image if letterbox else resize_image
    return fit(image_to_chw(image), width, height)


def resize_image(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's separable bilinear resize of a ``(C, H, W)`` float32 image to ``(C, h, w)``.

    Columns are interpolated first, then rows, with corner-aligned scale ``(in-1)/(out-1)``.
    """
    image = np.asarray(image, dtype=np.float32)
    if w < 1 or h < 1:
        raise ValueError(f"resize_image: target size must be positive, got {w}x{h}")
    part = _resize_columns(image, w)
    return _resize_rows(part, h)


def resize_min(image: np.ndarray, min_side: int) -> np.ndarray:
    """DARKNET(image.c:resize_min): resize a ``(C, H, W)`` image so its shorter side is `min_side`."""
    h, w = image.shape[1:]
    new_w, new_h = (min_side, h * min_side // w) if w < h else (w * min_side // h, min_side)
    return image if (new_w, new_h) == (w, h) else resize_image(image, new_w, new_h)


def crop_image(image: np.ndarray, dx: int, dy: int, w: int, h: int) -> np.ndarray:
    """DARKNET(image.c:crop_image): the ``(C, h, w)`` window at (dx, dy); pixels outside the image are 0."""
    c, im_h, im_w = image.shape
    crop = np.zeros((c, h, w), dtype=np.float32)
    top, left = max(dy, 0), max(dx, 0)
    bottom, right = min(dy + h, im_h), min(dx + w, im_w)
    if bottom > top and right > left:
        crop[:, top - dy:bottom - dy, left - dx:right - dx] = image[:, top:bottom, left:right]
    return crop


def letterbox_image(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """Fit a ``(C, H, W)`` float32 image into a ``(C, h, w)`` canvas keeping its aspect ratio.

    The resized image is centred on a 0.5-grey canvas (integer offsets).
    """
    new_w, new_h = letterbox_size(image.shape[2], image.shape[1], w, h)
    if new_w < 1 or new_h < 1:
        # DIVERGES: Darknet's integer division makes a 1x417 image 0x416: it feeds a blank grey canvas
        # and then divides by that 0 when it corrects the boxes (inf/nan boxes); refused instead
        raise DataError(f"cannot letterbox a {image.shape[2]}x{image.shape[1]} image into {w}x{h}: it would be "
                        f"{new_w}x{new_h} pixels (Darknet feeds a blank canvas); an image this thin is unusable")
    resized = resize_image(image, new_w, new_h)
    boxed = np.full((image.shape[0], h, w), LETTERBOX_FILL, dtype=np.float32)
    dx, dy = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resized
    return boxed


def letterbox_size(im_w: int, im_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """Size ``(new_w, new_h)`` of the image inside a ``net_w x net_h`` letterbox."""
    # DARKNET(image.c:letterbox_image): float32 ratio test, then integer division for the other side
    if np.float32(net_w) / np.float32(im_w) < np.float32(net_h) / np.float32(im_h):
        return net_w, (im_h * net_w) // im_w
    return (im_w * net_h) // im_h, net_h


def _resize_columns(image: np.ndarray, w: int) -> np.ndarray:
    """``(C, H, W)`` -> ``(C, H, w)``: interpolate along x; the last column is copied."""
    in_w = image.shape[2]
    ix, dx = _sample_positions(in_w, w)
    left, right = image[:, :, ix], image[:, :, np.minimum(ix + 1, in_w - 1)]
    part = (np.float32(1) - dx) * left + dx * right
    # DARKNET(image.c:resize_image): last output column (or a 1-pixel-wide input) copies the last input column
    if in_w == 1:
        part[:] = image[:, :, -1:]
    else:
        part[:, :, -1] = image[:, :, -1]
    return part


def _resize_rows(part: np.ndarray, h: int) -> np.ndarray:
    """``(C, H, w)`` -> ``(C, h, w)``: interpolate along y."""
    in_h = part.shape[1]
    iy, dy = _sample_positions(in_h, h)
    dy = dy[:, None]                                            # [h, 1]
    resized = (np.float32(1) - dy) * part[:, iy, :]
    below = dy * part[:, np.minimum(iy + 1, in_h - 1), :]
    # DARKNET(image.c:resize_image): the last row gets only the (1-dy) term (not a plain copy)
    if in_h > 1:
        resized[:, :-1] += below[:, :-1]
    return resized


def _sample_positions(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source index ``(size_out,)`` int and fraction ``(size_out,)`` float32 of each output pixel."""
    # DIVERGES: Darknet divides by zero for a 1-pixel output; sample position 0 instead
    scale = np.float32(size_in - 1) / np.float32(max(size_out - 1, 1))
    pos = np.arange(size_out, dtype=np.float32) * scale
    index = pos.astype(np.int64)
    return index, pos - index.astype(np.float32)


def get_color(channel: int, x: int, max_value: int) -> float:
    """Channel ``channel`` of colour ``x`` of ``max_value`` on Darknet's ramp (image.c:get_color).

    The ramp runs magenta, blue, cyan, green, yellow, red; Darknet reads red from channel 2.
    """
    ratio = np.float32(x) / np.float32(max_value) * np.float32(5)
    lo, hi = int(np.floor(ratio)), int(np.ceil(ratio))
    ratio -= np.float32(lo)
    return float((1 - ratio) * _COLOR_RAMP[lo, channel] + ratio * _COLOR_RAMP[hi, channel])


def class_color(class_index: int, classes: int) -> tuple[int, int, int]:
    """uint8 RGB colour of a class as Darknet draws it."""
    offset = class_index * CLASS_COLOR_STRIDE % classes
    # DARKNET(image.c:draw_detections): red from ramp channel 2, blue from channel 0
    rgb = [get_color(channel, offset, classes) for channel in (2, 1, 0)]
    # DARKNET(image.c:save_image_options): float -> uint8 by truncating 255*v
    return tuple(int(np.float32(255) * np.float32(v)) for v in rgb)


def draw_detections(image: np.ndarray, detections: Sequence[Detection], names: Sequence[str],
                    thresh: float) -> np.ndarray:
    """Draw every detection with a class prob > thresh on a copy of a ``(H, W, 3)`` uint8 RGB image.

    Box and colour geometry follow image.c:draw_detections; the label text lists every class
    above thresh, like Darknet's.
    DIVERGES: labels are rendered with OpenCV's Hershey font instead of data/labels/*.png glyphs.
    """
    canvas = _check_hwc(image).copy()
    im_h, im_w = canvas.shape[:2]
    width = int(im_h * BOX_WIDTH_FRACTION)
    for det in detections:
        classes = np.flatnonzero(det.probs > np.float32(thresh))
        if classes.size == 0:
            continue
        color = class_color(int(classes[0]), det.probs.size)
        left, top, right, bot = pixel_box(det.bbox, im_w, im_h)
        for i in range(width):
            _draw_box(canvas, left + i, top + i, right - i, bot - i, color)
        _draw_label(canvas, ", ".join(names[j] for j in classes), top + width, left, color)
    return canvas


def pixel_box(bbox_cxcywh: np.ndarray, im_w: int, im_h: int) -> tuple[int, int, int, int]:
    """Relative cxcywh -> pixel (left, top, right, bot), truncated and clamped as Darknet does."""
    x, y, w, h = (float(v) for v in bbox_cxcywh)
    # DARKNET(image.c:draw_detections): C casts truncate toward zero, then only the outer side is clamped
    left, right = int((x - w / 2) * im_w), int((x + w / 2) * im_w)
    top, bot = int((y - h / 2) * im_h), int((y + h / 2) * im_h)
    return max(left, 0), max(top, 0), min(right, im_w - 1), min(bot, im_h - 1)


def _draw_box(canvas: np.ndarray, x1: int, y1: int, x2: int, y2: int, color: tuple[int, int, int]) -> None:
    """One-pixel rectangle outline; each corner clamped into the image (image.c:draw_box)."""
    im_h, im_w = canvas.shape[:2]
    x1, x2 = (min(max(v, 0), im_w - 1) for v in (x1, x2))
    y1, y2 = (min(max(v, 0), im_h - 1) for v in (y1, y2))
    canvas[[y1, y2], x1:x2 + 1] = color
    canvas[y1:y2 + 1, [x1, x2]] = color


def _draw_label(canvas: np.ndarray, text: str, row: int, col: int, color: tuple[int, int, int]) -> None:
    """Black text on a class-coloured strip, above ``row`` when it fits (image.c:draw_label)."""
    im_h, im_w = canvas.shape[:2]
    font_scale = max(im_h * LABEL_HEIGHT_FRACTION / 22, 0.3)   # Hershey simplex glyphs are ~22 px at scale 1
    (text_w, text_h), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    label_h = text_h + baseline + 4
    if row - label_h >= 0:
        row -= label_h
    right, bottom = min(col + text_w + 4, im_w), min(row + label_h, im_h)
    canvas[row:bottom, col:right] = color
    cv2.putText(canvas, text, (col + 2, row + text_h + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                (0, 0, 0), 1, cv2.LINE_AA)


def _check_hwc(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return image
