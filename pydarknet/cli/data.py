"""`pydarknet data …`: datasets in Darknet's layout."""
from __future__ import annotations

import click

from .common import data


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--train", "train", type=int, default=1000, show_default=True, help="Training images.")
@click.option("--valid", "valid", type=int, default=200, show_default=True, help="Validation images.")
@click.option("--size", type=int, default=320, show_default=True, help="Largest image side (smallest: half).")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(out, train, valid, size, seed) -> None:
    """Write a synthetic detection dataset (images, labels, lists, .names, .data) under OUT."""
    from ..data.synth import make_synth

    click.echo(make_synth(out, train, valid, size, seed, progress=True))
