"""Post-training static int8 quantization of a Darknet net, calibrated on the user's images.

The net is exported to ONNX (`export.export_network`, batch norm folded; Darknet's -inf pool padding folded into
the MaxPool, `fold_pool_padding`), then onnxruntime's quantizer (`quantize_static`) rewrites it in QDQ form:
weights int8 per output channel (symmetric), activations uint8 with ranges taken from the calibration images.
The head stays float32: the conv(s) feeding each detection output and everything after them (region / [yolo]
decode ops), so the objectness and class scores are not rounded to 256 levels; so does the first conv
(`float_nodes`: its 3 input channels give int8 little to gain, and rounding there moves every later layer).

The graph depends on the runtime that reads it (`RECIPES`). onnxruntime fuses DequantizeLinear -> Conv ->
QuantizeLinear into a QLinearConv, so its graph rounds each conv's output before its leaky ReLU as well as
after it. OpenVINO fuses the leaky ReLU and the rounding after it into the conv (oneDNN post-ops) and keeps a
rounding between them as an f32 Convert / Subtract pass over the map: its graph rounds once, after the leaky
(`_round_after_activations`), and its max pools read int8.
Measured (2026-12-07, AMD EPYC, 2 AVX2 cores without VNNI, loaded by other jobs: ratios to OpenCV DNN 4.x's batch-1
time, interleaved in one process with 0.1 s between calls so that no runtime's spinning threads slow the next;
median / fastest call of 30-60; yolov2-voc / yolov2-tiny-voc at 416, calibrated on the pack's 6 images):
| int8 graph, runtime                                                | yolov2-voc  | yolov2-tiny-voc |
| before (max pools exported as slices + Max: float32), onnxruntime  | 0.79 / 0.69 | 0.91 / 0.91     |
| RECIPES["onnxruntime"], onnxruntime                                 | 0.67 / 0.62 | 0.69 / 0.64     |
| RECIPES["openvino"], OpenVINO 2026.4 (the default where installed) | 0.61 / 0.54 | 0.59 / 0.51     |
| pydarknet fp32 (the same run)                                      | 0.83 / 0.92 | 0.75 / 0.92     |
Also measured on yolov2-voc (interleaved without the pause, so about +-0.1): OpenVINO on onnxruntime's graph
0.53-0.62 (f32 Convert / Subtract passes left), with int8 activations symmetric (no zero point) 0.55 (but the
demo net's boxes move: IoU 0.48, probabilities 0.054 off), NNCF 3.4's own quantization (performance preset,
the same float32 layers) 0.51-0.65, no faster than this graph: not a dependency; the first conv int8 too:
slower on both runtimes. onnxruntime: its pools in int8 no faster; int8 activations (S8S8), per-tensor
weights, no thread spinning within the noise. What bounds int8 here: 85-90 % of OpenVINO's time is its int8 3x3
convs (oneDNN jit_avx2_I8: vpmaddubsw + vpmaddwd, no VNNI); one conv at yolov2-voc's shapes, int8 against f32
(OpenVINO, 2 threads, loaded): 1280->1024 at 13x13 63 vs 40 GOP/s, 64->128 at 104x104 41 vs 27 GOP/s, i.e.
1.5x; onnxruntime's MLAS int8 36 vs 49. OpenCV runs its 3x3 convs as fp32 Winograd (2.25x fewer multiplies),
so int8 direct convolution on AVX2 gains about 1.5-2x over it at best.
Accuracy on the demo net (tests/test_inference_accuracy.py: 100 calibration images; the first 20 validation
images at user level): OpenVINO's graph with 0.0001st / 99.9999th percentile ranges: mAP@0.5 83.76 % (fp32
84.05 %), worst IoU 0.955, probabilities within 0.011; onnxruntime's with min / max ranges: 83.96 %, 0.933, 0.030.
The 20-image bar rests on a few borderline boxes: OpenVINO's graph with min / max ranges gave IoU 0.79, with
the 99.99th, 99.995th or 99.9995th percentile 0.70, 0.88, 0.69 (mAP within 1 point every time), and
onnxruntime's graph with pools in int8 0.68.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data.files import read_list
from .errors import DarknetError, DataError
from .export import INPUT_NAME, export_network
from .image import load_image, network_input

@dataclass(frozen=True)
class Recipe:
    """How the graph for one runtime is quantized (measured: the module docstring).

    `ops`: the ops that get int8 inputs: the convs (weights too), their leaky ReLU, and with "MaxPool" the max
    pools (route / upsample / shortcut and the other activations stay float32). `percentile`: activation
    ranges from the (100 - p)th to the pth percentile of each map over the calibration images; None: min / max.
    `round_conv_outputs`: round each conv's output before its activation as well as after it."""
    ops: tuple[str, ...]
    percentile: float | None
    round_conv_outputs: bool


RECIPES = {
    # its QLinearConv rounds the conv's output; its pools in int8 measured no faster, and moved a box of the demo
    "onnxruntime": Recipe(("Conv", "LeakyRelu"), None, True),
    # it fuses the leaky and the next rounding into the conv; pools run int8 between int8 convs
    "openvino": Recipe(("Conv", "LeakyRelu", "MaxPool"), 99.9999, False),
}
ACTIVATION_OPS = {"LeakyRelu"}   # the quantized ops that follow a conv
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
    producers = _producers(model.graph)
    head, todo = [], [output.name for output in model.graph.output]
    while todo:
        node = producers.get(todo.pop())
        if node is None or node.name in head:
            continue
        head.append(node.name)
        if node.op_type != "Conv":
            todo.extend(node.input)
    return [first_conv, *head]


