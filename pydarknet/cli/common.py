"""The command groups, the options every verb family shares, and the one place user errors are reported.

A user's mistake (a typo'd cfg, a truncated weights file, a missing image) is a `DarknetError` or an
`OSError` on one of their paths: it ends the command with one line `Error: …` and exit code 1.
`--debug` or `PYDARKNET_DEBUG=1` shows the traceback instead.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import click

from .. import __version__
from ..cfg import resolve_path
from ..data.files import read_data_file, read_names
from ..errors import DarknetError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent.parent

existing_file = click.Path(exists=True, dir_okay=False)
device_option = click.option("--device", default=None,
                             help="cpu, cuda, cuda:N; default: CUDA when available, else CPU.")


def debugging() -> bool:
    return os.environ.get("PYDARKNET_DEBUG", "") not in ("", "0")


class DarknetGroup(click.Group):
    """A click group whose commands report user errors as one line (Darknet prints one line and exits)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (DarknetError, OSError) as error:
            if debugging():
                raise
            raise click.ClickException(_one_line(error)) from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _enable_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        os.environ["PYDARKNET_DEBUG"] = "1"


@click.group(cls=DarknetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="pydarknet")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_enable_debug,
              help="Show the Python traceback of an error (also PYDARKNET_DEBUG=1).")
def main() -> None:
    """Darknet (YOLOv2 / YOLO9000) in PyTorch, with Darknet's commands and files."""


@main.group(cls=DarknetGroup)
def detector() -> None:
    """Detection: test, train, valid, recall, map, demo."""


@main.group(cls=DarknetGroup)
def classifier() -> None:
    """Classification: predict, train, valid."""


@main.group(cls=DarknetGroup)
def data() -> None:
    """Datasets in Darknet's layout."""


def data_cfg_weights(weights_required: bool = True):
    """The DATA CFG WEIGHTS arguments every Darknet verb starts with."""
    arguments = (click.argument("data", type=existing_file), click.argument("cfg", type=existing_file),
                 click.argument("weights", type=existing_file, required=weights_required))

    def decorate(function):
        for argument in reversed(arguments):
            function = argument(function)
        return function
    return decorate


def image_paths(image: str | None) -> Iterator[str]:
    """The one image given, or, like Darknet, paths typed at an `Enter Image Path:` prompt until EOF."""
    if image:
        yield image
        return
    while True:
        click.echo("Enter Image Path: ", nl=False)
        line = sys.stdin.readline()
        if not line:
            return
        if line.strip():
            yield line.strip()


def names_for(data_path: str | Path, default: str = "data/names.list") -> list[str]:
    data_file = read_data_file(data_path)
    name_list = data_file.get_str("names", None) or data_file.get_str("labels", default)
    return read_names(resolve_path(name_list, data_path))


def open_network(cfg: str, weights: str | None, device: str | None):
    from ..network import load_network
    return load_network(cfg, weights, device)


def report_skipped(skipped_samples: int) -> None:
    if skipped_samples:
        click.echo(f"{skipped_samples} bad samples were skipped (see the warnings above)", err=True)
