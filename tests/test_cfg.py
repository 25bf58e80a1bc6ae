"""cfg parsing and graph building: every original cfg builds; malformed cfgs fail naming file and line."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pydarknet.cfg import CfgError, UnusedFieldWarning, parse_cfg_text, read_cfg
from pydarknet.network import Darknet
from pydarknet.registry import Shape, register

REPO = Path(__file__).resolve().parent.parent

# (cfg, layer count, final output shape) — read off Darknet's own layer table for these cfgs
ORIGINAL_CFGS = {
    "yolov2-voc.cfg": (32, Shape(125, 13, 13)),
    "yolo-voc.cfg": (32, Shape(125, 13, 13)),
    "yolov2.cfg": (32, Shape(425, 19, 19)),
    "yolov2-tiny-voc.cfg": (16, Shape(125, 13, 13)),
    "yolov2-tiny.cfg": (16, Shape(425, 13, 13)),
    "yolo9000.cfg": (25, Shape(28269, 17, 17)),
    "darknet19.cfg": (26, Shape(1000, 1, 1)),
    "darknet19_448.cfg": (26, Shape(1000, 1, 1)),
    "darknet9000.cfg": (27, Shape(9418, 1, 1)),
    "yolov3.cfg": (107, Shape(255, 76, 76)),
    "yolov3-voc.cfg": (107, Shape(75, 52, 52)),
    "yolov3-tiny.cfg": (24, Shape(255, 26, 26)),
}


@pytest.mark.parametrize("name", ORIGINAL_CFGS)
def test_original_cfg_builds_with_darknet_shapes(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedFieldWarning)
        warnings.filterwarnings("ignore", ".*duplicate option", UnusedFieldWarning)  # yolo9000.cfg repeats batch=
        net = Darknet.from_cfg(REPO / "cfg" / name)
    count, shape = ORIGINAL_CFGS[name]
    assert len(net.layers) == count
    assert net.output_shape == shape


def test_yolov2_voc_intermediate_shapes():
    net = Darknet.from_cfg(REPO / "cfg" / "yolov2-voc.cfg")
    assert net.info[16].shape == Shape(512, 26, 26)    # the layer route -9 reads
    assert net.info[26].shape == Shape(64, 26, 26)
    assert net.info[27].shape == Shape(256, 13, 13)    # reorg stride 2
    assert net.info[28].shape == Shape(1280, 13, 13)   # route -1,-4: 256 + 1024
    assert net.info[28].sources == [27, 24]


def test_yolov3_forward_returns_each_yolo_head():
    net = Darknet.from_cfg(REPO / "cfg" / "yolov3-tiny.cfg").eval()
    net.options.width = net.options.height = 416
    with torch.no_grad():
        heads = net(torch.rand(1, 3, 416, 416))
    assert [tuple(h.shape) for h in heads] == [(1, 3, 85, 13, 13), (1, 3, 85, 26, 26)]


def test_whitespace_comments_and_case_of_darknet_reader():
    sections = parse_cfg_text("# comment\n; also\n[net]\n wid th = 4 \nheight=4\n\n[maxpool]\nsize=2\n", "x.cfg")
    assert [s.kind for s in sections] == ["net", "maxpool"]
    assert sections[0].get_int("width") == 4          # spaces removed even inside, as Darknet's strip()
    assert sections[1].lineno == 7


def _cfg(tmp_path, body: str) -> Path:
    path = tmp_path / "bad.cfg"
    path.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n\n" + body)
    return path


@pytest.mark.parametrize("body, message", [
    ("[convolutional]\nfilters=4\n\n[frobnicate]\nsize=2\n", r"bad.cfg:9 \[frobnicate\]: unknown section"),
    ("[convolutional]\nfilters=four\n", r"bad.cfg:7 \[convolutional\]: option 'filters=four' is not an integer"),
    ("[convolutional]\nfilters=4\n\n[route]\nlayers=-3\n", r"bad.cfg:10 \[route\]: layers=-3 refers to layer -2"),
    ("[convolutional]\nfilters=4\n\n[route]\nlayers=5\n", r"bad.cfg:10 \[route\]: layers=5 refers to layer 5"),
    ("[convolutional]\nfilters 4\n", r"bad.cfg:7: expected key=value"),
    ("[convolutional]\nfilters=4\n\n[maxpool]\nsize=2\nstride=2\n\n[route]\nlayers=-1,-2\n",
     r"bad.cfg:14 \[route\]: layer 0 outputs 32x32, but layer 1 outputs 16x16"),
    ("[convolutional]\nfilters=4\nactivation=swish\n", r"bad.cfg:8 \[convolutional\]: unknown activation 'swish'"),
    ("[convolutional]\nfilters=30\nsize=1\n\n[region]\nclasses=2\nnum=5\n",
     r"bad.cfg:10 \[region\]: input has 30 channels, but num\*\(coords\+1\+classes\) = 35"),
])
def test_malformed_cfg_names_file_and_line(tmp_path, body, message):
    with pytest.raises(CfgError, match=message):
        Darknet.from_cfg(_cfg(tmp_path, body))


def test_first_section_must_be_net(tmp_path):
    path = tmp_path / "nonet.cfg"
    path.write_text("[convolutional]\nfilters=2\n")
    with pytest.raises(CfgError, match=r"nonet.cfg:1: first section must be \[net\]"):
        read_cfg(path)


def test_missing_cfg_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.cfg"):
        read_cfg(tmp_path / "absent.cfg")


def test_unused_field_is_reported_not_ignored(tmp_path):
    path = _cfg(tmp_path, "[convolutional]\nfilters=4\nbacth_normalize=1\n")
    with pytest.warns(UnusedFieldWarning, match=r"bad.cfg:8 \[convolutional\]: Unused field 'bacth_normalize'"):
        net = Darknet.from_cfg(path)
    assert net.layers[0].bn is None


def test_registry_refuses_duplicate_names():
    with pytest.raises(ValueError, match=r"\[maxpool\] is already registered"):
        register("maxpool")(lambda s, ctx: None)
