"""`pydarknet partial`: weights files."""
from __future__ import annotations

import click

from .common import existing_file, main, open_network


@main.command("partial")
@click.argument("cfg", type=existing_file)
@click.argument("weights", type=existing_file)
@click.argument("output")
@click.argument("count", type=int)
def partial(cfg, weights, output, count) -> None:
    """Save the weights of the first COUNT layers (e.g. darknet19_448.conv.23) as `darknet partial`."""
    from ..weights import save_weights

    net = open_network(cfg, weights, "cpu")
    save_weights(net, output, cutoff=count, seen=0)  # DARKNET(darknet.c:partial): load_network(..., 1) clears seen
    click.echo(f"Saving weights to {output}", err=True)
