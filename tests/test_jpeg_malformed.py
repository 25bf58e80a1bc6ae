"""Malformed JPEGs accepted or refused as the dialect's stb_image version does (issue 20 item 5).

The verdicts and pixels were recorded from stb_image 2.19 (pjreddie) and 2.30 (AlexeyAB) compiled in
scratch; see tests/fixtures/jpeg_malformed/README.md.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.errors import DataError
from pydarknet.image import load_image
from pydarknet.imdecode import STB_ALEXEYAB, STB_PJREDDIE, STB_VERSIONS

FIXTURES = Path(__file__).parent / "fixtures" / "jpeg_malformed"
# file -> {stb version: None when accepted, else stb_failure_reason()}
VERDICTS = {
    "junk_header.jpg": {STB_PJREDDIE: None, STB_ALEXEYAB: None},
    "ff00_header.jpg": {STB_PJREDDIE: "unknown marker", STB_ALEXEYAB: "unknown marker"},
    "bad_app_len.jpg": {STB_PJREDDIE: "bad APP len", STB_ALEXEYAB: "bad APP len"},
    "junk_after_scan.jpg": {STB_PJREDDIE: "unknown marker", STB_ALEXEYAB: None},
    "bad_exif_restart.jpg": {STB_PJREDDIE: "unknown marker", STB_ALEXEYAB: None},
}
CASES = [(name, version) for name in VERDICTS for version in sorted(STB_VERSIONS)]


def test_dialects_name_their_stb_versions():
    assert PJREDDIE.stb_version == STB_PJREDDIE == "2.19"
    assert ALEXEYAB.stb_version == STB_ALEXEYAB == "2.30"


@pytest.mark.parametrize("name, version", CASES)
def test_malformed_jpeg_verdict_and_pixels_as_stb(name, version):
    path = FIXTURES / name
    reason = VERDICTS[name][version]
    if reason is None:
        expected = cv2.imread(str(FIXTURES / f"{path.stem}.stb{version}.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
        np.testing.assert_array_equal(load_image(path, stb_version=version), expected)
    else:
        with pytest.raises(DataError) as error:
            load_image(path, stb_version=version)
        message = str(error.value)
        assert "\n" not in message and str(path) in message and reason in message
        assert f"stb_image {version}" in message


def test_load_image_defaults_to_pjreddies_stb():
    with pytest.raises(DataError, match="unknown marker"):
        load_image(FIXTURES / "junk_after_scan.jpg")


def test_unknown_stb_version_is_refused():
    with pytest.raises(ValueError, match="stb_version"):
        load_image(FIXTURES / "junk_header.jpg", stb_version="2.26")


def test_evaluation_decodes_with_the_dialects_stb():
    from pydarknet.evaluate.detect_list import _decoded_input

    path = str(FIXTURES / "junk_after_scan.jpg")
    refused = _decoded_input(path, 32, 32, True, "stb", stb_version=PJREDDIE.stb_version)
    assert isinstance(refused, DataError) and "unknown marker" in str(refused)
    tensor, width, height = _decoded_input(path, 32, 32, True, "stb", stb_version=ALEXEYAB.stb_version)
    assert (width, height) == (24, 16) and tuple(tensor.shape) == (3, 32, 32)
