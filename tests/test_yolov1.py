"""YOLOv1: [local], [detection] and `yolo test` against pjreddie's Darknet (tests/fixtures/yolov1/README.md).

The recordings come from the C program on a mini YOLOv1 (mini-yolov1.cfg) with weights that
`yolov1_reference.write_mini_weights` regenerates bit for bit: [local] and [detection] outputs and
get_network_boxes' detections on three photos, and the printed lines of `darknet yolo test` and
`darknet detector test` on six.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pydarknet.cfg import parse_cfg_text, read_cfg
from pydarknet.cli import main
from pydarknet.detections import format_detections
from pydarknet.engine.detector import DetectorTask
from pydarknet.errors import CfgError, UnsupportedError
from pydarknet.heads.detection.coder import decode_boxes, encode_boxes
from pydarknet.heads.detection.detections import detection_detections, get_detection_detections
from pydarknet.heads.detection.layer import DetectionLayer, split_output
from pydarknet.heads.detector import detection_head
from pydarknet.image import load_image, network_input
from pydarknet.layers.local import LocalLayer
from pydarknet.network import Darknet, load_network
from pydarknet.predict import detect_boxes
from pydarknet.registry import Shape
from yolov1_reference import FIXTURES, IMAGES, MINI_CFG, write_mini_weights

REPO = Path(__file__).resolve().parent.parent
WEIGHTS_SHA256 = "095fa8a3cf34b76f0829aa78be38414cd5fb4d8bf4abba8d7426a14e4610740a"
RECORDED = ("dog", "giraffe", "scream")                  # the photos of mini-yolov1-outputs.npz
LAYERS = {13: "local_input", 14: "local_output", 17: "detection_output"}
VOC_NAMES = (REPO / "data" / "voc.names").read_text().split()
NET = "[net]\nwidth=6\nheight=6\nchannels=2\n\n"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_mini_weights(tmp_path_factory.mktemp("yolov1") / "mini-yolov1.weights")


@pytest.fixture(scope="module")
def net(weights) -> Darknet:
    return load_network(str(MINI_CFG), str(weights)).eval()


@pytest.fixture(scope="module")
def recorded() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "mini-yolov1-outputs.npz") as pack:
        return dict(pack)


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    """The reference pack's per-layer tolerance: |a-b| <= 1e-4·max|b| + 1e-4·|b|."""
    bound = 1e-4 * np.abs(expected).max() + 1e-4 * np.abs(expected)
    excess = np.abs(actual - expected) - bound
    assert excess.max() <= 0, f"worst excess {excess.max():.3g} over the bound"


def _dets_array(dets) -> np.ndarray:
    return np.stack([np.concatenate([d.bbox, [d.objectness], d.probs]) for d in dets]).astype(np.float32)


def test_the_weights_are_the_recorded_ones(weights):
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == WEIGHTS_SHA256


@pytest.mark.parametrize("image", RECORDED)
def test_layer_outputs_match_darknet(net, recorded, image):
    picture = load_image(REPO / "data" / f"{image}.jpg")
    x = torch.from_numpy(network_input(picture, net.width, net.height, letterbox=False))[None]
    with torch.no_grad():
        outputs = net.run(x, keep=set(LAYERS))
    for index, key in LAYERS.items():
        _close(outputs[index].flatten().numpy(), recorded[f"{image}.{key}"])


@pytest.mark.parametrize("image", RECORDED)
def test_local_layer_on_darknets_input(net, recorded, image):
    local = net.layers[14]
    x = torch.from_numpy(recorded[f"{image}.local_input"]).view(1, 8, 7, 7)
    with torch.no_grad():
        _close(local(x).flatten().numpy(), recorded[f"{image}.local_output"])


