"""precision "int8" (post-training quantization calibrated on the user's images) and precision "fast".

The int8 accuracy bar on a trained net (mAP within 1 point of fp32, the same objects on 20 images) is in
test_inference_accuracy.py, beside bf16's; here: the calibration inputs, what stays float32, that a net with
Darknet's -inf padded max pool still quantizes (regression: its Pad's -inf range collapsed every later value to
one level), the one-line errors, and which precision "fast" picks.
"""
from __future__ import annotations

import importlib.util
import io
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from reference import MINI_NETS, mini_network, network_input

from pydarknet import DarknetError, load_inference_network
from pydarknet.cli import main
from pydarknet.export import INPUT_NAME, export_network
from pydarknet.inference import InferenceNetwork, fast_precision
from pydarknet.layers.conv import ConvolutionalLayer
from pydarknet.quantize import calibration_paths, float_nodes, fold_pool_padding, quantize_network

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
TINY = "mini-yolov2-tiny-voc"   # its 6th max pool is size 2 stride 1: padded with -inf (DARKNET maxpool_layer.c)
# mini-yolov2-tiny-voc (random weights) on dog.jpg, calibrated on 4 images: 0.106 measured with OpenVINO and
# onnxruntime; 0.82 with its -inf Pad quantized too (the regression)
INT8_PROBABILITY_ABS = 0.15


@pytest.fixture(scope="module")
def images(reference) -> list[str]:
    return [str(reference / "darknet" / "data" / f"{name}.jpg") for name in ("dog", "horses", "person", "eagle")]


def test_calibration_is_a_list_file_or_the_paths(tmp_path, images):
    listing = tmp_path / "calibration.txt"
    listing.write_text("\n".join(images) + "\n")
    assert calibration_paths(listing) == images
    assert calibration_paths(str(listing)) == images
    assert calibration_paths(tuple(images)) == images


@pytest.mark.parametrize("empty", ["file", "list"])
def test_no_calibration_image_is_one_clear_error(tmp_path, empty):
    listing = tmp_path / "empty.txt"
    listing.write_text("")
    with pytest.raises(DarknetError, match="empty.txt: list file contains no paths|calibration: an empty list of images"):
        calibration_paths(listing if empty == "file" else [])


def test_int8_without_calibration_is_one_clear_error(reference):
    with pytest.raises(DarknetError, match=r"precision int8 needs calibration images: .* -calibration LIST"):
        InferenceNetwork(mini_network(reference, TINY), precision="int8")


