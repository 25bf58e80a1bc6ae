"""`pydarknet data …`: datasets in Darknet's layout."""
from __future__ import annotations

import click

from .common import data, existing_file


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--train", "train", type=int, default=1000, show_default=True, help="Training images.")
@click.option("--valid", "valid", type=int, default=200, show_default=True, help="Validation images.")
@click.option("--size", type=int, default=320, show_default=True, help="Largest image side (smallest: half).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--layout", type=click.Choice(("darknet", "alexeyab")), default="darknet", show_default=True,
              help="Label files under labels/ (pjreddie's rule) or beside the images (AlexeyAB's).")
def data_synth(out, train, valid, size, seed, layout) -> None:
    """Write a synthetic detection dataset (images, labels, lists, .names, .data) under OUT."""
    from ..data.synth import make_synth

    click.echo(make_synth(out, train, valid, size, seed, progress=True, layout=layout))


def _report(result) -> None:
    click.echo(f"wrote {result.label_files} label files ({result.objects} objects) and {result.data_file}")
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)


@data.command("voc")
@click.argument("devkit", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for the lists, voc.names and voc.data.")
def data_voc(devkit, out) -> None:
    """Darknet labels and lists of a VOCdevkit (VOC2007/VOC2012), as Darknet's scripts/voc_label.py."""
    from ..data.voc import convert_voc

    _report(convert_voc(devkit, out))


@data.command("coco")
@click.argument("instances_json", type=existing_file)
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False),
              help="Folder for the list, coco.names and coco.data.")
def data_coco(instances_json, images_dir, out) -> None:
    """Darknet labels (80 classes, crowd boxes skipped) and a list from a COCO instances json."""
    from ..data.coco import convert_coco

    _report(convert_coco(instances_json, images_dir, out))
