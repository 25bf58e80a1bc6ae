"""What Darknet prints about a network: the layer table of a loaded cfg and the weights messages.

`layer_table(net)` gives, line for line, the table DARKNET(parser.c:parse_network_cfg) writes on
stderr while it builds a net: the header, then `"%5d "` and the line each `make_<kind>_layer`
prints (convolutional_layer.c, maxpool_layer.c, route_layer.c, ...), with the same printf widths
and the same BFLOPs arithmetic; each layer class writes its own line (`DarknetLayer.summary_line`).
tests/fixtures/layer_tables/ holds the C Darknet's own tables.
"""
from __future__ import annotations

import os

from .network import Darknet
from .registry import Shape

HEADER = "layer     filters    size              input                output"


def layer_table(net: Darknet) -> list[str]:
    """Darknet's layer table for `net`: the header line, then one line per layer (no newlines)."""
    lines = [HEADER]
    before = Shape(net.channels, net.height, net.width)
    for index, layer in enumerate(net.layers):
        lines.append(f"{index:5d} {layer.summary_line(net, index, before)}")
        # DARKNET(parser.c:parse_network_cfg): each layer is given the previous layer's output as input
        before = net.shapes[index]
    return lines


def loading_weights_line(path: str | os.PathLike) -> str:
    """DARKNET(parser.c:load_weights_upto): `Loading weights from <file>...` then `Done!` once read."""
    return f"Loading weights from {path}...Done!"


def saving_weights_line(path: str | os.PathLike) -> str:
    """DARKNET(parser.c:save_weights_upto): printed before every weights file is written."""
    return f"Saving weights to {path}"
