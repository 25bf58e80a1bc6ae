"""Image decoding with the pixels Darknet gets from stb_image (`stbi_load(path, &w, &h, &c, 3)`).

JPEG: libjpeg (through `jpeglib`) only entropy-decodes the file into its quantised DCT coefficients,
which are fully specified by the bitstream, so they are the ones stb's Huffman decoder produces.
Everything after that is where decoders differ by a few levels, and is done here as stb does it:
dequantisation into int16, stb's integer IDCT, its chroma upsampling and its fixed-point YCbCr->RGB.
The marker walk that decides whether stb accepts the file (and how it colour-converts) is ours too.

Lossless formats (PNG, BMP, PNM, ...): OpenCV's pixels are stb's; only the channel conversion of
`req_comp = 3` is applied (grey replicated, alpha dropped, 16 bits -> top 8 bits).

All stages are whole-image numpy operations (the IDCT is two float64 matrix products over all
blocks, exact because every value is an integer below 2**53).

Not reproduced (none occurs in files written by ordinary encoders):
* DIVERGES: corrupt entropy-coded data: both stb and libjpeg decode on (libjpeg warns on stderr),
  but they recover differently, so pixels after the damage differ from Darknet's.
* DIVERGES: sampling factors whose ratios are not integers (e.g. 3 and 2): a `DataError` here.
* DIVERGES: stb's SSE2 IDCT saturates its 16-bit intermediates where its scalar code (followed here)
  does not; they differ only for coefficients far outside what an 8-bit image encodes.
* DIVERGES: formats neither OpenCV nor Pillow reads (PSD, PIC, HDR) are a `DataError`.

DIVERGES: an image of more than `max_image_pixels()` pixels (2**27, 134 M, by default; set
$PYDARKNET_MAX_IMAGE_PIXELS or pass `max_pixels=`) is refused from its header before anything is
decoded: stb would allocate whatever a 74-byte file claims (a 100000x100000 PNG, a 30000² bomb).
The header is read here for JPEG (every SOF before the first scan), PNG (IHDR), BMP, GIF (screen and
every frame), PNM, and through Pillow's lazy `Image.open` for the rest (TGA, TIFF, WebP).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError

BLOCK = 8
MAX_PIXELS_ENV = "PYDARKNET_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = 2 ** 27   # 134 M pixels: above any camera's photo, 400 MB as uint8 RGB
FAST_LIBJPEG = "turbo210"
# jpeglib's C wrapper is not thread-safe: concurrent reads abort the process (`malloc(): unaligned tcache
# chunk`, bus errors) when the evaluation decodes in threads, and jpeglib.version.set reloads the library
# under any thread still using it. Every jpeglib call holds this lock; the IDCT (numpy) runs outside it.
_JPEGLIB_LOCK = threading.Lock()
# Markers: SOF0 baseline, SOF1 extended sequential and SOF2 progressive are all stb decodes.
STB_FRAMES = {0xC0, 0xC1, 0xC2}
OTHER_FRAMES = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
SOI, EOI, SOS = 0xD8, 0xD9, 0xDA
APP0_JFIF, APP14_ADOBE = 0xE0, 0xEE
# End of entropy-coded data: 0xFF followed by a byte other than a stuffed 0 or a restart marker.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# DARKNET(stb_image.h:stbi__get_marker): fill bytes 0xFF may precede the SOI code
_JPEG_START = re.compile(rb"\xff+\xd8")


def _fixed(x: float, bits: int) -> int:
    # DARKNET(stb_image.h:stbi__f2f): (int)(x * 4096 + 0.5) truncates toward zero, so negative
    # constants are one off from libjpeg's FIX() (-7567 instead of -7568 for -1.847759065).
    return int(float(np.float32(x)) * (1 << bits) + 0.5)


def _idct_matrix() -> np.ndarray:
    """``(8, 8)`` integer matrix of stb's 1-D IDCT (jidctint's ISLOW butterfly, constants scaled by 4096).

    The butterfly has no rounding inside, so it is exactly this linear map; applied to the identity.
    """
    s = np.eye(BLOCK, dtype=np.int64)                       # s[k] = unit input on frequency k
    c = {x: _fixed(x, 12) for x in (0.5411961, -1.847759065, 0.765366865, 1.175875602, 0.298631336,
                                     2.053119869, 3.072711026, 1.501321110, -0.899976223, -2.562915447,
                                     -1.961570560, -0.390180644)}
    # even part: frequencies 0, 2, 4, 6
    rot = (s[2] + s[6]) * c[0.5411961]
    even_a, even_b = rot + s[2] * c[0.765366865], rot + s[6] * c[-1.847759065]
    dc_sum, dc_diff = (s[0] + s[4]) * 4096, (s[0] - s[4]) * 4096
    x0, x3, x1, x2 = dc_sum + even_a, dc_sum - even_a, dc_diff + even_b, dc_diff - even_b
    # odd part: frequencies 7, 5, 3, 1
    f7, f5, f3, f1 = s[7], s[5], s[3], s[1]
    common = (f7 + f3 + f5 + f1) * c[1.175875602]
    z1 = common + (f7 + f1) * c[-0.899976223]
    z2 = common + (f5 + f3) * c[-2.562915447]
    z3 = (f7 + f3) * c[-1.961570560]
    z4 = (f5 + f1) * c[-0.390180644]
    o1 = f1 * c[1.501321110] + z1 + z4
    o3 = f3 * c[3.072711026] + z2 + z3
    o5 = f5 * c[2.053119869] + z2 + z4
    o7 = f7 * c[0.298631336] + z1 + z3
    return np.stack([x0 + o1, x1 + o3, x2 + o5, x3 + o7, x3 - o7, x2 - o5, x1 - o3, x0 - o1])


IDCT = _idct_matrix().astype(np.float64)   # [output, frequency]
PASS1_SHIFT, PASS1_BIAS = 10, 512           # column pass: (x + 512) >> 10 keeps 2 extra bits
PASS2_SHIFT, PASS2_BIAS = 17, 65536 + (128 << 17)   # row pass: rounding and the +128 level shift, >> 17
DC_GAIN = 4096                              # IDCT[:, 0]: every output takes 4096 times the DC input
# Both passes are float64 matrix products, exact since every value is an integer (times a power of
# two) below 2**53. The shifts are folded into the matrices; the biases into the v = 0 coefficients:
# adding b / DC_GAIN there adds b to every output of that column.
COLUMN_PASS = IDCT * 2.0 ** -PASS1_SHIFT                  # left factor:  [y, v]
ROW_PASS = IDCT.T * 2.0 ** -PASS2_SHIFT                   # right factor: [u, x]
# per column u, added to coefficient (v=0, u): pass 1's bias, and in column 0 pass 2's bias (an
# integer after pass 1, so the floor between the passes keeps it exactly)
BIAS_ROW = np.full(BLOCK, PASS1_BIAS / DC_GAIN)
BIAS_ROW[0] += PASS2_BIAS / DC_GAIN * 2.0 ** PASS1_SHIFT / DC_GAIN
YCC = {name: _fixed(x, 12) << 8 for name, x in (("cr_r", 1.402), ("cr_g", 0.71414), ("cb_g", 0.34414),
                                                   ("cb_b", 1.772))}


def _chroma_tables() -> dict[str, np.ndarray]:
    """Offsets to Y of stbi__YCbCr_to_RGB_row, as 256-entry int16 tables of Cr or Cb.

    ``((y << 20) + t) >> 20 == y + (t >> 20)``: ``y << 20`` is a multiple of ``2**20``. In green,
    the Cb term is a multiple of ``2**16`` (its low bits are masked), so with the Cr term ``a``,
    ``(a + cb_term) >> 20 == ((a >> 16) + (cb_term >> 16)) >> 4``: two tables, a sum and a shift.
    """
    level = np.arange(256, dtype=np.int64) - 128
    half = 1 << 19                                          # DARKNET(stb_image.h:stbi__YCbCr_to_RGB_row): rounding
    # DARKNET(stb_image.h:stbi__YCbCr_to_RGB_row): the Cb term of green loses its low 16 bits
    cb_green = (level * -YCC["cb_g"]) & ~0xFFFF
    tables = {"red": (half + level * YCC["cr_r"]) >> 20, "blue": (half + level * YCC["cb_b"]) >> 20,
              "green_cr": (half - level * YCC["cr_g"]) >> 16, "green_cb": cb_green >> 16}
    return {name: table.astype(np.int16) for name, table in tables.items()}


CHROMA = _chroma_tables()


@dataclass(frozen=True)
class Component:
    h: int          # horizontal sampling factor
    v: int          # vertical sampling factor
    width: int      # samples per row: ceil(image width * h / h_max)
    height: int     # rows: ceil(image height * v / v_max)


@dataclass(frozen=True)
class Frame:
    """What stb reads from a JPEG's markers before decoding."""
    width: int
    height: int
    components: tuple[Component, ...]
    rgb_ids: bool               # 3 components named 'R', 'G', 'B'
    jfif: bool                  # a JFIF APP0 segment
    adobe_transform: int        # APP14 colour transform (0, 1, 2), -1 if absent


