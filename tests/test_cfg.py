"""cfg parsing and graph building: every original cfg builds; malformed cfgs fail naming file and line."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from pydarknet.cfg import CfgError, UnusedFieldWarning, parse_cfg_text, read_cfg
from pydarknet.data.files import read_data_file, read_names
from pydarknet.errors import DataError
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
    ("[convolutional]\nfilters=4\nactivation=swishy\n", r"bad.cfg:8 \[convolutional\]: unknown activation 'swishy'"),
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


# Each bad value is refused where it is read, naming file:line [section] and the key (body starts at line 6).
@pytest.mark.parametrize("body, message", [
    # positive sizes, filters, strides, groups; padding >= 0
    ("[convolutional]\nfilters=0\n", r"bad.cfg:7 \[convolutional\]: option 'filters=0' must be at least 1$"),
    ("[convolutional]\nsize=0\n", r"bad.cfg:7 \[convolutional\]: option 'size=0' must be at least 1$"),
    ("[convolutional]\nstride=-2\n", r"bad.cfg:7 \[convolutional\]: option 'stride=-2' must be at least 1$"),
    ("[convolutional]\ngroups=0\n", r"bad.cfg:7 \[convolutional\]: option 'groups=0' must be at least 1$"),
    ("[convolutional]\npadding=-1\n", r"bad.cfg:7 \[convolutional\]: option 'padding=-1' must be at least 0$"),
    ("[maxpool]\nstride=0\n", r"bad.cfg:7 \[maxpool\]: option 'stride=0' must be at least 1$"),
    ("[maxpool]\nsize=2\npadding=-1\n", r"bad.cfg:8 \[maxpool\]: option 'padding=-1' must be at least 0$"),
    ("[connected]\noutput=0\n", r"bad.cfg:7 \[connected\]: option 'output=0' must be at least 1$"),
    ("[softmax]\ngroups=0\n", r"bad.cfg:7 \[softmax\]: option 'groups=0' must be at least 1$"),
    # outputs of at least 1x1
    ("[convolutional]\nfilters=2\nsize=64\n",
     r"bad.cfg:8 \[convolutional\]: size=64 stride=1 gives a -31x-31 output for the 32x32 input$"),
    ("[maxpool]\nsize=33\nstride=1\npadding=0\n",
     r"bad.cfg:7 \[maxpool\]: size=33 stride=1 gives a 0x0 output for the 32x32 input$"),
    ("[reorg]\nstride=64\n", r"bad.cfg:7 \[reorg\]: reorg stride=64 does not divide the 3x32x32 input$"),
    ("[upsample]\nstride=0\n", r"bad.cfg:7 \[upsample\]: upsample stride=0: the stride must not be 0"),
    # finite floats; temperature 0
    ("[convolutional]\nfilters=2\n\n[dropout]\nprobability=nan\n",
     r"bad.cfg:10 \[dropout\]: option 'probability=nan' is not a finite number$"),
    ("[convolutional]\n\n[shortcut]\nfrom=-1\nalpha=-inf\n",
     r"bad.cfg:10 \[shortcut\]: option 'alpha=-inf' is not a finite number$"),
    ("[convolutional]\nlearning_rate=1e999\n",
     r"bad.cfg:7 \[convolutional\]: option 'learning_rate=1e999' is not a finite number$"),
    ("[softmax]\ntemperature=0\n", r"bad.cfg:7 \[softmax\]: option 'temperature=0' must not be 0$"),
    # values no C int holds
    ("[convolutional]\nfilters=99999999999999999999\n",
     r"bad.cfg:7 \[convolutional\]: option 'filters=99999999999999999999' does not fit in the 32-bit integer"),
    ("[convolutional]\nsize=4294967296\n",
     r"bad.cfg:7 \[convolutional\]: option 'size=4294967296' does not fit in the 32-bit integer"),
    # the build estimate (parameters + activations for one image), checked before torch allocates
    ("[convolutional]\nfilters=2147483647\n", r"bad.cfg:7 \[convolutional\]: filters=2147483647 with size=1 brings "
     r"the estimate of parameters \+ activations \(one image\) to 56 GiB \(60129554404 bytes\), above the 16 GiB "
     r"\(17179869184 bytes\) bound \(set "
     r"\$PYDARKNET_MAX_BUILD_BYTES to raise it\)$"),
    ("[upsample]\nstride=100000\n", r"bad.cfg:6 \[upsample\]: the output 3x3200000x3200000 brings the estimate"),
    ("[maxpool]\nsize=100000\nstride=100000\npadding=100000\n",
     r"bad.cfg:9 \[maxpool\]: the -inf-padded input brings the estimate .* to 112 GiB \(\d+ bytes\)"),
    # nothing reads a detection layer's output
    ("[convolutional]\nfilters=125\nsize=1\n\n[region]\nnum=5\n\n[convolutional]\nfilters=2\n",
     r"bad.cfg:13 \[convolutional\]: reads the output of layer 1 \[region\], which holds detections, not an image"),
    ("[convolutional]\nfilters=255\n\n[yolo]\nclasses=80\nnum=3\n\n[route]\nlayers=-1,-2\n",
     r"bad.cfg:13 \[route\]: reads the output of layer 1 \[yolo\]"),
    # known activations only
    ("[convolutional]\nactivation=Leaky\n",
     r"bad.cfg:7 \[convolutional\]: unknown activation 'Leaky'; known: elu, gelu, hard_mish, hardtan, leaky, lhtan, "
     r"linear, loggy, logistic, mish, plse, ramp, relie, relu, relu6, revleaky, selu, stair, swish, tanh$"),
    # maxpool windows made only of (-inf) padding
    ("[maxpool]\nsize=2\npadding=4\n",
     r"bad.cfg:8 \[maxpool\]: padding=4 makes windows of padding only \(size=2 allows at most 2\)$"),
])
def test_bad_value_is_refused_where_read(tmp_path, body, message):
    with pytest.raises(CfgError, match=message):
        Darknet.from_cfg(_cfg(tmp_path, body))


LAYER = "\n[convolutional]\nfilters=2\n"


@pytest.mark.parametrize("text, message", [
    ("[net]\nwidth=32\nheight=32\nchannels=-3\n" + LAYER,
     r"bad.cfg:4 \[net\]: option 'channels=-3' must be at least 1$"),
    ("[net]\nwidth=32\nheight=32\nchannels=3\nmomentum=nan\n" + LAYER,
     r"bad.cfg:5 \[net\]: option 'momentum=nan' is not a finite number$"),
    ("[net]\nwidth=4294967296\nheight=32\nchannels=3\n" + LAYER,
     r"bad.cfg:2 \[net\]: option 'width=4294967296' does not fit"),
    ("[net]\nwidth=32\nheight=32\nchannels=3\n", r"bad.cfg:1 \[net\]: no layers follow \[net\]$"),
    ("[net]\nwidth=100000\nheight=100000\nchannels=3\n" + LAYER,
     r"bad.cfg:1 \[net\]: the input image brings the estimate .* to 112 GiB \(\d+ bytes\), above the 16 GiB"),
])
def test_bad_net_value_is_refused_where_read(tmp_path, text, message):
    path = tmp_path / "bad.cfg"
    path.write_text(text)
    with pytest.raises(CfgError, match=message):
        Darknet.from_cfg(path)


def test_build_bound_from_parameter_and_environment(tmp_path, monkeypatch):
    path = _cfg(tmp_path, "[convolutional]\nfilters=16\nsize=3\n")
    # input 3*32*32 + weights 16*(3*3*3 + 4) + output 16*30*30 floats, 4 bytes each
    needed = 4 * (3 * 32 * 32 + 16 * (27 + 4) + 16 * 30 * 30)
    assert len(Darknet.from_cfg(path, max_build_bytes=needed).layers) == 1
    with pytest.raises(CfgError, match=rf"bad.cfg:6 \[convolutional\]: the output 16x30x30 brings the estimate "
                                       rf".* to {needed} bytes, above the {needed - 1} bytes bound"):
        Darknet.from_cfg(path, max_build_bytes=needed - 1)
    monkeypatch.setenv("PYDARKNET_MAX_BUILD_BYTES", str(needed - 1))
    with pytest.raises(CfgError, match=rf"above the {needed - 1} bytes bound"):
        Darknet.from_cfg(path)


def test_layers_after_a_detection_layer_may_read_earlier_ones(tmp_path):
    # YOLOv3's shape: a [route] after [yolo] goes back to an earlier layer, and a second head follows
    path = _cfg(tmp_path, "[convolutional]\nfilters=8\n\n[convolutional]\nfilters=18\n\n[yolo]\nclasses=1\n"
                          "mask=0,1,2\nnum=3\n\n[route]\nlayers=-3\n\n[convolutional]\nfilters=18\n\n"
                          "[yolo]\nclasses=1\nmask=0,1,2\nnum=3\n")
    net = Darknet.from_cfg(path, seed=0).eval()
    with torch.no_grad():
        heads = net(torch.rand(1, 3, 32, 32))
    assert net.info[3].sources == [0]
    assert [tuple(h.shape) for h in heads] == [(1, 3, 6, 32, 32), (1, 3, 6, 32, 32)]


@pytest.mark.parametrize("name, reader, error, message", [
    ("bad.cfg", read_cfg, CfgError, r"bad.cfg:3: cfg file is not UTF-8 text \(byte 0xff at offset 19\)$"),
    ("bad.data", read_data_file, DataError, r"bad.data:3: data file is not UTF-8 text \(byte 0xff at offset 19\)$"),
    ("bad.names", read_names, DataError, r"bad.names:3: names file is not UTF-8 text \(byte 0xff at offset 19\)$"),
])
def test_non_utf8_bytes_name_file_and_line(tmp_path, name, reader, error, message):
    path = tmp_path / name
    path.write_bytes(b"[net]\nclasses=32\nab\xff\xfecd\n")
    with pytest.raises(error, match=message):
        reader(path)