def quantize_network(net, calibration: Calibration, runtime: str = "onnxruntime") -> bytes:
    """`net` (a Darknet) as an ONNX model with an int8 trunk, calibrated on the images of `calibration`, for
    `runtime` ("onnxruntime" or "openvino": see the module docstring)."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise DarknetError("precision int8 needs onnx and onnxruntime (its quantizer): "
                           "pip install 'pydarknet[int8]'") from None

    recipe = RECIPES[runtime]
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
    fold_pool_padding(model)
    with tempfile.TemporaryDirectory() as scratch, _quiet_quantizer():
        quantized = Path(scratch) / "int8.onnx"
        quantize_static(model, quantized, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes(model), op_types_to_quantize=list(recipe.ops),
                        **_calibration(recipe, CalibrationMethod))
        if recipe.round_conv_outputs:
            return quantized.read_bytes()
        model = onnx.load(quantized)
    _round_after_activations(model.graph)
    return model.SerializeToString()


def fold_pool_padding(model) -> None:
    """Fold each Pad of -inf (spatial only) that a MaxPool alone reads into the MaxPool's `pads`, whose padded
    cells never win the max: the same values, without an infinite map between the convs."""
    import onnx

    graph = model.graph
    producers = _producers(graph)
    readers = _readers(graph)
    for pool in [node for node in graph.node if node.op_type == "MaxPool"]:
        pad = producers.get(pool.input[0])
        if (pad is None or pad.op_type != "Pad" or len(pad.input) != 3 or readers[pad.output[0]] != 1
                or any(attribute.name == "pads" and any(attribute.ints) for attribute in pool.attribute)):
            continue
        pads, fill = (_constant_value(model, producers, name) for name in pad.input[1:])
        if fill is None or pads is None or fill.item() != -np.inf or pads[[0, 1, 4, 5]].any():
            continue
        spatial = [*pads[2:4].tolist(), *pads[6:8].tolist()]   # ONNX's pads: (N, C, H, W) begins, then ends
        kept = [attribute for attribute in pool.attribute if attribute.name != "pads"]
        del pool.attribute[:]
        pool.attribute.extend([*kept, onnx.helper.make_attribute("pads", spatial)])
        pool.input[0] = pad.input[0]
        graph.node.remove(pad)


def _constant_value(model, producers: dict, name: str) -> np.ndarray | None:
    """The value of tensor `name` where it depends on constants only (the exporter computes a Pad's pads from
    constants, through ops that keep the batch size dynamic), else None."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    needed, todo = set(), [name]
    while todo:
        tensor = todo.pop()
        if not tensor or tensor in initializers or tensor in needed:
            continue
        if tensor not in producers:
            return None   # a graph input
        needed.add(tensor)
        todo.extend(producers[tensor].input)
    nodes = [node for node in model.graph.node if needed & set(node.output)]   # in graph order
    graph = onnx.helper.make_graph(nodes, "constant", [], [onnx.helper.make_empty_tensor_value_info(name)],
                                   [initializers[tensor] for node in nodes for tensor in node.input
                                    if tensor in initializers])
    evaluator = ReferenceEvaluator(onnx.helper.make_model(graph, opset_imports=model.opset_import))
    return np.asarray(evaluator.run(None, {})[0])


def _producers(graph) -> dict:
    """The node that writes each tensor."""
    return {output: node for node in graph.node for output in node.output}


def _readers(graph) -> dict[str, int]:
    """How many node inputs read each tensor."""
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    return readers


def _calibration(recipe: Recipe, methods) -> dict:
    """`quantize_static`'s keywords for `recipe`'s activation ranges."""
    if recipe.percentile is None:
        return {"calibrate_method": methods.MinMax}
    return {"calibrate_method": methods.Percentile, "extra_options": {"CalibPercentile": recipe.percentile}}


def _round_after_activations(graph) -> None:
    """Remove each QuantizeLinear -> DequantizeLinear pair between a Conv and the activation that alone reads
    it, so the conv's output is rounded once, after its activation (the graph OpenVINO fuses into one int8 conv)."""
    producers = _producers(graph)
    readers = _readers(graph)
    rounding = []
    for activation in (node for node in graph.node if node.op_type in ACTIVATION_OPS):
        dequantize = producers.get(activation.input[0])
        quantize = dequantize is not None and producers.get(dequantize.input[0])
        if (quantize and dequantize.op_type == "DequantizeLinear" and quantize.op_type == "QuantizeLinear"
                and getattr(producers.get(quantize.input[0]), "op_type", None) == "Conv"
                and readers[quantize.output[0]] == readers[dequantize.output[0]] == 1):
            activation.input[0] = quantize.input[0]
            rounding += [quantize, dequantize]
    for node in rounding:
        graph.node.remove(node)


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer advises its own pre-processing on the root logger at every call (ours is a folded
    export already), and numpy warns on the quantization parameters it computes for a -inf map no int8 op reads
    (a Pad that `fold_pool_padding` leaves), and its percentile calibration prints its progress on stdout, where
    `detector test` prints its detections: keep all three from the user."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.filterwarnings("ignore", category=RuntimeWarning, module="onnxruntime")
            yield
    finally:
        logging.disable(previous)