def is_jpeg(data: bytes) -> bool:
    return _JPEG_START.match(data) is not None


def decode_image(path: str | Path, data: bytes | None = None, max_pixels: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, the pixels of ``stbi_load(path, &w, &h, &c, 3)``; `data`: the file's bytes
    when already read.

    Raises `DataError` naming the file when stb would not decode it (truncated or corrupt JPEG,
    arithmetic-coded/lossless/12-bit JPEG), OpenCV cannot read a non-JPEG file, or its header gives
    more than `max_pixels` (default `max_image_pixels()`) pixels.
    """
    path = Path(path)
    if data is None:
        with open(path, "rb") as file:
            data = file.read()
    check_pixels(path, data, max_pixels)
    if is_jpeg(data):
        return decode_jpeg(path, data)
    return decode_lossless(path, data)


def max_image_pixels() -> int:
    """The pixel limit: $PYDARKNET_MAX_IMAGE_PIXELS when set, else DEFAULT_MAX_PIXELS."""
    value = os.environ.get(MAX_PIXELS_ENV, "")
    try:
        return int(value) if value.strip() else DEFAULT_MAX_PIXELS
    except ValueError:
        raise DataError(f"${MAX_PIXELS_ENV}={value!r} is not a whole number of pixels") from None


def check_pixels(path: Path, data: bytes, max_pixels: int | None = None) -> None:
    """`DataError` when the header of `data` gives more than `max_pixels` pixels (from the header only)."""
    limit = max_image_pixels() if max_pixels is None else max_pixels
    size = header_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise DataError(f"Cannot load image {str(path)!r}: {size[0]}x{size[1]} is {size[0] * size[1]} pixels, "
                        f"above the limit of {limit} (${MAX_PIXELS_ENV} raises it)")


def header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` an image file's header claims (the largest, for several frames), None when
    the header is not understood (the decoders then refuse the file or apply their own limits)."""
    own = _own_header_size(data)
    if own is not None and data[:6] not in (b"GIF87a", b"GIF89a"):
        return own   # JPEG, PNG, BMP, PNM: their decoders read these sides (and Pillow is not imported)
    # a GIF is decoded through Pillow, whose canvas a frame can grow: both readings, the larger
    sizes = [size for size in (own, _pillow_size(data)) if size is not None]
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def _own_header_size(data: bytes) -> tuple[int, int] | None:
    try:
        if is_jpeg(data):
            return _jpeg_size(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) \
                if data[12:16] == b"IHDR" and len(data) >= 24 else None
        if data[:2] == b"BM" and len(data) >= 26:
            if int.from_bytes(data[14:18], "little") == 12:   # OS/2 BITMAPCOREHEADER: 16-bit sides
                return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
            return tuple(abs(int.from_bytes(data[i:i + 4], "little", signed=True)) for i in (18, 22))
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return _gif_size(data)
        pnm = _PNM_HEADER.match(data)
        if pnm:
            return int(pnm.group(1)), int(pnm.group(2))
    except (IndexError, ValueError):
        return None
    return None


_PNM_HEADER = re.compile(rb"P[1-7](?:\s|#[^\n]*\n)+(\d+)(?:\s|#[^\n]*\n)+(\d+)")
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}   # markers without a length


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """The largest frame of the SOF segments before the first scan (libjpeg's and stb's frame)."""
    pos, sizes = _JPEG_START.match(data).end(), []
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        marker, pos = data[pos], pos + 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (SOS, EOI) or pos + 2 > len(data):
            break
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and pos + 7 <= len(data):
            sizes.append((int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 3:pos + 5], "big")))
        pos += int.from_bytes(data[pos:pos + 2], "big")
    return max(sizes, key=lambda size: size[0] * size[1], default=None)


