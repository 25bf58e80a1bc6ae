"""`pydarknet partial`: weights files."""
from __future__ import annotations

import click

from .common import existing_file, log, main, open_network, shipped_file


@main.command("partial")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("output")
@click.argument("count", type=int)
def partial(cfg, weights, output, count) -> None:
    """Save the weights of the first COUNT layers (e.g. darknet19_448.conv.23) as `darknet partial`."""
    from ..summary import saving_weights_line
    from ..weights import save_weights

    net = open_network(cfg, weights, "cpu")
    log.info(saving_weights_line(output))
    save_weights(net, output, cutoff=count)
