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
    """Save the weights of the first COUNT layers (e.g. darknet19_448.conv.23) as `darknet partial`."""
    from ..summary import saving_weights_line
    from ..weights import save_weights

    net = open_network(cfg, weights, "cpu", trained=False)
    log.info(saving_weights_line(output))
    save_weights(net, output, cutoff=count, seen=0)  # DARKNET(darknet.c:partial): load_network(..., 1) clears seen


@main.group("export", cls=DarknetGroup)
def export() -> None:
    """Export a net with its weights to another format."""


@export.command("onnx")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("output")
@click.option("--decode", is_flag=True, help="Add the region decode: the ONNX outputs are boxes and probabilities.")
@click.option("--opset", type=int, default=None, help="ONNX opset (default: pydarknet.export.DEFAULT_OPSET).")
def export_onnx_command(cfg, weights, output, decode, opset) -> None:
    """Write CFG with WEIGHTS as an ONNX model OUTPUT (the region output, or with --decode boxes and probs)."""
    from ..export import DEFAULT_OPSET, export_onnx

    export_onnx(cfg, weights, output, decode=decode, opset=opset or DEFAULT_OPSET)
    log.info(f"Saved {output}")
