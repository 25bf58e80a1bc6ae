"""Winograd F(m, 3) convolutions (pydarknet/winograd.py): the transforms, one layer against a float64 conv,
the shape rule, and every pack net within README §9 with Winograd on (forced on every eligible conv for the mini
nets, whose thin layers the rule leaves to oneDNN; the rule's own choice for the full-size nets)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from reference import (
    FULL_NETS,
    MINI_NETS,
    YOLO_MINI_NETS,
    assert_layer_close,
    decompressed_weights,
    images_for,
    is_classifier,
    network_input,
    read_json,
    yolo_input,
    yolo_network,
)
from torch import nn

import pydarknet.prepack
from pydarknet import load_inference_network
from pydarknet.cfg import parse_cfg_text
from pydarknet.export import yolo_layer_indices
from pydarknet.fuse import fuse_for_inference
from pydarknet.inference import InferenceNetwork
from pydarknet.layers.activations import Activation
from pydarknet.network import Darknet
from pydarknet.prepack import prepacking_available
from pydarknet.registry import Shape
from pydarknet.winograd import POINTS, WinogradConvolution, runs_as_winograd, winograd_matrices, winograd_tile

# the inference nets run Winograd beside the prepacked oneDNN convs only
needs_prepacking = pytest.mark.skipif(not prepacking_available(torch.device("cpu")),
                                      reason="this PyTorch build has no oneDNN convolution op")
TILES = sorted(POINTS)
# max |error| / max |output| of one layer against float64, measured on random layers (up to 1024 channels):
# F(2,3) 9e-7, F(4,3) 1.4e-5, F(6,3) 1.6e-5 (oneDNN's direct conv: 4e-6); bounds with a ~3x margin
LAYER_REL = {2: 2e-6, 4: 5e-5, 6: 5e-5}
# README §9 full-size: abs 1e-3 on probabilities (and x, y), rel 1e-3 on the raw w, h
FULL_SIZE_ABS = 1e-3
FULL_SIZE_REL = 1e-3
# the 3x3 convs winograd_tile runs as Winograd (yolov2-voc: F(4,3) on 104 to 26, F(2,3) on the 1024+-channel 13x13;
# tiny: its 1024 -> 1024 13x13 conv)
RULE_WINOGRAD_LAYERS = {"yolov2-tiny-voc": 4, "yolov2-voc": 13, "yolov4-tiny": 4}
# tests/test_zoo_forward.py ILL_CONDITIONED: mini-yolov4's PAN tail amplifies one float32 rounding ~1000x
YOLO_MINI_REL = {"mini-yolov4": 1e-3}


class _Layer(nn.Module):
    """What a WinogradConvolution reads of a fused `[convolutional]` layer."""

    def __init__(self, op: nn.Conv2d, activation: str):
        super().__init__()
        self.op, self.activation = op, Activation(activation)


def _toeplitz(kernel: list[Fraction], m: int) -> list[list[Fraction]]:
    """The (m, m+2) matrix of the 1-D correlation y_i = sum_j d_{i+j} g_j."""
    return [[kernel[j - i] if 0 <= j - i < len(kernel) else Fraction(0) for j in range(m + 2)] for i in range(m)]


@pytest.mark.parametrize("m", TILES)
def test_matrices_compute_the_1d_correlation_exactly(m):
    """A^T [(G g) * (B^T d)] = g correlated with d, for each unit g (so for every g: it is linear in g)."""
    a_t, g, b_t = winograd_matrices(m)
    assert a_t.shape == (m, m + 2) and g.shape == (m + 2, 3) and b_t.shape == (m + 2, m + 2)
    for j in range(3):
        unit = torch.zeros(3, dtype=torch.float64)
        unit[j] = 1
        want = torch.tensor([[float(v) for v in row] for row in _toeplitz([Fraction(k == j) for k in range(3)], m)],
                            dtype=torch.float64)
        torch.testing.assert_close(a_t @ torch.diag(g @ unit) @ b_t, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation", ["leaky", "linear", "logistic"])
@pytest.mark.parametrize("shape", [(1, 5, 7, 13, 13), (2, 8, 3, 11, 9), (3, 4, 6, 12, 24), (1, 3, 2, 1, 1),
                                   (2, 2, 5, 2, 7), (1, 64, 128, 26, 26)],
                         ids=lambda shape: "B{}_{}to{}_{}x{}".format(*shape))
@pytest.mark.parametrize("m", TILES)
def test_layer_matches_a_float64_conv(m, shape, activation):
    """Odd sizes, sizes m does not divide, a map smaller than a tile, batch > 1, NCHW and NHWC inputs."""
    batch, cin, cout, height, width = shape
    generator = torch.Generator().manual_seed(sum(shape) + m)
    op = nn.Conv2d(cin, cout, 3, 1, 1)
    with torch.no_grad():
        op.weight.copy_(torch.randn(op.weight.shape, generator=generator) / (3 * cin ** 0.5))
        op.bias.copy_(torch.randn(cout, generator=generator))
    layer = _Layer(op, activation)
    winograd = WinogradConvolution(layer, m)
    x = torch.randn(batch, cin, height, width, generator=generator)
    want = layer.activation(nn.functional.conv2d(x.double(), op.weight.double(), op.bias.double(), padding=1))
    with torch.inference_mode():
        for inputs in (x, x.contiguous(memory_format=torch.channels_last)):
            got = winograd(inputs)
            assert got.dtype == torch.float32 and got.is_contiguous(memory_format=torch.channels_last)
            error = (got.double() - want).abs().max().item()
            assert error <= LAYER_REL[m] * want.abs().max().item(), f"F({m},3) {shape}: {error:.3g}"


def test_only_3x3_stride_1_pad_1_convs_without_groups_run_as_winograd():
    assert runs_as_winograd(nn.Conv2d(64, 64, 3, 1, 1))
    for op in (nn.Conv2d(64, 64, 3, 2, 1), nn.Conv2d(64, 64, 1, 1, 0), nn.Conv2d(64, 64, 3, 1, 1, groups=2),
               nn.Conv2d(64, 64, 3, 1, 2, dilation=2), nn.Conv2d(64, 64, 3, 1, 0)):
        assert not runs_as_winograd(op) and winograd_tile(op, Shape(64, 52, 52)) is None
        with pytest.raises(ValueError, match="3x3 stride-1 pad-1"):
            WinogradConvolution(_Layer(op, "leaky"), 4)


@pytest.mark.parametrize("cin, cout, size, tile", [
    (32, 64, 208, None), (64, 128, 104, 4), (128, 256, 52, 4), (256, 512, 26, 4),      # yolov2-voc
    (512, 1024, 13, 2), (1024, 1024, 13, 2), (1280, 1024, 13, 2),
    (16, 32, 208, None), (32, 64, 104, None), (64, 128, 52, 4), (128, 256, 26, 4), (256, 512, 13, None),
    (64, 64, 104, None), (128, 128, 52, 4), (512, 512, 13, 2), (384, 256, 26, 4), (256, 256, 26, 4),   # yolov4-tiny
    (128, 128, 26, None), (64, 128, 152, 4), (1024, 1024, 19, 4),                                      # yolov2 608
])
def test_the_rule_picks_by_shape(cin, cout, size, tile):
    assert winograd_tile(nn.Conv2d(cin, cout, 3, 1, 1), Shape(cin, size, size)) == tile


RULE_CFG = """
[net]
width=80
height=80
channels=3
[convolutional]
batch_normalize=1
filters=64
size=3
stride=1
pad=1
activation=leaky
[convolutional]
batch_normalize=1
filters=128
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=8
stride=8
[convolutional]
filters=1024
size=3
stride=1
pad=1
activation=linear
[convolutional]
batch_normalize=1
filters=1024
size=3
stride=1
pad=1
activation=leaky
"""


@needs_prepacking
@pytest.mark.parametrize("measured_here", [True, False])
def test_by_default_winograd_runs_on_the_cpus_its_rule_was_measured_on(monkeypatch, measured_here):
    """AVX2 without AVX-512: on; elsewhere (AVX-512 / AMX, where oneDNN's direct conv is faster) off unless asked."""
    monkeypatch.setattr(pydarknet.prepack, "measured_faster_here", lambda: measured_here)
    net = Darknet(parse_cfg_text(RULE_CFG, "rule.cfg")).eval()
    kinds = [type(layer).__name__ for layer in InferenceNetwork(net).net.layers]
    assert ("WinogradConvolution" in kinds) == measured_here
    assert "WinogradConvolution" in [type(layer).__name__ for layer in InferenceNetwork(net, winograd=True).net.layers]


@needs_prepacking
def test_inference_net_runs_winograd_where_the_rule_says_and_not_when_switched_off():
    net = Darknet(parse_cfg_text(RULE_CFG, "rule.cfg"))
    net.reset_parameters(seed=5)
    x = torch.rand(3, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    kinds = {}
    with torch.inference_mode():
        want = fuse_for_inference(net)(x)
        for winograd in (True, False):
            inference = InferenceNetwork(net.eval(), winograd=winograd)
            kinds[winograd] = [(type(layer).__name__, getattr(layer, "m", None)) for layer in inference.net.layers]
            error = (inference(x) - want).abs().max().item()
            assert error <= LAYER_REL[4] * want.abs().max().item(), (winograd, error)
    # layer 0 reads 3 channels, layer 3 a 10x10 map with 128, layer 4 1024 at 10x10: the rule's limits
    assert kinds[True] == [("PrepackedConvolution", None), ("WinogradConvolution", 4), ("MaxPoolLayer", None),
                           ("PrepackedConvolution", None), ("WinogradConvolution", 2)]
    assert [kind for kind, _ in kinds[False]].count("PrepackedConvolution") == 4


@pytest.fixture(params=TILES, ids=lambda m: f"F{m}")
def forced(request, monkeypatch):
    """Every eligible conv of the inference nets built in the test runs as Winograd F(m, 3)."""
    m = request.param
    monkeypatch.setattr(pydarknet.prepack, "winograd_tile", lambda op, shape: m if runs_as_winograd(op) else None)
    return m


def _count_winograd(net: InferenceNetwork) -> int:
    return sum(isinstance(layer, WinogradConvolution) for layer in net.net.layers)


@needs_prepacking
@pytest.mark.parametrize("name", MINI_NETS)
def test_mini_nets_every_layer_within_tolerance_with_every_conv_winograd(reference, forced, name):
    """README §9 against Darknet: every layer of the dog image, the region / softmax of every image."""
    folder = reference / "forward" / name
    net = load_inference_network(reference / "mini" / f"{name}.cfg", reference / "mini" / f"{name}.weights",
                                 winograd=True)
    assert _count_winograd(net) > 0
    expected = np.load(folder / "dog" / "layers.npz")
    with torch.inference_mode():
        outputs = net.net.forward_layers(network_input(reference, "dog", MINI_NETS[name]))
    for index, output in enumerate(outputs):
        key = f"layer_{index:03d}"
        if key in expected:
            assert_layer_close(output[0].numpy().reshape(expected[key].shape), expected[key], f"F({forced},3) {key}")
    for image in images_for(name):
        with torch.inference_mode():
            output = net(network_input(reference, image, MINI_NETS[name]))[0].numpy()
        if is_classifier(name):
            np.testing.assert_allclose(output.ravel(), np.load(folder / image / "softmax.npy"), atol=1e-5, rtol=0)
        else:
            assert_layer_close(output, np.load(folder / image / "region.npy"), f"F({forced},3) {name}/{image}")


@needs_prepacking
@pytest.mark.parametrize("name", YOLO_MINI_NETS)
def test_yolo_mini_nets_within_tolerance_with_every_conv_winograd(reference_yolo, forced, name):
    meta = read_json(reference_yolo / "forward" / name / "dog" / "meta.json")
    mini = reference_yolo / "mini"
    net = load_inference_network(mini / f"{name}.cfg", mini / f"{name}.weights", winograd=True)
    assert _count_winograd(net) > 0
    with torch.inference_mode():
        outputs = net(yolo_input(reference_yolo, meta))
    want = np.load(reference_yolo / "forward" / name / "dog" / "yolo.npz")
    for output, index in zip(outputs, yolo_layer_indices(net.net)):
        assert_layer_close(output[0].numpy(), want[f"yolo_{index:03d}"], f"F({forced},3) {name} yolo_{index}",
                           rel=YOLO_MINI_REL.get(name, 1e-4))


def _assert_full_size_close(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """README §9: abs 1e-3 on x, y, objectness and classes (entries 0, 1, 4..), rel 1e-3 on the raw w, h
    (plus 1e-4 of their max, as tests/test_zoo_forward.py: a relative error means nothing for logits near 0)."""
    assert got.shape == want.shape, what
    probabilities = np.r_[0, 1, 4:want.shape[1]]
    np.testing.assert_allclose(got[:, probabilities], want[:, probabilities], rtol=0, atol=FULL_SIZE_ABS, err_msg=what)
    wh = want[:, 2:4]
    np.testing.assert_allclose(got[:, 2:4], wh, rtol=FULL_SIZE_REL, atol=1e-4 * np.abs(wh).max(), err_msg=what)


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@needs_prepacking
@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov2-tiny-voc", "yolov2-voc"])
def test_full_size_region_nets_within_tolerance_with_the_rules_winograd(reference, weights_cache, name):
    cfg = reference / "darknet" / "cfg" / f"{name}.cfg"
    net = load_inference_network(cfg, decompressed_weights(reference, name, weights_cache), winograd=True)
    assert _count_winograd(net) == RULE_WINOGRAD_LAYERS[name]
    for image in images_for(name):
        with torch.inference_mode():
            output = net(network_input(reference, image, FULL_NETS[name]))[0].numpy()
        _assert_full_size_close(output, np.load(reference / "forward" / name / image / "region.npy"), f"{name}/{image}")


@needs_prepacking
@pytest.mark.slow
def test_full_size_yolov4_tiny_within_tolerance_with_the_rules_winograd(reference_yolo, weights_cache):
    meta = read_json(reference_yolo / "forward" / "yolov4-tiny" / "dog" / "meta.json")
    net = InferenceNetwork(yolo_network(reference_yolo, meta, weights_cache), in_place=True, winograd=True)
    assert _count_winograd(net) == RULE_WINOGRAD_LAYERS["yolov4-tiny"]
    with torch.inference_mode():
        outputs = net(yolo_input(reference_yolo, meta))
    want = np.load(reference_yolo / "forward" / "yolov4-tiny" / "dog" / "yolo.npz")
    for output, index in zip(outputs, yolo_layer_indices(net.net)):
        _assert_full_size_close(output[0].numpy(), want[f"yolo_{index:03d}"], f"yolov4-tiny yolo_{index}")
