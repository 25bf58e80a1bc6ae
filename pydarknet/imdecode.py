"""Image decoding with the pixels Darknet gets from stb_image (`stbi_load(path, &w, &h, &c, 3)`).

JPEG: libjpeg (through `jpeglib`) only entropy-decodes the file into its quantised DCT coefficients,
which are fully specified by the bitstream, so they are the ones stb's Huffman decoder produces.
Everything after that is where decoders differ by a few levels, and is done here as stb does it:
dequantisation into int16, stb's integer IDCT, its chroma upsampling and its fixed-point YCbCr->RGB.
The marker walk that decides whether stb accepts the file (and how it colour-converts) is ours too,
for the stb_image version of the dialect (`STB_VERSIONS`: pjreddie's 2.19, AlexeyAB's 2.30; they differ
on what follows a frame's first scan, see `_StbWalk`). Where a restart interval holds more bytes than
its blocks need, stb's Huffman decoder misses the interval's marker: the bits each interval needs are
counted from libjpeg's coefficients to find where stb stops (`_interval_bits`).

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
import tempfile
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
DHT, DQT, DNL, DRI, COM = 0xC4, 0xDB, 0xDC, 0xDD, 0xFE
MARKER_NONE = 0xFF   # DARKNET(stb_image.h:STBI__MARKER_none): what stbi__get_marker returns for a non-0xFF byte
# stb_image versions whose JPEG marker handling is reproduced: pjreddie's src/stb_image.h (v2.19) and
# AlexeyAB's 3rdparty/stb/include/stb_image.h (v2.30); see `read_frame`
STB_PJREDDIE, STB_ALEXEYAB = "2.19", "2.30"
STB_VERSIONS = {STB_PJREDDIE, STB_ALEXEYAB}
STB_MAX_DIMENSIONS = 1 << 24   # DARKNET(AB stb_image.h:STBI_MAX_DIMENSIONS): a larger side is "too large"
APP0_JFIF, APP14_ADOBE = 0xE0, 0xEE
# End of entropy-coded data: 0xFF followed by a byte other than a stuffed 0 or a restart marker.
_SCAN_END = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
# DARKNET(stb_image.h:stbi__get_marker): fill bytes 0xFF may precede the SOI code
_JPEG_START = re.compile(rb"\xff+\xd8")
_RESTART = re.compile(rb"\xff+[\xd0-\xd7]")
# DARKNET(AB stb_image.h:stbi__skip_jpeg_junk_at_end): 0xFF, fill 0xFF, then a byte other than 0 is a marker
_AB_JUNK_END = re.compile(rb"\xff+[^\x00\xff]")
BIT_LENGTH = np.frexp(np.arange(1 << 16))[1].astype(np.int64)   # the JPEG magnitude category of 0 .. 65535
STB_SLACK_BYTES = 8   # an interval this many bytes longer than its blocks need has junk stb does not read
ZIGZAG = np.array([0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27,
                   20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58,
                   59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63])   # natural index of each scan position


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
    decoded_mcus: int | None = None   # stb returned after this many MCUs of the first scan (2.30); None: all
    end: int | None = None            # 2.30 returned the image at this byte (a marker it could not process)


def is_jpeg(data: bytes) -> bool:
    return _JPEG_START.match(data) is not None


def decode_image(path: str | Path, data: bytes | None = None, max_pixels: int | None = None,
                 stb_version: str = STB_PJREDDIE) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB, the pixels of ``stbi_load(path, &w, &h, &c, 3)``; `data`: the file's bytes
    when already read; `stb_version`: whose stb_image accepts or refuses a malformed JPEG (`STB_VERSIONS`).

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
        return decode_jpeg(path, data, stb_version)
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


def decode_lossless(path: Path, data: bytes) -> np.ndarray:
    """Non-JPEG formats through OpenCV (`data`: the file's content), converted to 3 channels as stb converts them."""
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


def decode_jpeg(path: Path, data: bytes, stb_version: str = STB_PJREDDIE) -> np.ndarray:
    """A JPEG file's stb pixels; `data` is the file's content."""
    read = functools.cache(functools.partial(_read_coefficients, path))
    frame = read_frame(path, data, stb_version, lambda: read()[0])
    if frame.end is None:
        coefficients, tables = read()
    else:   # libjpeg may refuse what 2.30 stopped at: it reads the file up to there, then an end of image
        with tempfile.TemporaryDirectory() as folder:
            cut = Path(folder) / "cut.jpg"
            cut.write_bytes(data[:frame.end] + b"\xff\xd9")
            coefficients, tables = _read_coefficients(cut)
    h_max = max(c.h for c in frame.components)
    v_max = max(c.v for c in frame.components)
    planes = []
    for component, blocks, table in zip(frame.components, coefficients, tables):
        samples = idct_plane(blocks, table)
        if frame.decoded_mcus is not None:
            _blank_undecoded(samples, frame, component)
        samples = samples[:component.height, :component.width]
        planes.append(upsample(samples, h_max // component.h, v_max // component.v, frame.width, frame.height))
    return to_rgb(planes, frame)


def _read_coefficients(path: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """libjpeg's quantised blocks ``(BH, BW, 8, 8)`` and quantisation table of each component."""
    jpeglib = _jpeglib()
    try:
        with _JPEGLIB_LOCK:   # the coefficients are read lazily, on attribute access: all of it inside
            dct = jpeglib.read_dct(str(path))
            count = dct.num_components
            blocks = [dct.Y] + ([dct.Cb, dct.Cr] if count >= 3 else []) + ([dct.K] if count == 4 else [])
            tables = [dct.get_component_qt(i) for i in range(len(blocks))]
    except (OSError, RuntimeError, ValueError) as error:   # jpeglib reports libjpeg's errors as OSError
        raise DataError(f"Cannot load image {str(path)!r}: corrupt JPEG (libjpeg: {error})") from None
    return blocks, tables


def _blank_undecoded(samples: np.ndarray, frame: Frame, component: Component) -> None:
    """Zero the samples of the blocks after `frame.decoded_mcus` MCUs, in place.

    DARKNET(AB stb_image.h:stbi__decode_jpeg_image): stb 2.30 returns an image whose first scan stopped
    early; the rest of its sample buffer is uninitialised memory (zero in a fresh process, where the
    buffer is a new mapping). DIVERGES: zero here whatever Darknet's heap held."""
    rows, cols = samples.shape[0] // BLOCK, samples.shape[1] // BLOCK
    r, c = np.mgrid[:rows, :cols]
    if len(frame.components) == 1:
        unit = r * cols + c
    else:
        h_max = max(comp.h for comp in frame.components)
        unit = (r // component.v) * -(-frame.width // (BLOCK * h_max)) + c // component.h
    mask = np.repeat(np.repeat(unit >= frame.decoded_mcus, BLOCK, 0), BLOCK, 1)
    samples[mask] = 0


@functools.cache
def _jpeglib():
    """jpeglib, on its libjpeg-turbo build (same coefficients as libjpeg 6b, its default, ~25% faster)."""
    import jpeglib   # only the JPEG path needs it

    with _JPEGLIB_LOCK:
        if jpeglib.version.get() != FAST_LIBJPEG and FAST_LIBJPEG in jpeglib.version.versions():
            jpeglib.version.set(FAST_LIBJPEG)
    return jpeglib


def read_frame(path: Path, data: bytes, stb_version: str = STB_PJREDDIE,
               coefficients: Callable[[], list[np.ndarray]] | None = None) -> Frame:
    """Walk the markers as stb `stb_version` does (`stbi__decode_jpeg_image`); `DataError` with stb's reason
    for what it refuses. coefficients: () -> libjpeg's quantised blocks per component, to find where stb's
    Huffman decoder stops in an overlong restart interval (without it, every scan is taken as well-formed)."""
    if stb_version not in STB_VERSIONS:
        raise ValueError(f"stb_version must be one of {sorted(STB_VERSIONS)}, got {stb_version!r}")
    return _StbWalk(path, data, stb_version, coefficients).run()


class _StbWalk:
    """stb_image's JPEG marker walk over the bytes (its `get8` gives 0 past the end of the file).

    DARKNET(stb_image.h:stbi__decode_jpeg_header): before the frame a junk byte after the first segment
    is skipped one at a time (`STBI__MARKER_none`), but `FF 00` or an unknown code is "unknown marker".
    DARKNET(stb_image.h:stbi__decode_jpeg_image): after the frame, 2.19 refuses any marker it cannot
    process; 2.30 returns the image decoded so far (`if (!stbi__process_marker(j, m)) return 1;`),
    so junk, a second frame or the end of the file after a complete scan are accepted.
    A scan ends at its next non-restart marker, as stb's Huffman decoder ends there when the data
    matches the frame; for the first sequential scan of every component, an overlong restart interval
    is found by counting bits (`_early_stop`), and stb's reading resumes where its decoder stopped.
    DIVERGES: not counted (taken as well-formed): progressive and later scans, intervals with blocks
    libjpeg does not hand back, junk of under `STB_SLACK_BYTES`. A file cut inside a scan is refused
    for both versions, where 2.30 decodes zero bits past the end and returns the image.
    """

    def __init__(self, path: Path, data: bytes, version: str, coefficients: Callable[[], list] | None = None):
        self.path, self.data, self.version, self.pos = path, data, version, 0
        self.frame, self.jfif, self.adobe_transform, self.scans = None, False, -1, 0
        self.pending = MARKER_NONE   # the marker that ended the last scan
        self.coefficients = coefficients   # () -> libjpeg's quantised blocks per component, to count bits
        self.huffman: dict[tuple[int, int], np.ndarray] = {}
        self.restart_interval, self.decoded_mcus, self.progressive = 0, None, False
        self.marker_start, self.end = 0, None   # where the last marker began; where 2.30 stopped reading

    def fail(self, why: str) -> DataError:
        return DataError(f"Cannot load image {str(self.path)!r}: stb_image {self.version} refuses it: {why}")

    def get8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def get16(self) -> int:
        return (self.get8() << 8) | self.get8()

    def at_eof(self) -> bool:
        return self.pos >= len(self.data)

    def marker(self) -> int:
        """DARKNET(stb_image.h:stbi__get_marker): a byte other than 0xFF is no marker; fill 0xFF skipped."""
        x = self.get8()
        if x != 0xFF:
            return MARKER_NONE
        while x == 0xFF:
            x = self.get8()
        return x

    def run(self) -> Frame:
        if self.marker() != SOI:
            raise self.fail("no SOI (Corrupt JPEG)")
        m = self.marker()
        while m not in STB_FRAMES:
            self.process(m)
            m = self.marker()
            while m == MARKER_NONE:   # DARKNET(stb_image.h:stbi__decode_jpeg_header): "extra padding"
                if self.at_eof():
                    raise self.fail("no SOF (Corrupt JPEG)")
                m = self.marker()
        self.progressive = m == 0xC2
        segment = self.segment()
        self.frame = _parse_frame(segment, self.fail, self.version)
        self.frame_ids = list(segment[6::3])
        m = self.marker()
        while m != EOI:
            if m == SOS:
                self.scan()
                m = self.pending
            elif m == DNL:
                length, lines = self.get16(), self.get16()
                if length != 4:
                    raise self.fail("bad DNL len (Corrupt JPEG)")
                if lines != self.frame.height:
                    raise self.fail("bad DNL height (Corrupt JPEG)")
                m = self.marker()
            else:
                self.marker_start = self.pos - 2 if m != MARKER_NONE else self.pos - 1
                try:
                    self.process(m)
                except DataError:
                    if self.version == STB_PJREDDIE:
                        raise
                    # DARKNET(AB stb_image.h:stbi__decode_jpeg_image): what is decoded is the image
                    self.end = self.marker_start
                    break
                m = self.marker()
        if self.scans == 0:
            # DIVERGES: stb returns the frame's uninitialised buffers when no scan came before the end
            raise self.fail("no scan before the end of the image (Corrupt JPEG)")
        return dataclasses.replace(self.frame, jfif=self.jfif, adobe_transform=self.adobe_transform,
                                   decoded_mcus=self.decoded_mcus, end=self.end)

    def segment(self) -> bytes:
        """A length-prefixed segment's payload; `DataError` when the file ends inside it."""
        length = self.get16()
        payload = self.data[self.pos:self.pos + length - 2]
        if length < 2 or len(payload) != length - 2:
            raise self.fail(f"truncated or corrupt JPEG: bad segment length at byte {self.pos - 2}")
        self.pos += length - 2
        return payload

    def process(self, m: int) -> None:
        """DARKNET(stb_image.h:stbi__process_marker): the markers stb reads outside a frame header and scan."""
        if m == MARKER_NONE:
            raise self.fail("expected marker (Corrupt JPEG)")
        if m == DRI:
            if self.get16() != 4:
                raise self.fail("bad DRI len (Corrupt JPEG)")
            self.restart_interval = self.get16()
        elif m == DQT:
            _check_tables(self.segment(), self.fail, huffman=False)
        elif m == DHT:
            self.huffman.update(_check_tables(self.segment(), self.fail, huffman=True,
                                              max_symbols=256 if self.version != STB_PJREDDIE else None))
        elif 0xE0 <= m <= 0xEF or m == COM:
            length = self.get16()
            if length < 2:
                raise self.fail(f"bad {'COM' if m == COM else 'APP'} len (Corrupt JPEG)")
            payload = self.data[self.pos:self.pos + length - 2]
            self.pos = min(self.pos + length - 2, len(self.data))   # stbi__skip stops at the end
            if m == APP0_JFIF and payload[:5] == b"JFIF\x00":
                self.jfif = True
            elif m == APP14_ADOBE and len(payload) >= 12 and payload[:6] == b"Adobe\x00":
                self.adobe_transform = payload[11]
        elif m in OTHER_FRAMES:
            raise self.fail(f"unknown marker (JPEG type SOF{m - 0xC0}: lossless/arithmetic/hierarchical)")
        else:
            raise self.fail(f"unknown marker 0x{m:02X} at byte {self.pos - 1}")

    def scan(self) -> None:
        header = self.segment()
        count = header[0] if header else 0
        if not 1 <= count <= min(4, len(self.frame.components)):
            raise self.fail("bad SOS component count (Corrupt JPEG)")
        if len(header) != 4 + 2 * count:
            raise self.fail("bad SOS len (Corrupt JPEG)")
        self.scans += 1
        end = _SCAN_END.search(self.data, self.pos)
        if end is None:
            why = f"truncated JPEG: scan {self.scans} runs to the end of the file"
            if self.version == STB_PJREDDIE:
                raise self.fail(why + " (expected marker)")
            # DIVERGES: stb 2.30 decodes zero bits past the end and returns that image; refused here
            raise DataError(f"Cannot load image {str(self.path)!r}: {why} (stb_image {self.version} would "
                            "decode zero bits past the end; refused)")
        stop = self._early_stop(header, self.pos, end.start()) if self.scans == 1 else None
        if stop is None:
            self.pos = end.start()
            self.pending = self.marker()
        elif self.version == STB_PJREDDIE:
            # DARKNET(stb_image.h:stbi__decode_jpeg_image): "IP Kamera 9060": the byte after the next 0xFF is the marker
            found = self.data.find(b"\xff", stop)
            self.pos = found + 1 if found >= 0 else len(self.data)
            self.pending = self.get8() if found >= 0 else MARKER_NONE
        else:
            # DARKNET(AB stb_image.h:stbi__skip_jpeg_junk_at_end): stuffed zeros skipped
            found = _AB_JUNK_END.search(self.data, stop)
            self.pos = found.end() if found else len(self.data)
            self.pending = self.data[self.pos - 1] if found else MARKER_NONE
            if 0xD0 <= self.pending <= 0xD7:
                self.pending = self.marker()

    def _early_stop(self, header: bytes, start: int, end: int) -> int | None:
        """Where stb's Huffman decoder of the first scan stops reading when a restart interval holds more
        bytes than its blocks need (it then misses the interval's marker), else None.

        The bits each interval needs are counted from libjpeg's coefficients and the scan's code
        lengths, for a sequential scan of every component. Sets `decoded_mcus` when stb returns from the
        scan before its last interval.
        DIVERGES: the count assumes the encoder's canonical run-lengths and libjpeg's dummy blocks; an
        interval is taken as overlong only when it has `STB_SLACK_BYTES` more bytes than counted, and the
        stop is placed 3 bytes after the counted end (stb's bit buffer reads 24 to 32 bits ahead).
        """
        frame = self.frame
        if self.coefficients is None or self.progressive or header[0] != len(frame.components):
            return None
        ids = [self.frame_ids.index(header[1 + 2 * i]) if header[1 + 2 * i] in self.frame_ids else -1
               for i in range(header[0])]
        tables = [(self.huffman.get((0, header[2 + 2 * i] >> 4)), self.huffman.get((1, header[2 + 2 * i] & 15)))
                  for i in range(header[0])]
        if ids != sorted(set(ids)) or -1 in ids or any(t is None for pair in tables for t in pair):
            return None
        try:
            blocks = self.coefficients()
        except DataError:   # libjpeg refuses what follows the scan (an unknown marker): stb's verdict decides
            return None
        bits = _interval_bits(blocks, frame, tables, self.restart_interval)
        if bits is None:
            return None
        starts, stops = [start], []
        for found in _RESTART.finditer(self.data, start, end):
            stops.append(found.start())
            starts.append(found.end())
        stops.append(end)
        for index, (lo, hi) in enumerate(zip(starts, stops)):
            if index >= len(bits):
                break
            if np.isnan(bits[index]):
                continue
            piece = self.data[lo:hi]
            data_bytes = len(piece) - piece.count(b"\xff\x00")
            needed = -(-int(bits[index]) // 8)
            if data_bytes - needed >= STB_SLACK_BYTES:
                if index < len(bits) - 1:
                    per = self.restart_interval or 1
                    self.decoded_mcus = (index + 1) * per
                return _file_offset(piece, needed + 3) + lo
        return None


def _file_offset(piece: bytes, data_bytes: int) -> int:
    """Offset in `piece` (entropy-coded bytes) after `data_bytes` data bytes, a stuffed FF 00 counting as one."""
    offset = 0
    for _ in range(data_bytes):
        if offset >= len(piece):
            break
        offset += 2 if piece[offset] == 0xFF else 1
    return offset


def _interval_bits(blocks: list[np.ndarray], frame: Frame, tables: list, restart_interval: int) -> np.ndarray | None:
    """Bits of entropy-coded data per restart interval of a sequential scan of every component, counted
    from the quantised blocks (libjpeg's, ``(BH, BW, 8, 8)`` per component) and ``(dc, ac)`` code lengths;
    NaN for an interval with MCU blocks libjpeg's arrays leave out; None when a value has no code (the data
    is not what these tables encode)."""
    if len(frame.components) == 1:
        units = [blocks[0].reshape(-1, 64)[:, None]]                          # [unit, 1, 64]: block raster
    else:
        h_max, v_max = max(c.h for c in frame.components), max(c.v for c in frame.components)
        mcu_x, mcu_y = -(-frame.width // (8 * h_max)), -(-frame.height // (8 * v_max))
        units, dummy = [], np.zeros((mcu_y, mcu_x), bool)
        for component, plane in zip(frame.components, blocks):
            rows, cols = mcu_y * component.v, mcu_x * component.h
            # libjpeg's dummy blocks (beyond the component's blocks in an MCU): its last block's DC, no AC
            pad = np.zeros((rows, cols, 8, 8), plane.dtype)
            pad[:plane.shape[0], :plane.shape[1]] = plane[:rows, :cols]
            pad[:, plane.shape[1]:, 0, 0] = pad[:, plane.shape[1] - 1:plane.shape[1], 0, 0]
            pad[plane.shape[0]:, :, 0, 0] = pad[plane.shape[0] - 1:plane.shape[0], :, 0, 0]
            dummy[plane.shape[0] // component.v:, :] |= plane.shape[0] < rows
            dummy[:, plane.shape[1] // component.h:] |= plane.shape[1] < cols
            units.append(pad.reshape(mcu_y, component.v, mcu_x, component.h, 64).transpose(0, 2, 1, 3, 4)
                         .reshape(mcu_y * mcu_x, component.v * component.h, 64))
    count = units[0].shape[0]
    interval = np.arange(count) // (restart_interval or count)                # [unit]
    total = np.zeros(count, np.int64)                                         # [unit] bits
    first = np.r_[True, interval[1:] != interval[:-1]]                        # the DC predictor restarts at 0
    for unit, (dc_len, ac_len) in zip(units, tables):
        zigzag = unit.reshape(-1, 64)[:, ZIGZAG]                             # [block, 64] in scan order
        dc = zigzag[:, 0].astype(np.int64).reshape(count, -1)                # [unit, blocks per unit]
        previous = np.concatenate([np.zeros((count, 1), np.int64), dc[:, :-1]], axis=1)
        previous[:, 0] = np.where(first, 0, np.r_[0, dc[:-1, -1]])
        dc_size = BIT_LENGTH[np.abs(dc - previous)]
        # AC: only the nonzero coefficients are coded, each with the zero run before it
        where = np.flatnonzero(zigzag)
        where = where[(where & 63) != 0]                                      # [nonzero AC]
        block, position = where >> 6, where & 63
        new_block = np.empty(len(block), bool)
        new_block[:1] = True
        np.not_equal(block[1:], block[:-1], out=new_block[1:])
        run = position - 1
        run[1:] -= np.where(new_block[1:], 0, position[:-1])
        size = BIT_LENGTH[np.abs(zigzag.reshape(-1)[where].astype(np.int32))]
        symbol_len = ac_len[((run & 15) << 4) | size]
        last = np.zeros(len(zigzag), np.int64)                               # [block] last coded position
        last[block] = position                                               # (the last write wins)
        eob = last < 63                                                      # an end-of-block code follows
        lengths = [dc_len[dc_size], symbol_len, ac_len[[0xF0] * int((run >= 16).any())], ac_len[[0] * int(eob.any())]]
        if any((length == 0).any() for length in lengths):
            return None
        ac_bits = np.bincount(block, weights=symbol_len + size + ac_len[0xF0] * (run >> 4), minlength=len(zigzag))
        ac_bits += np.where(eob, ac_len[0], 0)
        total += (dc_len[dc_size] + dc_size).sum(axis=1) + ac_bits.reshape(count, -1).sum(axis=1).astype(np.int64)
    bits = np.bincount(interval, weights=total)
    if len(frame.components) > 1:
        # DIVERGES: an interval with blocks libjpeg does not hand back (beyond its arrays) is not counted
        bits[np.unique(interval[dummy.reshape(-1)])] = np.nan
    return bits


def _check_tables(segment: bytes, fail: Callable[[str], DataError], huffman: bool,
                  max_symbols: int | None = None) -> dict[tuple[int, int], np.ndarray]:
    """DARKNET(stb_image.h:stbi__process_marker): DQT / DHT headers and lengths as stb checks them.

    Returns each Huffman table's ``(256,)`` code length per symbol (0: no code), keyed (class, id)."""
    pos, tables = 0, {}
    while pos < len(segment):
        q = segment[pos]
        if huffman:
            if q >> 4 > 1 or q & 15 > 3:
                raise fail("bad DHT header (Corrupt JPEG)")
            sizes = segment[pos + 1:pos + 17]
            if max_symbols is not None and sum(sizes) > max_symbols:
                raise fail("bad DHT header (Corrupt JPEG)")   # DARKNET(AB stb_image.h): n > 256
            code = 0
            for j, count in enumerate(sizes, 1):   # DARKNET(stb_image.h:stbi__build_huffman)
                code += count
                if count and code - 1 >= 1 << j:
                    raise fail("bad code lengths (Corrupt JPEG)")
                code <<= 1
            lengths = np.zeros(256, np.int64)
            lengths[np.frombuffer(segment[pos + 17:pos + 17 + sum(sizes)], np.uint8)] = \
                np.repeat(np.arange(1, 17), np.frombuffer(sizes, np.uint8))[:len(segment) - pos - 17]
            tables[q >> 4, q & 15] = lengths
            pos += 17 + sum(sizes)
        else:
            if q >> 4 > 1:
                raise fail("bad DQT type (Corrupt JPEG)")
            if q & 15 > 3:
                raise fail("bad DQT table (Corrupt JPEG)")
            pos += 129 if q >> 4 else 65
    if pos != len(segment):
        raise fail(f"bad {'DHT' if huffman else 'DQT'} length (Corrupt JPEG)")
    return tables


def _parse_frame(segment: bytes, fail: Callable[[str], DataError], stb_version: str = STB_PJREDDIE) -> Frame:
    """DARKNET(stb_image.h:stbi__process_frame_header): stb's checks, in its order."""
    if len(segment) < 9:
        raise fail("bad SOF len (Corrupt JPEG)")
    precision, height, width, count = segment[0], int.from_bytes(segment[1:3], "big"), \
        int.from_bytes(segment[3:5], "big"), segment[5]
    if precision != 8:
        raise fail(f"only 8-bit ({precision}-bit JPEG)")
    if height == 0:
        raise fail("no header height (JPEG format not supported: delayed height)")
    if width == 0:
        raise fail("0 width (Corrupt JPEG)")
    if stb_version != STB_PJREDDIE and max(width, height) > STB_MAX_DIMENSIONS:
        raise fail(f"too large ({width}x{height}: Very large image (corrupt?))")
    if count not in (1, 3, 4):
        raise fail(f"bad component count {count} (Corrupt JPEG)")
    if len(segment) != 6 + 3 * count:
        raise fail("bad SOF len (Corrupt JPEG)")
    specs = [segment[6 + 3 * i:9 + 3 * i] for i in range(count)]
    factors = [(spec[1] >> 4, spec[1] & 15) for spec in specs]
    for h, v in factors:
        if not 1 <= h <= 4:
            raise fail("bad H (Corrupt JPEG)")
        if not 1 <= v <= 4:
            raise fail("bad V (Corrupt JPEG)")
    if any(spec[2] > 3 for spec in specs):
        raise fail("bad TQ (Corrupt JPEG)")
    h_max, v_max = max(h for h, _ in factors), max(v for _, v in factors)
    if any(h_max % h or v_max % v for h, v in factors):
        if stb_version != STB_PJREDDIE:
            # DARKNET(AB stb_image.h:stbi__process_frame_header): fractional sampling ratios refused
            raise fail(f"bad {'H' if any(h_max % h for h, _ in factors) else 'V'} (Corrupt JPEG: sampling {factors})")
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
