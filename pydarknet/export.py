"""ONNX export of a Darknet net, optionally with the region decode, so the graph returns boxes.

The graph takes ``image``: (batch, channels, height, width) float32, the letterboxed [0, 1] input that
`predict.network_input` makes (the batch size is dynamic). Its outputs:

* plain: the net's output as `Darknet.forward` gives it, named ``region`` (B, A, 5+C, H, W) for a
  detector and ``output`` otherwise (e.g. (B, classes, 1, 1) for a classifier);
* ``decode=True`` (detectors): ``boxes`` (B, A*H*W, 4), ``objectness`` (B, A*H*W) and ``probabilities``
  (B, A*H*W, C) as `heads.region.detections.decode_region` gives them: thresholded nowhere, boxes relative
  to the network input, BEFORE Darknet's letterbox correction (`detections.correct_boxes` maps them to
  the original image), so the graph stays independent of the image size.

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


def _output_names(net: Darknet, decode: bool) -> list[str]:
    if decode:
        return list(DECODED_OUTPUTS)
    return ["region"] if net.region is not None and net.layers[-1] is net.region else ["output"]


def export_network(net: Darknet, out: str | os.PathLike | io.BytesIO, decode: bool = False,
                   opset: int = DEFAULT_OPSET) -> None:
    """Write `net` (batch norm folded) as an ONNX model to a path or a binary buffer; `net` is unchanged."""
    fused = fuse_for_inference(net, channels_last=False).cpu()
    module = DecodedRegion(fused) if decode else fused
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
