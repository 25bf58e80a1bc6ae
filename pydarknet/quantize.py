"""Post-training static int8 quantization of a Darknet net, calibrated on the user's images.

The net is exported to ONNX (`export.export_network`, batch norm folded), then onnxruntime's quantizer
(`quantize_static`) rewrites it in QDQ form: weights int8 per output channel (symmetric), activations uint8
with ranges taken from the calibration images (min / max of each feature map over them). The head stays
float32: the conv(s) feeding each detection output and everything after them (region / [yolo] decode ops),
so the objectness and class scores are not rounded to 256 levels; so does the first conv (`float_nodes`).
Measured on the demo net (100 calibration images): mAP@0.5 84.05 % fp32, 83.96 % int8; the first conv
in int8 too: 84.02 %, but one box of the first 20 validation images moved (IoU 0.50 with fp32's).

The QDQ graph is what an int8 runtime reads: onnxruntime (the default) runs each QuantizeLinear /
DequantizeLinear pair around a conv as an int8 QLinearConv; OpenVINO compiles it into its int8 convolution.

>>> model = quantize_network(net, ["a.jpg", "b.jpg"])        # ONNX bytes, int8 trunk   # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .data.files import read_list
from .errors import DarknetError, DataError
from .export import INPUT_NAME, export_network
from .image import load_image, network_input

# The ops that get int8 inputs: the convs (weights too), their leaky ReLU and the max pools, so that the runtime
# keeps int8 from one conv to the next (Conv only: one more of the demo's first 20 validation images differs
# from fp32 at user level). Route / upsample / shortcut and the other activations stay float32, and so does Pad:
# DARKNET(maxpool_layer.c:forward_maxpool_layer) pads with -FLT_MAX (the export: a Pad of -inf before a size 2
# stride 1 pool), whose range of -inf, quantized, collapses every later value to one level (a max pool is
# quantized only where its input already is).
QUANTIZED_OPS = ["Conv", "LeakyRelu", "MaxPool"]
Calibration = str | os.PathLike | Sequence[str | os.PathLike]


def calibration_paths(calibration: Calibration) -> list[str]:
    """The image paths `calibration` names: a list file (one image path a line, as Darknet's train/valid lists)
    or the paths themselves. No image is a DataError."""
    if isinstance(calibration, (str, os.PathLike)):
        return read_list(calibration)   # a DataError naming the file when it lists nothing
    paths = [os.fspath(path) for path in calibration]
    if not paths:
        raise DataError("calibration: an empty list of images")
    return paths


def calibration_inputs(paths: Sequence[str], width: int, height: int) -> Iterator[np.ndarray]:
    """Each image as pjreddie's `detect` feeds it: (1, 3, height, width) float32, letterboxed (DIVERGES: for
    a net run with AlexeyAB's resize too; the ranges then come from the same pixels plus gray borders)."""
    for path in paths:
        yield network_input(load_image(path), width, height)[None]


def float_nodes(model) -> list[str]:
    """The names of the ONNX nodes kept in float32: the first Conv (on the image: its 3 input channels give int8
    little to gain, and rounding there moves every later layer) and the head: from each graph output back to
    the Conv that feeds it, that Conv included (route / reshape / decode ops between them too)."""
    first_conv = next(node.name for node in model.graph.node if node.op_type == "Conv")
    producers = {output: node for node in model.graph.node for output in node.output}
    head, todo = [], [output.name for output in model.graph.output]
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in head:
            continue
        head.append(node.name)
        if node.op_type != "Conv":
            todo.extend(node.input)
    return [first_conv, *head]


def quantize_network(net, calibration: Calibration) -> bytes:
    """`net` (a Darknet) as an ONNX model with an int8 trunk, calibrated on the images of `calibration`."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise DarknetError("precision int8 needs onnx and onnxruntime (its quantizer): "
                           "pip install 'pydarknet[int8]'") from None

    paths = calibration_paths(calibration)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.inputs = calibration_inputs(paths, net.width, net.height)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.inputs, None)
            return None if x is None else {INPUT_NAME: x}

    exported = io.BytesIO()
    export_network(net, exported)
    model = onnx.load_from_string(exported.getvalue())
    with tempfile.TemporaryDirectory() as scratch, _quiet_quantizer():
        quantized = Path(scratch) / "int8.onnx"
        quantize_static(model, quantized, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes(model),
                        op_types_to_quantize=QUANTIZED_OPS)
        return quantized.read_bytes()


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer advises its own pre-processing on the root logger at every call (ours is a folded
    export already), and numpy warns on the quantization parameters it computes for a -inf Pad that no int8 op
    reads (see QUANTIZED_OPS): keep both from the user."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnxruntime")
            yield
    finally:
        logging.disable(previous)
