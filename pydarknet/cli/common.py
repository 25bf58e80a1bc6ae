"""The command groups, the options every verb family shares, and the one place user errors are reported.

A user's mistake (a typo'd cfg, a truncated weights file, a missing image) is a `DarknetError` or an
`OSError` on one of their paths: it ends the command with one line `Error: …` and exit code 1.
`--debug` or `PYDARKNET_DEBUG=1` shows the traceback instead.
"""
from __future__ import annotations

import difflib
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


class DarknetCommand(click.Command):
    """A click command that rejects an unknown single-dash option by its whole name.

    Darknet's options are single-dash words (`-thresh`, `-dont_show`); click reads an unknown one as
    bundled short flags and complains about its first letter (`No such option: -d`).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = {name: param for param in self.get_params(ctx) if isinstance(param, click.Option)
                   for name in param.opts + param.secondary_opts}
        takes_value = False
        for arg in args:
            if arg == "--":
                break
            name = arg.split("=", 1)[0]
            if not takes_value and _single_dash_word(name) and name not in options:
                raise click.NoSuchOption(name, possibilities=difflib.get_close_matches(name, options), ctx=ctx)
            takes_value = not takes_value and name in options and not options[name].is_flag and "=" not in arg
        return super().parse_args(ctx, args)


def _single_dash_word(arg: str) -> bool:
    if not arg.startswith("-") or arg.startswith("--") or len(arg) < 3:
        return False
    try:
        float(arg)   # a negative number is a value, not an option
    except ValueError:
        return True
    return False


class DarknetGroup(click.Group):
    """A click group whose commands report user errors as one line (Darknet prints one line and exits)."""

    command_class = DarknetCommand

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


def alexeyab_mode_options(function):
    """-ab (AlexeyAB's defaults, see pydarknet.alexeyab) and -letter_box (its letterbox switch)."""
    function = click.option("-letter_box", "letter_box", is_flag=True,
                            help="With -ab: letterbox the image (AlexeyAB stretches it unless letter_box=1).")(function)
    return click.option("-ab", "ab", is_flag=True,
                        help="AlexeyAB's Darknet: its defaults, decoding and printed layout.")(function)


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
