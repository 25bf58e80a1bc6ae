"""Small image files, good and hostile, built in memory: the seeds of the image fuzz target and the
files of the image escapes (issue 20: E1-E6)."""
from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np


def pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(height, width, 3) uint8 noise."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def encoded(extension: str, width: int = 8, height: int = 6, seed: int = 0) -> bytes:
    """A valid image file written by OpenCV (".jpg", ".png", ".bmp")."""
    ok, data = cv2.imencode(extension, pixels(width, height, seed))
    assert ok
    return data.tobytes()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int, depth: int = 8, colour: int = 2, rows: bytes = b"") -> bytes:
    """A PNG whose IHDR claims width x height; its IDAT holds `rows` (raw scanlines, compressed)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(rows))
            + png_chunk(b"IEND", b""))


def png_bomb(side: int) -> bytes:
    """A real side x side 1-bit grey PNG of zeros: a few hundred KB that decode to side² pixels."""
    compressor, parts = zlib.compressobj(9), []
    row = bytes(1 + (side + 7) // 8)   # filter byte + packed bits
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(parts))
            + png_chunk(b"IEND", b""))


def png_broken_chunk() -> bytes:
    """A PNG whose IDAT is split by a chunk of an invalid type: libpng refuses it, and Pillow's load()
    raises SyntaxError("broken PNG file") (E5)."""
    data = encoded(".png", 64, 64)
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    body, end = data[at + 4:at + 4 + length], at + 8 + length
    broken = struct.pack(">I", 4) + b"\x00\x01\x02\x03" + b"abcd" + bytes(4)
    return data[:at - 4] + png_chunk(b"IDAT", body[:length // 2]) + broken + png_chunk(b"IDAT", body[length // 2:]) \
        + data[end:]


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small valid JPEG whose SOF0 says width x height."""
    data = bytearray(encoded(".jpg", 16, 16))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def bmp_claiming(width: int, height: int) -> bytes:
    data = bytearray(encoded(".bmp", 4, 3))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def pillow_encoded(kind: str, width: int = 4, height: int = 3, **options) -> bytes:
    """A valid file written by Pillow ("GIF", "TGA")."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels(width, height)).save(out, kind, **options)
    return out.getvalue()


def gif_claiming(width: int, height: int, frame: bool = False) -> bytes:
    """A GIF whose logical screen (or, with `frame`, whose first frame's descriptor) says width x height."""
    data = bytearray(pillow_encoded("GIF"))
    at = 6
    if frame:
        at = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
        while data[at] == 0x21:   # extensions before the image descriptor
            at += 2
            while data[at]:
                at += data[at] + 1
            at += 1
        at += 5                   # 0x2C, left, top
    data[at:at + 4] = struct.pack("<HH", width, height)
    return bytes(data)


def tga_claiming(width: int, height: int) -> bytes:
    """A 20-byte-run RLE TGA whose header says width x height (E6)."""
    data = bytearray(pillow_encoded("TGA", compression="tga_rle"))
    data[12:16] = struct.pack("<HH", width, height)
    return bytes(data)


def seeds() -> dict[str, bytes]:
    """One small valid file per format the image fuzz target mutates (GIF, TGA: when Pillow is there)."""
    files = {"jpeg": encoded(".jpg", 16, 16), "png": encoded(".png"), "bmp": encoded(".bmp", 4, 3)}
    try:
        files.update(gif=pillow_encoded("GIF"), tga=pillow_encoded("TGA"),
                     tga_rle=pillow_encoded("TGA", 40, 3, compression="tga_rle"))
    except ImportError:
        pass
    return files
