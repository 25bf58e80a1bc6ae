"""`pydarknet classifier train | valid`: thin click commands over `pydarknet.engine.classifier`."""
from __future__ import annotations

import click

from .cli import classifier, device_option, open_network

existing_file = click.Path(exists=True, dir_okay=False)


@classifier.command("train")
@click.argument("data", type=existing_file)
@click.argument("cfg", type=existing_file)
@click.argument("weights", type=existing_file, required=False)
@click.option("-clear", "clear", is_flag=True, help="Start seen (and so the schedule) from 0.")
@click.option("--workers", type=int, default=2, show_default=True, help="Data loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of image sampling and augmentation.")
@click.option("--max-batches", type=int, default=None, help="Override the cfg's max_batches.")
@device_option
def classifier_train(data, cfg, weights, clear, workers, seed, max_batches, device) -> None:
    """Train a classifier as `darknet classifier train`; backups go to the .data backup folder."""
    from .engine.classifier import train_classifier

    result = train_classifier(data, cfg, weights, clear=clear, device=device, workers=workers, seed=seed,
                              max_batches=max_batches, log=click.echo)
    if result.skipped_samples:
        click.echo(f"{result.skipped_samples} bad samples were skipped (see the warnings above)", err=True)


@classifier.command("valid")
@click.argument("data", type=existing_file)
@click.argument("cfg", type=existing_file)
@click.argument("weights", type=existing_file)
@click.option("--workers", type=int, default=2, show_default=True, help="Image decoding processes.")
@device_option
def classifier_valid(data, cfg, weights, workers, device) -> None:
    """Top-1 / top-k accuracy on the .data valid list, as `darknet classifier valid`."""
    from .engine.classifier import validate_classifier

    validate_classifier(open_network(cfg, weights, device), data, workers=workers, log=click.echo)