@pytest.mark.parametrize("image", RECORDED)
@pytest.mark.parametrize("scale", ["1x1", "image"])
def test_get_detection_detections_is_bit_exact(net, recorded, image, scale):
    """On Darknet's own [detection] output, boxes (w = h = 1 as yolo test, the image size as detector test),
    objectness and probs (thresh .1) equal get_network_boxes' bit for bit; the box centres need -Ofast's
    reciprocal (test name: the quirk in coder.decode_boxes)."""
    w, h = (1, 1) if scale == "1x1" else (int(v) for v in recorded[f"{image}.image_size"])
    dets = get_detection_detections(recorded[f"{image}.detection_output"], net.layers[17].options, w, h, 0.1)
    expected = recorded[f"{image}.dets_{scale}"].reshape(len(dets), -1)
    np.testing.assert_array_equal(_dets_array(dets), expected)


def _recorded_blocks(name: str) -> dict[str, list[str]]:
    """A recording's lines per image: each block starts with `<image>:` (Darknet's `Predicted in` line)."""
    blocks: dict[str, list[str]] = {}
    for line in (FIXTURES / name).read_text().splitlines():
        if line.endswith(":"):
            current = blocks.setdefault(line[:-1], [])
        else:
            current.append(line)
    return blocks


YOLO_TEST = [(0.2, "yolo_test.txt"), (0.1, "yolo_test_t1.txt")]
DETECTOR_TEST = [(0.1, "detector_test_t1.txt"), (0.2, "detector_test_t2.txt")]


@pytest.mark.parametrize("image", RECORDED)
@pytest.mark.parametrize("thresh, recording", YOLO_TEST + DETECTOR_TEST)
def test_printed_lines_from_darknets_output_are_identical(net, recorded, image, thresh, recording):
    """The pipeline after the forward (decode, NMS .4 of yolo test or .45 of detector test, printing) on the
    [detection] output Darknet computed for the stretched (yolo test) or letterboxed (detector test) image."""
    letterbox = recording.startswith("detector")
    output = recorded[f"{image}.detection_output" + ("_letterbox" if letterbox else "")]
    im_w, im_h = (int(v) for v in recorded[f"{image}.image_size"])
    dets = detection_detections(net.layers[-1], output, 448, 448, im_w, im_h, thresh, 0.45 if letterbox else 0.4,
                                letterbox)
    assert format_detections(dets, VOC_NAMES, thresh) == _recorded_blocks(recording)[f"data/{image}.jpg"]


@pytest.mark.parametrize("thresh, recording", YOLO_TEST + DETECTOR_TEST)
def test_printed_lines_end_to_end(net, thresh, recording):
    """`darknet yolo test` (stretched, NMS .4) and `detector test cfg/voc.data` (letterboxed, NMS .45) on six
    photos, from the image file on: every line identical."""
    blocks = _recorded_blocks(recording)
    assert sorted(blocks) == sorted(f"data/{image}.jpg" for image in IMAGES)
    assert sum(1 for lines in blocks.values() if lines) >= 5   # boxes print on at least five photos
    letterbox = recording.startswith("detector")
    for path, lines in blocks.items():
        dets = detect_boxes(net, REPO / path, thresh, nms=0.45 if letterbox else 0.4, letterbox=letterbox)
        assert format_detections(dets, VOC_NAMES, thresh) == lines, path