def test_int8_without_calibration_on_the_command_line_is_one_line(reference, tmp_path):
    result = CliRunner().invoke(main, ["detector", "test", str(reference / "darknet" / "cfg" / "voc.data"),
                                       str(reference / "mini" / f"{TINY}.cfg"), str(reference / "mini" / f"{TINY}.weights"),
                                       str(reference / "darknet" / "data" / "dog.jpg"), "-out", str(tmp_path / "pred"),
                                       "-precision", "int8"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("Error: precision int8 needs calibration images")
    assert "Traceback" not in result.output


def test_first_conv_and_head_stay_float32(reference, images):
    import onnx

    net = mini_network(reference, TINY)
    exported = io.BytesIO()
    export_network(net, exported)
    model = onnx.load_from_string(exported.getvalue())
    kept = set(float_nodes(model))
    kinds = {node.name: node.op_type for node in model.graph.node}
    convs = [name for name, kind in kinds.items() if kind == "Conv"]
    assert convs[0] in kept and convs[-1] in kept and not kept & set(convs[1:-1])
    assert {"Softmax", "Sigmoid"} <= {kinds[name] for name in kept}   # the region layer's ops

    quantized = onnx.load_from_string(quantize_network(net, images))
    producers = {output: node for node in quantized.graph.node for output in node.output}
    int8_weights = [node.name for node in quantized.graph.node if node.op_type == "Conv"
                    and getattr(producers.get(node.input[1]), "op_type", None) == "DequantizeLinear"]
    assert int8_weights == convs[1:-1]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_int8_region_probabilities_stay_near_fp32(reference, images, backend):
    openvino = importlib.util.find_spec("openvino") is not None
    if backend == "openvino" and not openvino:
        pytest.skip("openvino is not installed")
    x = network_input(reference, "dog", MINI_NETS[TINY])
    fp32 = load_inference_network(reference / "mini" / f"{TINY}.cfg", reference / "mini" / f"{TINY}.weights")
    int8 = InferenceNetwork(mini_network(reference, TINY), precision="int8", backend=backend, calibration=images)
    runtime = backend if backend != "torch" else "openvino" if openvino else "onnxruntime"   # the faster one
    assert int8.precision == "int8" and int8.backend == runtime
    with torch.inference_mode():
        want, got = fp32(x), int8(x)
    probabilities = np.r_[4:want.shape[2]]   # objectness and classes
    difference = (got - want)[:, :, probabilities].abs().max()
    assert 0 < difference <= INT8_PROBABILITY_ABS


def test_darknet_pool_padding_folds_into_the_maxpool_exactly(reference):
    import onnx
    import onnxruntime

    net = mini_network(reference, TINY)
    exported = io.BytesIO()
    export_network(net, exported)
    model = onnx.load_from_string(exported.getvalue())
    fold_pool_padding(model)
    assert "Pad" not in {node.op_type for node in model.graph.node}
    x = network_input(reference, "dog", MINI_NETS[TINY])
    session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        np.testing.assert_allclose(session.run(None, {INPUT_NAME: x.numpy()})[0], net(x).numpy(), rtol=1e-4, atol=1e-4)


def test_each_runtime_gets_the_graph_it_runs_in_int8(reference, images):
    """Max pools are exported as MaxPool nodes and read int8 (regression: as slices and maxima they ran in float32);
    onnxruntime's graph rounds each int8 conv's output (its QLinearConv), OpenVINO's rounds it only after the
    leaky ReLU (which OpenVINO fuses into the conv; a rounding before it stayed an f32 pass over the map)."""
    import onnx

    net = mini_network(reference, TINY)
    convs = sum(isinstance(layer, ConvolutionalLayer) for layer in net.layers)
    for runtime, rounded_convs in [("onnxruntime", convs - 1), ("openvino", 0)]:   # the head's conv is float32
        graph = onnx.load_from_string(quantize_network(net, images, runtime)).graph
        producers = {output: node.op_type for node in graph.node for output in node.output}
        inputs = [[producers.get(name) for name in node.input] for node in graph.node if node.op_type == "MaxPool"]
        assert inputs == [["DequantizeLinear"]] * 6, runtime   # the 6th: size 2, stride 1, its padding folded in
        assert sum(producers.get(node.input[0]) == "Conv" for node in graph.node
                   if node.op_type == "QuantizeLinear") == rounded_convs, runtime


def test_quantizing_prints_nothing_on_stdout(reference, images, capfd):
    """stdout is where `detector test` prints its detections (regression: the percentile calibration printed its
    progress there)."""
    quantize_network(mini_network(reference, TINY), images, "openvino")
    assert capfd.readouterr().out == ""


@pytest.mark.parametrize("device, bf16_hardware, calibration, backend, want", [
    ("cpu", True, None, "torch", "bf16"),
    ("cpu", True, ["a.jpg"], "torch", "bf16"),
    ("cpu", True, ["a.jpg"], "onnxruntime", "int8"),   # onnxruntime has no bf16 path
    ("cpu", False, ["a.jpg"], "torch", "int8"),
    ("cpu", False, None, "torch", "fp32"),
    ("cpu", False, None, "openvino", "fp32"),
    ("cuda", False, ["a.jpg"], "torch", "bf16"),
])
def test_fast_picks_the_fastest_precision_this_device_runs(monkeypatch, device, bf16_hardware, calibration, backend,
                                                          want):
    monkeypatch.setattr("pydarknet.inference.cpu_runs_bf16", lambda: bf16_hardware)
    assert fast_precision(torch.device(device), backend, calibration) == want


def test_fast_with_calibration_on_an_avx2_cpu_builds_int8(reference, images, monkeypatch):
    monkeypatch.setattr("pydarknet.inference.cpu_runs_bf16", lambda: False)
    net = InferenceNetwork(mini_network(reference, TINY), precision="fast", backend="onnxruntime", calibration=images)
    assert (net.precision, net.backend) == ("int8", "onnxruntime")
    assert InferenceNetwork(mini_network(reference, TINY), precision="fast").precision == "fp32"


def test_int8_without_onnxruntime_is_one_clear_error(reference, images, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)   # as if it were not installed
    with pytest.raises(DarknetError, match=r"precision int8 needs onnx and onnxruntime .*pydarknet\[int8\]"):
        InferenceNetwork(mini_network(reference, TINY), precision="int8", calibration=images)