def _gif_size(data: bytes) -> tuple[int, int]:
    """The logical screen grown to hold every frame (as Pillow grows it)."""
    width, height = int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while pos < len(data) and data[pos] != 0x3B:   # trailer
        if data[pos] == 0x2C:                      # image descriptor: left, top, width, height
            left, top, w, h = (int.from_bytes(data[pos + i:pos + i + 2], "little") for i in (1, 3, 5, 7))
            width, height = max(width, left + w), max(height, top + h)
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1   # + LZW code size
        elif data[pos] == 0x21:                    # extension: label, then sub-blocks
            pos += 2
        else:
            pos += 1                               # as Pillow's reader, skip a stray byte
            continue
        while pos < len(data) and data[pos]:       # sub-blocks up to the empty one
            pos += data[pos] + 1
        pos += 1
    return width, height


def _pillow_size(data: bytes) -> tuple[int, int] | None:
    """What Pillow's lazy open reads from the header (TGA, TIFF, WebP, ...); None without Pillow or a header."""
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                return image.size
    except Exception:   # a header Pillow cannot read or refuses (a bomb): the decoders will say so
        return None


def decode_lossless(path: Path, data: bytes | None = None) -> np.ndarray:
    """Non-JPEG formats through OpenCV, converted to 3 channels the way stb converts them."""
    data = path.read_bytes() if data is None else data
    # IMREAD_UNCHANGED applies no EXIF orientation, keeps alpha and 16-bit samples as stored.
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    except cv2.error as error:   # e.g. a size above OpenCV's own limit
        raise DataError(f"Cannot load image {str(path)!r}: OpenCV: {_cv2_reason(error)}") from None
    if pixels is None:
        return _decode_with_pillow(path, data)
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)   # DARKNET(stb_image.h:stbi__convert_16_to_8): top byte
    if pixels.dtype != np.uint8:
        raise DataError(f"Cannot load image {str(path)!r}: {pixels.dtype} samples are not 8/16-bit")
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)   # grey -> R = G = B
    # DARKNET(stb_image.h:stbi__convert_format): req_comp 3 drops alpha without compositing
    return np.ascontiguousarray(pixels[:, :, 2::-1]) if pixels.shape[2] >= 3 else np.repeat(pixels[:, :, :1], 3, 2)