def test_yolo_test_command_prints_darknets_lines(weights, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["-q", "yolo", "test", str(MINI_CFG), str(weights), "data/giraffe.jpg",
                                       "-out", str(tmp_path / "giraffe")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    head, *lines = result.output.splitlines()
    assert head.startswith("data/giraffe.jpg: Predicted in ")
    assert lines == _recorded_blocks("yolo_test.txt")["data/giraffe.jpg"]
    assert (tmp_path / "giraffe.jpg").is_file()


def test_detector_test_command_prints_darknets_lines(weights, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["-q", "detector", "test", "cfg/voc.data", str(MINI_CFG), str(weights),
                                       "data/dog.jpg", "-thresh", "0.2", "-out", str(tmp_path / "dog")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == _recorded_blocks("detector_test_t2.txt")["data/dog.jpg"]
    assert (tmp_path / "dog.jpg").is_file()


def test_yolo_test_refuses_a_net_without_a_detection_layer(tmp_path):
    cfg = tmp_path / "region.cfg"
    cfg.write_text(f"{NET}[convolutional]\nfilters=14\nsize=1\nactivation=linear\n\n"
                   "[region]\nanchors=1,1,2,2\nclasses=2\nnum=2\n")
    result = CliRunner().invoke(main, ["-q", "yolo", "test", str(cfg), "", "data/dog.jpg"])
    assert result.exit_code != 0


def test_detection_boxes_of_a_letterboxed_image_are_relative_to_the_image(net):
    """DIVERGES from Darknet, which leaves [detection] boxes in the letterboxed frame: they are undone here."""
    picture = load_image(REPO / "data" / "dog.jpg")
    stretched = detect_boxes(net, picture, 0.1, nms=0, letterbox=False)
    letterboxed = detect_boxes(net, picture, 0.1, nms=0, letterbox=True)
    assert len(stretched) == len(letterboxed) == 7 * 7 * 2
    boxes = np.stack([d.bbox for d in letterboxed])
    # the dog image (768x576) fills the 448 width: its height is 336 of 448, centred
    x = torch.from_numpy(network_input(picture, 448, 448, letterbox=True))[None]
    with torch.no_grad():
        raw = get_detection_detections(net(x)[0], net.layers[-1].options, 1, 1, 0.1)
    raw_boxes = np.stack([d.bbox for d in raw])
    np.testing.assert_allclose(boxes[:, 0], raw_boxes[:, 0], atol=1e-6)
    np.testing.assert_allclose(boxes[:, 1], (raw_boxes[:, 1] - 56 / 448) * 448 / 336, atol=1e-5)
    np.testing.assert_allclose(boxes[:, 3], raw_boxes[:, 3] * 448 / 336, rtol=1e-5)


# ------------------------------------------------------------------ [local]

def _local(options: str, c: int = 2, size: int = 6) -> Darknet:
    net = Darknet(parse_cfg_text(f"[net]\nwidth={size}\nheight={size}\nchannels={c}\n\n[local]\n{options}\n"))
    net.reset_parameters(0)
    return net


def test_local_out_height_with_pad_is_input_minus_one():
    """DARKNET(local_layer.c:local_out_height): pad=1 gives (h-1)/stride + 1 whatever the size."""
    net = _local("filters=3\nsize=3\nstride=2\npad=1\nactivation=linear", size=7)
    assert net.shapes[0] == Shape(3, 4, 4)
    assert _local("filters=3\nsize=3\nstride=1\npad=0", size=7).shapes[0].h == 5


def test_local_refuses_a_geometry_where_im2col_disagrees():
    with pytest.raises(UnsupportedError, match="im2col makes 8x8 columns for a 6x6 output"):
        _local("filters=1\nsize=1\nstride=1\npad=1")


def test_local_fresh_init_fills_the_first_location_only():
    layer = _local("filters=3\nsize=3\npad=1").layers[0]
    assert layer.weights[0].abs().min() > 0 and layer.weights[1:].abs().max() == 0
    assert layer.biases.abs().max() == 0
    assert layer.weights[0].abs().max() <= (2 / 18) ** 0.5


def test_local_forward_is_a_convolution_per_location():
    """Darknet's memory layout: weights [location][filter][channel][row][col], biases [filter][y][x]."""
    layer = _local("filters=3\nsize=3\nstride=2\npad=1\nactivation=linear").layers[0]
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        layer.weights.copy_(torch.randn(layer.weights.shape, generator=generator))
        layer.biases.copy_(torch.randn(layer.biases.shape, generator=generator))
    x = torch.randn(1, 2, 6, 6, generator=generator)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    with torch.no_grad():
        out = layer(x)
    for y in range(3):
        for x0 in range(3):
            window = padded[0, :, 2 * y:2 * y + 3, 2 * x0:2 * x0 + 3].reshape(-1)
            kernel = layer.weights[y * 3 + x0].detach()                                   # [filters, c*3*3]
            expected = kernel @ window + layer.biases[:, y, x0].detach()
            torch.testing.assert_close(out[0, :, y, x0], expected, rtol=1e-5, atol=1e-5)
    assert [tuple(t.shape) for t in layer.darknet_tensors()] == [(3, 3, 3), (9, 3, 18)]


def test_local_activation_defaults_to_logistic():
    layer = _local("filters=1\nsize=3\npad=1").layers[0]
    assert layer.activation.name == "logistic"   # DARKNET(parser.c:parse_local)


# ------------------------------------------------------------------ [detection]

def _detection_net(options: str = "classes=2\ncoords=4\nside=2\nnum=1") -> Darknet:
    return Darknet(parse_cfg_text(f"{NET}[connected]\noutput=28\nactivation=linear\n\n[detection]\n{options}\n"))


def test_detection_layer_is_the_head():
    net = _detection_net()
    head = detection_head(net, "detection")
    assert (head.kind, head.classes) == ("detection", 2) and isinstance(head.layers[0], DetectionLayer)
    assert net(torch.rand(3, 2, 6, 6)).shape == (3, 28)


def test_detection_input_must_match_side_num_classes():
    with pytest.raises(CfgError, match="needs output=32"):
        _detection_net("classes=3\ncoords=4\nside=2\nnum=1")


def test_detection_needs_four_coords():
    with pytest.raises(CfgError, match="coords=4"):
        Darknet(parse_cfg_text(f"{NET}[connected]\noutput=24\n\n[detection]\nclasses=2\ncoords=3\nside=2\nnum=1\n"))


def test_detection_softmax_covers_the_class_block_only():
    layer = _detection_net("classes=2\ncoords=4\nside=2\nnum=1\nsoftmax=1").layers[-1]
    x = torch.randn(2, 28)
    out = layer(x)
    probs, _, _ = split_output(out, layer.options)
    torch.testing.assert_close(probs, x[:, :8].view(2, 4, 2).softmax(dim=2))
    torch.testing.assert_close(out[:, 8:], x[:, 8:])


def test_detection_decode_and_encode_are_inverse():
    generator = torch.Generator().manual_seed(0)
    raw = torch.rand(2, 9, 3, 4, generator=generator)                                     # [B, S*S, num, 4]
    boxes = decode_boxes(raw, side=3, sqrt=True)
    cells = torch.arange(9)
    encoded = encode_boxes(boxes, (cells % 3)[:, None].float(), (cells // 3)[:, None].float(), side=3, sqrt=True)
    torch.testing.assert_close(encoded, raw)


def test_detection_detections_order_is_cell_then_box():
    options = _detection_net().layers[-1].options
    output = torch.zeros(options.outputs)
    output[8 + 3] = 0.9            # confidence of cell 3's box
    output[0:2] = torch.tensor([0.2, 0.8])
    output[6:8] = torch.tensor([0.25, 0.75])   # cell 3's P(class)
    output[12 + 3 * 4:12 + 4 * 4] = torch.tensor([0.5, 0.5, 0.2, 0.4])
    dets = detection_detections(options, output, 6, 6, 6, 6, thresh=0.5, nms=0)   # NMS reorders
    assert len(dets) == 4
    np.testing.assert_allclose(dets[3].bbox, [0.75, 0.75, 0.2, 0.4], rtol=1e-6)
    assert dets[3].objectness == pytest.approx(0.9)
    np.testing.assert_array_equal(dets[3].probs, np.float32([0, np.float32(0.9) * np.float32(0.75)]))


def test_detector_training_takes_the_detection_layer():
    task = DetectorTask(_detection_net())
    assert (task.head.kind, task.top) == ("detection", 1)


@pytest.mark.parametrize("cfg", ["yolov1.cfg", "yolov1-tiny.cfg"])
def test_shipped_yolov1_cfgs_build(cfg):
    with torch.device("meta"):   # shapes only: yolov1's [local] alone holds 115 M weights
        net = Darknet(read_cfg(REPO / "cfg" / cfg), cfg_path=REPO / "cfg" / cfg)
    head = detection_head(net, "detection")
    assert (head.kind, head.classes, head.layers[0].options.side) == ("detection", 20, 7)
    assert any(isinstance(layer, LocalLayer) for layer in net.layers) == (cfg == "yolov1.cfg")
