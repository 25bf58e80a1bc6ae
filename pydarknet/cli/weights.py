"""`pydarknet partial` and `pydarknet export onnx`: weights files and exported models."""
from __future__ import annotations

import click

from .common import DarknetGroup, existing_file, log, main, open_network, shipped_file


@main.command("partial")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("output")
@click.argument("count", type=int)
def partial(cfg, weights, output, count) -> None:
    """Save the weights of the first COUNT layers (e.g. darknet19_448.conv.23, yolov4-tiny.conv.29) as
    `darknet partial`, with the header version of WEIGHTS and seen 0."""
    from ..summary import saving_weights_line
    from ..weights import save_weights

    net = open_network(cfg, weights, "cpu", trained=False)
    log.info(saving_weights_line(output))
    # DARKNET(darknet.c:partial): pjreddie's load_network(..., 1) clears seen; AlexeyAB's sets seen and
    # cur_iteration to 0, and its save_weights_upto writes seen = cur_iteration*batch*subdivisions = 0
    save_weights(net, output, cutoff=count, seen=0)


@main.group("export", cls=DarknetGroup)
def export() -> None:
    """Export a net with its weights to another format."""


@export.command("onnx")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("output")
@click.option("--decode", is_flag=True, help="Add the head's decode ([region] or every [yolo]): the ONNX outputs "
              "are boxes, objectness and probabilities.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: pydarknet.export.DEFAULT_OPSET).")
def export_onnx_command(cfg, weights, output, decode, opset) -> None:
    """Write CFG with WEIGHTS as an ONNX model OUTPUT (the head's output(s), or with --decode boxes and probs)."""
    from ..export import DEFAULT_OPSET, export_onnx

    export_onnx(cfg, weights, output, decode=decode, opset=opset or DEFAULT_OPSET)
    log.info(f"Saved {output}")
