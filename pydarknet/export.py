"""ONNX export of a Darknet net, optionally with its head's decode, so the graph returns boxes.

The graph takes ``image``: (batch, channels, height, width) float32, the [0, 1] network input that
`predict.network_input` makes (letterboxed or resized; the batch size is dynamic). Its outputs:

* plain: the net's output(s) as `Darknet.forward` gives them, named ``region`` (B, A, 5+C, H, W) for a
  [region] detector, ``yolo_<layer index>`` (B, A, 5+C, H, W) for each [yolo] layer (e.g. ``yolo_30``,
  ``yolo_37`` for yolov4-tiny), and ``output`` otherwise (e.g. (B, classes, 1, 1) for a classifier);
* ``decode=True`` (detectors): ``boxes`` (B, N, 4), ``objectness`` (B, N) and ``probabilities`` (B, N, C),
  thresholded nowhere, boxes cxcywh relative to the network input, BEFORE Darknet's letterbox / resize
  correction (`detections.correct_boxes`, `dialect.correct_yolo` map them to the original image), so the
  graph stays independent of the image size. [region]: `heads.region.detections.decode_region`, N = A*H*W.
  [yolo]: `heads.yolo.detections.decode_yolo` of every [yolo] layer, concatenated in network order, so box
  n is AlexeyAB's n-th candidate before its objectness threshold (cell-major within a layer, layers in
  order), N = sum of A*H*W.

>>> export_onnx("yolov2-voc.cfg", "yolov2-voc.weights", "yolov2-voc.onnx", decode=True)  # doctest: +SKIP
"""
from __future__ import annotations

import io
import os
import warnings

import torch
from torch import Tensor, nn

from .fuse import fuse_for_inference
from .heads.region.detections import decode_region
from .heads.yolo.detections import YoloDecode, decode_yolo
from .heads.yolo.layer import YoloLayer
from .network import Darknet, load_network, require_region

DEFAULT_OPSET = 18
INPUT_NAME = "image"
DECODED_OUTPUTS = ("boxes", "objectness", "probabilities")


class DecodedRegion(nn.Module):
    """A detector whose forward returns `decode_region`'s boxes, objectness and probabilities."""

    def __init__(self, net: nn.Module):
        super().__init__()
        require_region(net, "decoding")
        self.net = net
        self.train(net.training)   # a fused net refuses training mode, and so must this wrapper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        region = self.net.region
        return decode_region(self.net(x), region.anchors, region.tree)


class DecodedYolo(nn.Module):
    """A net with [yolo] layers whose forward returns `decode_yolo`'s boxes, objectness and probabilities of
    all its [yolo] layers, concatenated in network order (AlexeyAB's candidate order)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.decodes = [YoloDecode.of(net.layers[index]) for index in yolo_layer_indices(net)]
        if not self.decodes:
            raise ValueError(f"{net.cfg_path}: no [yolo] layer to decode")
        self.train(net.training)   # a fused net refuses training mode, and so must this wrapper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        outputs = self.net(x)
        outputs = [outputs] if isinstance(outputs, Tensor) else outputs
        # exact=False: exp and the anchor product in float32, <= 1 ulp from Darknet's double (coder.decode_boxes)
        parts = [decode_yolo(output, decode.anchors_wh, self.net.width, self.net.height, decode.new_coords)
                 for output, decode in zip(outputs, self.decodes)]
        return tuple(torch.cat(column, dim=1) for column in zip(*parts))   # [B, N, 4], [B, N], [B, N, C]


def yolo_layer_indices(net: nn.Module) -> list[int]:
    """The indices of the [yolo] layers of `net`, in network order (the outputs `Darknet.forward` returns)."""
    return [index for index, layer in enumerate(net.layers) if isinstance(layer, YoloLayer)]


def decoded_network(net: nn.Module) -> nn.Module:
    """`net` wrapped so that its forward returns the decoded boxes: `DecodedYolo` for [yolo] nets, else
    `DecodedRegion` (a CfgError for a net without a [region])."""
    return DecodedYolo(net) if yolo_layer_indices(net) else DecodedRegion(net)


def _output_names(net: Darknet, decode: bool) -> list[str]:
    if decode:
        return list(DECODED_OUTPUTS)
    yolo = yolo_layer_indices(net)
    if len(yolo) > 1 or yolo == [len(net.layers) - 1]:
        return [f"yolo_{index}" for index in yolo]
    return ["region"] if net.region is not None and net.layers[-1] is net.region else ["output"]


def export_network(net: Darknet, out: str | os.PathLike | io.BytesIO, decode: bool = False,
                   opset: int = DEFAULT_OPSET) -> None:
    """Write `net` (batch norm folded) as an ONNX model to a path or a binary buffer; `net` is unchanged."""
    fused = fuse_for_inference(net, channels_last=False).cpu()
    module = decoded_network(fused) if decode else fused
    names = _output_names(net, decode)
    example = torch.zeros(1, net.channels, net.height, net.width)
    with warnings.catch_warnings():
        # the TorchScript exporter: 4x faster to export these nets than the dynamo one, same graph
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")   # reorg's strided slices
        torch.onnx.export(module, (example,), out, input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *names]},
                          opset_version=opset, dynamo=False)


def export_onnx(cfg: str | os.PathLike, weights: str | os.PathLike, out_path: str | os.PathLike,
                decode: bool = False, opset: int = DEFAULT_OPSET) -> None:
    """Load a cfg and its weights and write the net as ONNX to `out_path` (see the module docstring)."""
    export_network(load_network(cfg, weights, "cpu"), out_path, decode, opset)
