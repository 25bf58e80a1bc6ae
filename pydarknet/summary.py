"""What Darknet prints about a network: the layer table of a loaded cfg and the weights messages.

`layer_table(net)` gives, line for line, the table DARKNET(parser.c:parse_network_cfg) writes on
stderr while it builds a net: the header, then `"%5d "` and the line each `make_<kind>_layer`
prints (convolutional_layer.c, maxpool_layer.c, route_layer.c, ...), with the same printf widths
and the same BFLOPs arithmetic. tests/fixtures/layer_tables/ holds the C Darknet's own tables.
"""
from __future__ import annotations

import os
from typing import Callable

from .layers.conv import ConnectedLayer, ConvolutionalLayer
from .layers.pool import AvgPoolLayer, MaxPoolLayer
from .layers.region import RegionLayer, YoloLayer
from .layers.softmax import SoftmaxLayer
from .layers.structure import CostLayer, DropoutLayer, ReorgLayer, RouteLayer, ShortcutLayer, UpsampleLayer
from .network import Darknet
from .registry import Shape

HEADER = "layer     filters    size              input                output"


def _dims(shape: Shape) -> str:
    return f"{shape.w:4d} x{shape.h:4d} x{shape.c:4d}"


def _conv(net: Darknet, index: int, before: Shape) -> str:
    conv = net.layers[index].op
    size, stride, groups = conv.kernel_size[0], conv.stride[0], conv.groups
    after = net.shapes[index]
    # DARKNET(convolutional_layer.c:make_convolutional_layer): 2*n*size*size*c/groups*out_h*out_w in double
    bflops = 2.0 * conv.out_channels * size * size * before.c / groups * after.h * after.w / 1e9
    return (f"conv  {conv.out_channels:5d} {size:2d} x{size:2d} /{stride:2d}  {_dims(before)}   ->  "
            f"{_dims(after)}  {bflops:5.3f} BFLOPs")


def _maxpool(net: Darknet, index: int, before: Shape) -> str:
    pool = net.layers[index]
    return f"max          {pool.size} x {pool.size} / {pool.stride}  {_dims(before)}   ->  {_dims(net.shapes[index])}"


def _avgpool(net: Darknet, index: int, before: Shape) -> str:
    return f"avg                     {_dims(before)}   ->  {before.c:4d}"


def _connected(net: Darknet, index: int, before: Shape) -> str:
    return f"connected                            {before.size:4d}  ->  {net.shapes[index].size:4d}"


def _route(net: Darknet, index: int, before: Shape) -> str:
    return "route " + "".join(f" {source}" for source in net.sources[index])


def _reorg(net: Darknet, index: int, before: Shape) -> str:
    stride = net.layers[index].stride
    return f"reorg              /{stride:2d}  {_dims(before)}   ->  {_dims(net.shapes[index])}"


def _shortcut(net: Darknet, index: int, before: Shape) -> str:
    source = net.sources[index][1]
    # DARKNET(shortcut_layer.c:make_shortcut_layer): the `from` layer's dims, then the previous layer's
    return f"res  {source:3d}                {_dims(net.shapes[source])}   ->  {_dims(before)}"


def _upsample(net: Darknet, index: int, before: Shape) -> str:
    stride = net.layers[index].stride
    return f"upsample           {stride:2d}x  {_dims(before)}   ->  {_dims(net.shapes[index])}"


def _dropout(net: Darknet, index: int, before: Shape) -> str:
    probability = net.layers[index].dropout.p
    return f"dropout       p = {probability:.2f}               {before.size:4d}  ->  {before.size:4d}"


def _softmax(net: Darknet, index: int, before: Shape) -> str:
    return f"softmax                                        {before.size:4d}"


def _cost(net: Darknet, index: int, before: Shape) -> str:
    return f"cost                                           {before.size:4d}"


_LINES: dict[type, Callable[[Darknet, int, Shape], str]] = {
    ConvolutionalLayer: _conv, MaxPoolLayer: _maxpool, AvgPoolLayer: _avgpool, ConnectedLayer: _connected,
    RouteLayer: _route, ReorgLayer: _reorg, ShortcutLayer: _shortcut, UpsampleLayer: _upsample,
    DropoutLayer: _dropout, SoftmaxLayer: _softmax, CostLayer: _cost,
    RegionLayer: lambda *_: "detection", YoloLayer: lambda *_: "yolo",
}


def layer_table(net: Darknet) -> list[str]:
    """Darknet's layer table for `net`: the header line, then one line per layer (no newlines)."""
    lines = [HEADER]
    before = Shape(net.channels, net.height, net.width)
    for index, layer in enumerate(net.layers):
        lines.append(f"{index:5d} {_LINES[type(layer)](net, index, before)}")
        # DARKNET(parser.c:parse_network_cfg): each layer is given the previous layer's output as input
        before = net.shapes[index]
    return lines


def loading_weights_line(path: str | os.PathLike) -> str:
    """DARKNET(parser.c:load_weights_upto): `Loading weights from <file>...` then `Done!` once read."""
    return f"Loading weights from {path}...Done!"


def saving_weights_line(path: str | os.PathLike) -> str:
    """DARKNET(parser.c:save_weights_upto): printed before every weights file is written."""
    return f"Saving weights to {path}"