def _decode_with_pillow(path: Path, data: bytes) -> np.ndarray:
    """Formats stb reads and OpenCV does not (TGA), through Pillow when it is installed."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise DataError(f"Cannot load image {str(path)!r}: not a readable image "
                        "(TGA files need Pillow: pip install pillow)") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # DecompressionBombWarning: check_pixels has applied our limit
            with Image.open(io.BytesIO(data)) as image:
                # Pillow's RGB conversion replicates grey and drops alpha, as stb's req_comp 3 does
                return np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise DataError(f"Cannot load image {str(path)!r}: not a readable image") from None
    except Exception as error:   # a broken file: SyntaxError (bad PNG chunk), DecompressionBombError, OSError, ...
        raise DataError(f"Cannot load image {str(path)!r}: not a readable image "
                        f"(Pillow: {type(error).__name__}: {_one_line(error)})") from None


def _cv2_reason(error: cv2.error) -> str:
    """The reason of a cv2.error in one line (its `err`, e.g. "!buf.empty()")."""
    return _one_line(getattr(error, "err", None) or error)


def _one_line(error) -> str:
    return " ".join(str(error).split())[:200]


def decode_jpeg(path: Path, data: bytes) -> np.ndarray:
    """A JPEG file's stb pixels; `data` is the file's content."""
    frame = read_frame(path, data)
    jpeglib = _jpeglib()
    try:
        with _JPEGLIB_LOCK:   # the coefficients are read lazily, on attribute access: all of it inside
            dct = jpeglib.read_dct(str(path))
            coefficients = [dct.Y, dct.Cb, dct.Cr, dct.K][:len(frame.components)]
            tables = [dct.get_component_qt(i) for i in range(len(frame.components))]
    except (OSError, RuntimeError, ValueError) as error:   # jpeglib reports libjpeg's errors as OSError
        raise DataError(f"Cannot load image {str(path)!r}: corrupt JPEG (libjpeg: {error})") from None
    h_max = max(c.h for c in frame.components)
    v_max = max(c.v for c in frame.components)
    planes = []
    for component, blocks, table in zip(frame.components, coefficients, tables):
        samples = idct_plane(blocks, table)[:component.height, :component.width]
        planes.append(upsample(samples, h_max // component.h, v_max // component.v, frame.width, frame.height))
    return to_rgb(planes, frame)


@functools.cache
def _jpeglib():
    """jpeglib, on its libjpeg-turbo build (same coefficients as libjpeg 6b, its default, ~25% faster)."""
    import jpeglib   # only the JPEG path needs it

    with _JPEGLIB_LOCK:
        if jpeglib.version.get() != FAST_LIBJPEG and FAST_LIBJPEG in jpeglib.version.versions():
            jpeglib.version.set(FAST_LIBJPEG)
    return jpeglib


def read_frame(path: Path, data: bytes) -> Frame:
    """Walk the markers as stb does; `DataError` for what stb refuses (including a missing EOI)."""
    def fail(why: str) -> DataError:
        return DataError(f"Cannot load image {str(path)!r}: {why}")

    pos = _JPEG_START.match(data).end()
    frame, jfif, adobe_transform, scans = None, False, -1, 0
    while True:
        if pos >= len(data) or data[pos] != 0xFF:
            raise fail(f"truncated or corrupt JPEG: expected a marker at byte {pos}")
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos >= len(data):
            raise fail(f"truncated JPEG: file ends at byte {pos} without an end-of-image marker")
        marker, pos = data[pos], pos + 1
        if marker == EOI:
            break
        if pos + 2 > len(data):
            raise fail(f"truncated JPEG at byte {pos}")
        length = int.from_bytes(data[pos:pos + 2], "big")
        segment = data[pos + 2:pos + length]
        if length < 2 or len(segment) != length - 2:
            raise fail(f"truncated or corrupt JPEG: bad segment length at byte {pos}")
        if marker in STB_FRAMES:
            frame = _parse_frame(segment, fail)
        elif marker in OTHER_FRAMES:
            raise fail(f"JPEG type SOF{marker - 0xC0} (lossless/arithmetic/hierarchical) is not decoded by stb_image")
        elif marker == APP0_JFIF and segment[:5] == b"JFIF\x00":
            jfif = True
        elif marker == APP14_ADOBE and len(segment) >= 12 and segment[:6] == b"Adobe\x00":
            adobe_transform = segment[11]
        pos += length
        if marker == SOS:
            if frame is None:
                raise fail("corrupt JPEG: scan before frame header")
            scans += 1
            end = _SCAN_END.search(data, pos)
            if end is None:
                raise fail(f"truncated JPEG: scan {scans} runs to the end of the file (no end-of-image marker)")
            pos = end.start()
    if frame is None or scans == 0:
        raise fail("corrupt JPEG: no frame or no scan")
    return dataclasses.replace(frame, jfif=jfif, adobe_transform=adobe_transform)


def _parse_frame(segment: bytes, fail: Callable[[str], DataError]) -> Frame:
    if len(segment) < 6:
        raise fail("corrupt JPEG: short frame header")
    precision, height, width, count = segment[0], int.from_bytes(segment[1:3], "big"), \
        int.from_bytes(segment[3:5], "big"), segment[5]
    if precision != 8:
        raise fail(f"{precision}-bit JPEG: stb_image decodes 8-bit only")
    if height == 0 or width == 0:
        raise fail("JPEG with zero width or height (delayed height is not supported by stb_image)")
    if count not in (1, 3, 4) or len(segment) != 6 + 3 * count:
        raise fail(f"corrupt JPEG: {count} components")
    specs = [segment[6 + 3 * i:9 + 3 * i] for i in range(count)]
    factors = [(spec[1] >> 4, spec[1] & 15) for spec in specs]
    if any(not (1 <= f <= 4) for hv in factors for f in hv):
        raise fail("corrupt JPEG: sampling factor outside 1..4")
    h_max, v_max = max(h for h, _ in factors), max(v for _, v in factors)
    if any(h_max % h or v_max % v for h, v in factors):
        # DIVERGES: stb reads past a component's samples into its MCU padding here; not reproduced
        raise fail(f"JPEG sampling factors {factors} are not integer ratios; use decoder='opencv'")
    components = tuple(Component(h, v, -(-width * h // h_max), -(-height * v // v_max)) for h, v in factors)
    rgb_ids = count == 3 and bytes(spec[0] for spec in specs) == b"RGB"
    return Frame(width, height, components, rgb_ids, False, -1)


def idct_plane(blocks: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``(BH, BW, 8, 8)`` quantised coefficients -> ``(8*BH, 8*BW)`` uint8 samples, stb's integer IDCT."""
    rows, cols = blocks.shape[:2]
    freq = np.empty((rows, cols, BLOCK, BLOCK), np.float64)             # [r, c, v, u]
    np.multiply(blocks, table, out=freq)
    if blocks.size and max(-int(blocks.min()), int(blocks.max())) * int(table.max()) > np.iinfo(np.int16).max:
        # DARKNET(stb_image.h:stbi__jpeg_dequantize): coefficient * quantiser is stored in a short
        freq = freq.astype(np.int64).astype(np.int16).astype(np.float64)
    freq[:, :, 0, :] += BIAS_ROW
    # DARKNET(stb_image.h:stbi__idct_block): columns first, rounded down to 2 extra bits, then rows.
    # Batched (.., 8, 8) products: a (8n, 8) @ (8, 8) GEMM is 10x slower under a multi-threaded BLAS.
    spatial = np.matmul(COLUMN_PASS, freq)                              # [r, c, y, u]
    np.floor(spatial, out=spatial)
    samples = freq.reshape(rows, BLOCK, cols, BLOCK)                    # [r, y, c, x]: the plane's order
    np.matmul(spatial, ROW_PASS, out=samples.transpose(0, 2, 1, 3))     # (reusing freq's memory)
    np.clip(samples, 0, 255, out=samples)                               # then truncation is the floor
    return samples.astype(np.uint8).reshape(rows * BLOCK, cols * BLOCK)


