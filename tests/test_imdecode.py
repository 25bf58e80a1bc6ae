"""stb_image-exact decoding against pixels recorded from Darknet's stb_image.h (stbi_load(path, .., 3)).

Fixtures: tests/fixtures/jpeg/*.jpg and tests/fixtures/lossless/* with `<file>.stb.png`, the decode
of the C stb_image v2.19 shipped in Darknet's src/ (x86-64 build, so its SSE2 kernels), saved as PNG.
The JPEGs cover baseline/progressive, 4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1, grey, restart intervals,
optimised Huffman tables, Adobe RGB, CMYK, sizes from 1x1 to 513x301, quality 1..100 and an EXIF
orientation tag; `random_*` are random sizes/settings/content (noise, binary, natural).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from pydarknet.errors import DataError, MissingFileError
from pydarknet.image import load_image
from pydarknet.imdecode import IDCT, decode_image, idct_plane

FIXTURES = Path(__file__).resolve().parent / "fixtures"
JPEGS = sorted((FIXTURES / "jpeg").glob("*.jpg"))
LOSSLESS = sorted(p for p in (FIXTURES / "lossless").iterdir() if not p.name.endswith(".stb.png"))
PACK_IMAGES = ("dog", "eagle", "horses", "person")


def stb_pixels(path: Path) -> np.ndarray:
    return cv2.imread(str(path) + ".stb.png", cv2.IMREAD_UNCHANGED)[:, :, ::-1]


@pytest.mark.parametrize("path", JPEGS, ids=[p.stem for p in JPEGS])
def test_jpeg_decode_is_stb_bit_for_bit(path):
    decoded = load_image(path)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, stb_pixels(path))


@pytest.mark.parametrize("path", LOSSLESS, ids=[p.name for p in LOSSLESS])
def test_lossless_decode_is_stb_bit_for_bit(path):
    if path.suffix == ".tga":
        pytest.importorskip("PIL", reason="TGA (which OpenCV does not read) is decoded by Pillow")
    np.testing.assert_array_equal(load_image(path), stb_pixels(path))


def test_fixtures_are_not_decoded_alike_by_opencv():
    # the fixtures separate the decoders: libjpeg's pixels are off by a few levels on most files
    differing = [p.name for p in JPEGS if not np.array_equal(load_image(p, decoder="opencv"), stb_pixels(p))]
    assert len(differing) > len(JPEGS) // 2


@pytest.mark.parametrize("image", PACK_IMAGES)
def test_pack_images_decode_as_darknet(reference, image):
    expected = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
    np.testing.assert_array_equal(load_image(reference / "darknet" / "data" / f"{image}.jpg"), expected)


def test_exif_orientation_is_ignored():
    path = FIXTURES / "jpeg" / "exif_rotated_40x24.jpg"
    assert b"Exif" in path.read_bytes()[:200]
    for decoder in ("stb", "opencv"):
        assert load_image(path, decoder=decoder).shape == (24, 40, 3)   # orientation 6 would give 40x24


def test_grey_jpeg_gives_three_equal_channels():
    decoded = load_image(FIXTURES / "jpeg" / "gray_37x29.jpg")
    assert decoded.shape == (29, 37, 3)
    np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 1])
    np.testing.assert_array_equal(decoded[:, :, 0], decoded[:, :, 2])
    assert decoded.std() > 10   # not a constant image


@pytest.mark.parametrize("decoder", ["stb", "opencv"])
@pytest.mark.parametrize("keep", [0.3, 0.9, -2])
def test_truncated_jpeg_is_a_data_error_naming_the_file(tmp_path, keep, decoder):
    # stb_image returns NULL ("expected marker") for a JPEG cut anywhere, even just before EOI;
    # libjpeg (OpenCV) would return a half-grey image, so its path checks the end marker itself
    data = (FIXTURES / "jpeg" / "q50_420.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:int(len(data) * keep)] if keep > 0 else data[:keep])
    with pytest.raises(DataError, match="cut.jpg.*truncated"):
        load_image(path, decoder)


@pytest.mark.parametrize("content", [b"not an image", b"\xff\xd8\xff\xe0\x00"])
def test_unreadable_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    for decoder in ("stb", "opencv"):
        with pytest.raises(DataError, match="bad.jpg"):
            load_image(path, decoder=decoder)


def test_arithmetic_coded_jpeg_is_refused_like_stb(tmp_path):
    data = bytearray((FIXTURES / "jpeg" / "q50_420.jpg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 1] = 0xC9   # SOF9: arithmetic-coded sequential, which stb_image does not decode
    path = tmp_path / "arith.jpg"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="arith.jpg.*SOF9"):
        decode_image(path)


def test_missing_file_is_a_missing_file_error(tmp_path):
    with pytest.raises(MissingFileError, match="nope.jpg"):
        load_image(tmp_path / "nope.jpg")


def test_opencv_decoder_still_decodes():
    path = FIXTURES / "jpeg" / "big_513x301_420.jpg"
    by_opencv, by_stb = load_image(path, decoder="opencv"), load_image(path)
    assert by_opencv.shape == by_stb.shape == (301, 513, 3)
    diff = np.abs(by_opencv.astype(int) - by_stb)
    assert 0 < diff.max() <= 8 and diff.mean() < 0.5   # same picture, libjpeg's rounding


def test_unknown_decoder_is_refused():
    with pytest.raises(ValueError, match="decoder"):
        load_image(JPEGS[0], decoder="pillow")


def test_idct_of_a_dc_block_is_flat():
    # a DC-only block: every sample is 128 + DC/8, rounded (independent of stb's butterfly)
    blocks = np.zeros((1, 1, 8, 8), np.int16)
    for dc in (-1024, -100, 0, 7, 8, 100, 1016):
        blocks[0, 0, 0, 0] = dc
        expected = np.clip(128 + np.floor(dc / 8 + 0.5), 0, 255)
        np.testing.assert_array_equal(idct_plane(blocks, np.ones((8, 8), np.uint16)), np.full((8, 8), expected))


def test_dequantised_coefficients_wrap_to_16_bits_as_stb_stores_them():
    blocks = np.zeros((1, 1, 8, 8), np.int16)
    blocks[0, 0, 0, 1] = 300
    wrapped = blocks.copy()
    wrapped[0, 0, 0, 1] = 300 * 200 - 65536
    np.testing.assert_array_equal(idct_plane(blocks, np.full((8, 8), 200, np.uint16)),
                                  idct_plane(wrapped, np.ones((8, 8), np.uint16)))
    saturated = blocks.copy()
    saturated[0, 0, 0, 1] = np.iinfo(np.int16).max
    assert not np.array_equal(idct_plane(blocks, np.full((8, 8), 200, np.uint16)),
                              idct_plane(saturated, np.ones((8, 8), np.uint16)))


def test_idct_matrix_is_the_scaled_dct_basis():
    # stb's integer butterfly approximates sqrt(8) * 4096 * C^T (C the orthonormal DCT-II) to 1e-3
    k = np.arange(8)
    basis = np.sqrt(2 / 8) * np.cos((2 * k[:, None] + 1) * k[None, :] * np.pi / 16)
    basis[:, 0] = np.sqrt(1 / 8)
    np.testing.assert_allclose(IDCT / (4096 * np.sqrt(8)), basis, atol=1e-3)


THREADED_DECODE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from pydarknet.image import load_image
paths = sys.argv[1:] * 30
with ThreadPoolExecutor(4) as pool:
    print(sum(1 for _ in pool.map(load_image, paths)))
"""


def test_jpegs_decode_in_threads_without_crashing_the_process():
    """jpeglib's C wrapper is not thread-safe: unserialised, 4 decoding threads (as `detector valid|map` run
    them) killed 2 of 6 such processes with SIGSEGV; a crash here fails this test, not the whole run."""
    paths = sorted(str(p) for p in (FIXTURES / "alexeyab" / "jpg").glob("*.jpg"))[:12]
    result = subprocess.run([sys.executable, "-c", THREADED_DECODE, *paths], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(30 * len(paths))
