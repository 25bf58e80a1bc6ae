"""ONNX export of a Darknet net, optionally with the region decode, so the graph returns boxes.

The graph takes ``image``: (batch, channels, height, width) float32, the letterboxed [0, 1] input that
`predict.network_input` makes (the batch size is dynamic). Its outputs:

* plain: the net's output as `Darknet.forward` gives it, named ``region`` (B, A, 5+C, H, W) for a
  detector and ``output`` otherwise (e.g. (B, classes, 1, 1) for a classifier);
* ``decode=True`` (detectors): ``boxes`` (B, A*H*W, 4) cxcywh relative to the network input, i.e.
  BEFORE Darknet's letterbox correction (`decode._correct_region_boxes` maps them to the original
  image; the graph stays independent of the image size), ``objectness`` (B, A*H*W) and
  ``probabilities`` (B, A*H*W, C), thresholded nowhere. Box ``a*H*W + y*W + x`` is anchor ``a`` at
  cell (y, x), Darknet's order. Probabilities are objectness x P(class | object) for a softmax head
  and, for a WordTree head, the absolute hierarchy probabilities P(node) (tree.c:hierarchy_predictions),
  which is what Darknet's top-prediction descent reads (the probability it reports is the objectness).

>>> export_onnx("yolov2-voc.cfg", "yolov2-voc.weights", "yolov2-voc.onnx", decode=True)  # doctest: +SKIP
"""
from __future__ import annotations

import io
import os
import warnings

import torch
from torch import Tensor, nn

from .decode import COORDS
from .fuse import fuse_for_inference
from .network import Darknet, load_network, require_region
from .tree import WordTree

DEFAULT_OPSET = 18
INPUT_NAME = "image"
DECODED_OUTPUTS = ("boxes", "objectness", "probabilities")


def decode_region(region: Tensor, anchors: Tensor, tree: WordTree | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """A region output as per-anchor-cell boxes and probabilities (the module docstring has the layout).

    region: (B, A, 5+C, H, W) from `RegionLayer`; anchors: (A, 2) anchor w, h in grid cells.
    Returns boxes (B, N, 4) cxcywh relative to the network input, objectness (B, N), probabilities
    (B, N, C), N = A*H*W. The same numbers as `decode.get_region_detections` with the image the size of
    the network input and thresh 0 (up to float32 rounding).
    """
    batch, num, _, h, w = region.shape
    cells_x = torch.arange(w, dtype=region.dtype, device=region.device)                     # [W]
    cells_y = torch.arange(h, dtype=region.dtype, device=region.device).unsqueeze(1)        # [H, 1]
    x = (cells_x + region[:, :, 0]) / w                                                     # [B, A, H, W]
    y = (cells_y + region[:, :, 1]) / h
    # DIVERGES: exp and the anchor product in float32 (region_layer.c:get_region_box: double), <= 1 ulp apart
    box_w = torch.exp(region[:, :, 2]) * anchors[:, 0].view(num, 1, 1) / w
    box_h = torch.exp(region[:, :, 3]) * anchors[:, 1].view(num, 1, 1) / h
    boxes = torch.stack((x, y, box_w, box_h), dim=-1).reshape(batch, num * h * w, 4)
    objectness = region[:, :, COORDS]                                                       # [B, A, H, W]
    class_probs = region[:, :, COORDS + 1:]                                                 # [B, A, C, H, W]
    if tree is None:
        # DARKNET(region_layer.c:get_region_detections): prob = objectness * P(class), float32
        probs = objectness.unsqueeze(2) * class_probs
    else:
        probs = tree.hierarchy_predictions(class_probs, dim=2)   # the gather form under export
    classes = class_probs.shape[2]
    probs = probs.permute(0, 1, 3, 4, 2).reshape(batch, num * h * w, classes)
    return boxes, objectness.reshape(batch, num * h * w), probs


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