def upsample(samples: np.ndarray, hs: int, vs: int, width: int, height: int) -> np.ndarray:
    """A component's ``(h, w)`` samples -> ``(height, width)`` uint8, with stb's resampler for (hs, vs)."""
    if hs == 1 and vs == 1:
        return samples
    if (hs, vs) == (1, 2):
        # DARKNET(stb_image.h:stbi__resample_row_v_2): (3 * nearer row + farther row + 2) >> 2
        return _round_shift(_vertical_sums(samples)[:height], 2)
    if (hs, vs) == (2, 2):
        # DARKNET(stb_image.h:stbi__resample_row_hv_2): the vertical sums, then the same 3:1 across, >> 4
        return _double_columns(_vertical_sums(samples)[:height], bias=8, shift=4, edge_shift=2)[:, :width]
    if (hs, vs) == (2, 1):
        doubled = _double_columns(samples.astype(np.int16), bias=2, shift=2, edge_shift=0)
        if samples.shape[1] > 1:
            # DARKNET(stb_image.h:stbi__resample_row_h_2): the second-last output weighs the second-last input 3/4
            doubled[:, -2] = _weigh(samples[:, -2].astype(np.int16), samples[:, -1], 2, 2)
        return doubled[:, :width]
    # DARKNET(stb_image.h:stbi__resample_row_generic): any other ratio repeats samples (nearest)
    rows = np.minimum(np.arange(height) // vs, samples.shape[0] - 1)
    return samples[rows][:, np.arange(width) // hs]


def _round_shift(values: np.ndarray, shift: int) -> np.ndarray:
    """``(values + half) >> shift`` as uint8."""
    return ((values + ((1 << shift) >> 1)) >> shift).astype(np.uint8)


def _weigh(near: np.ndarray, far: np.ndarray, bias: int, shift: int) -> np.ndarray:
    """``(3 * near + far + bias) >> shift`` in int16 (all terms stay below 2**12), as uint8."""
    total = near * np.int16(3)
    total += far
    total += bias
    total >>= shift
    return total.astype(np.uint8)


def _vertical_sums(samples: np.ndarray) -> np.ndarray:
    """``(h, w)`` -> ``(2h, w)`` int16 ``3 * nearer + farther`` row; the first and last rows pair with themselves."""
    near = samples.astype(np.int16) * np.int16(3)
    sums = np.empty((2 * samples.shape[0], samples.shape[1]), np.int16)
    sums[0::2], sums[1::2] = near, near
    sums[2::2] += samples[:-1]     # output row 2k: rows k and k - 1
    sums[1:-1:2] += samples[1:]    # output row 2k + 1: rows k and k + 1
    sums[0] += samples[0]
    sums[-1] += samples[-1]
    return sums


def _double_columns(rows: np.ndarray, bias: int, shift: int, edge_shift: int) -> np.ndarray:
    """``(h, w)`` int16 -> ``(h, 2w)`` uint8: each output is 3/4 its own input + 1/4 the neighbour on its side;
    the first and last outputs are their input ``(+ rounding) >> edge_shift``."""
    out = np.empty((rows.shape[0], 2 * rows.shape[1]), np.uint8)
    if rows.shape[1] > 1:
        out[:, 1:-1:2] = _weigh(rows[:, :-1], rows[:, 1:], bias, shift)   # 2i + 1: inputs i and i + 1
        out[:, 2:-1:2] = _weigh(rows[:, 1:], rows[:, :-1], bias, shift)   # 2i: inputs i and i - 1
    out[:, 0], out[:, -1] = _round_shift(rows[:, 0], edge_shift), _round_shift(rows[:, -1], edge_shift)
    return out


def to_rgb(planes: list[np.ndarray], frame: Frame) -> np.ndarray:
    """Full-size component planes -> ``(H, W, 3)`` uint8 RGB, stb's colour handling for req_comp 3."""
    if len(planes) == 1:
        return np.repeat(planes[0][:, :, None], 3, axis=2)
    if len(planes) == 3:
        # DARKNET(stb_image.h:load_jpeg_image): no conversion for 'R','G','B' ids, or Adobe transform 0 without JFIF
        if frame.rgb_ids or (frame.adobe_transform == 0 and not frame.jfif):
            return np.stack(planes, axis=2)
        return ycbcr_to_rgb(*planes)
    if frame.adobe_transform == 0:   # CMYK
        return np.stack([_blinn(plane, planes[3]) for plane in planes[:3]], axis=2)
    rgb = ycbcr_to_rgb(*planes[:3])
    if frame.adobe_transform == 2:   # YCCK
        return _blinn(255 - rgb, planes[3][:, :, None])
    return rgb   # DARKNET(stb_image.h:load_jpeg_image): a 4th component of anything else is ignored


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """stbi__YCbCr_to_RGB_row: Y plus table offsets, clamped to 0..255 (OpenCV's saturating add)."""
    luma = y.astype(np.int16)
    green = cv2.add(cv2.LUT(cr, CHROMA["green_cr"]), cv2.LUT(cb, CHROMA["green_cb"])) >> 4
    offsets = (cv2.LUT(cr, CHROMA["red"]), green, cv2.LUT(cb, CHROMA["blue"]))
    return cv2.merge([cv2.add(luma, offset, dtype=cv2.CV_8U) for offset in offsets])


def _blinn(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """stbi__blinn_8x8: rounded ``x * y / 255`` in integers."""
    t = x.astype(np.int32) * y + 128
    return ((t + (t >> 8)) >> 8).astype(np.uint8)
