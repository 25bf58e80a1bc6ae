"""The command groups, the options every verb family shares, and the one place user errors are reported.

A user's mistake (a typo'd cfg, a truncated weights file, a missing image) is a `DarknetError` or an
`OSError` on one of their paths: it ends the command with one line `Error: …` and exit code 1.
`--debug` or `PYDARKNET_DEBUG=1` shows the traceback instead.

Darknet's own messages (the layer table, `Loading weights from …`, progress) go through the
`pydarknet` logger to stderr: `-q` keeps only warnings and errors, `-v` adds debug lines.
"""
from __future__ import annotations

import atexit
import difflib
import functools
import gc
import logging
import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator

import click

from .. import __version__
from ..cfg import resolve_path
from ..choices import BACKENDS, DARKNET_BUILDS, DECODERS, PRECISIONS
from ..data.files import read_data_file, read_names
from ..errors import DarknetError, DataError, MissingFileError
from ..fileio import check_regular_file
from ..runtime import spin_between_layers

log = logging.getLogger("pydarknet")

decoder_option = click.option("--decoder", type=click.Choice(DECODERS), default=None,
                              help="Image decoder: stb (Darknet's pixels, the default except for training) "
                                   "or opencv (faster).")


def inference_options(function):
    """-precision fp32|bf16|int8|fast, -calibration LIST, -backend torch|onnxruntime|openvino and -darknet_build
    gpu|cpu, passed on as `inference`, the keywords of `open_network` that make it an `InferenceNetwork`.

    DIVERGES: Darknet has no such options; they choose how `InferenceNetwork` runs the net (fp32 torch:
    batch norm folded, oneDNN-prepacked convs, within the reference tolerances) and which build of Darknet
    its numbers follow (`Darknet.darknet_build`; with -ab, AlexeyAB's build: `Dialect.darknet_build_for`).
    """
    @functools.wraps(function)
    def run(*args, precision, calibration, backend, darknet_build, **kwargs):
        if "dialect" in kwargs:   # the command has -ab
            darknet_build = kwargs["dialect"].darknet_build_for(darknet_build)
        return function(*args, inference={"precision": precision, "calibration": calibration, "backend": backend,
                                          "darknet_build": darknet_build}, **kwargs)

    run = click.option("-darknet_build", "--darknet-build", "darknet_build", type=click.Choice(DARKNET_BUILDS),
                       default="gpu", show_default=True,
                       help="Whose numbers: a GPU/cuDNN build of pjreddie's Darknet, or a stock CPU build (its batch "
                            "norm and its WordTree region softmax, wrong as it is); with -ab, AlexeyAB's builds "
                            "compute alike.")(run)

    run = click.option("-backend", "--backend", "backend", type=click.Choice(BACKENDS), default="torch",
                       show_default=True, help="What runs the net: PyTorch, onnxruntime (CPU, fp32) or OpenVINO "
                                               "(CPU; pip install openvino).")(run)
    run = click.option("-calibration", "--calibration", "calibration", type=UserFile(), default=None,
                       help="A list of images (one path a line) to calibrate -precision int8 on: the user's own, "
                            "as the net will see them.")(run)
    return click.option("-precision", "--precision", "precision", type=click.Choice(PRECISIONS), default="fp32",
                        show_default=True, help="fp32 (Darknet's numbers); bf16 (faster on CPUs with AVX512-BF16/AMX "
                                                "and on GPUs; all layers but the last region / softmax one in bfloat16); "
                                                "int8 (CPU, with -calibration: int8 convs but the first and the head's); "
                                                "fast: bf16 where it runs in hardware, else int8 with -calibration, "
                                                "else fp32.")(run)


class UserFile(click.ParamType):
    """An existing regular file. A missing one, a directory, a FIFO (whose `open()` would block) or a device
    is the user's mistake: one `Error: <file>: …` line and exit code 1, not click's usage text."""

    name = "file"

    def convert(self, value, param, ctx) -> str:
        what = f"{param.human_readable_name.lower()} file" if param is not None else "file"
        check_regular_file(value, what)
        return value


class ShippedFile(UserFile):
    """An existing file, or else one of the `cfg/`, `data/` files shipped with pydarknet by that name,
    so `pydarknet detect cfg/yolov2.cfg …` works from any directory (and from a wheel)."""

    def convert(self, value, param, ctx) -> str:
        path = shipped_or_given(value)
        if not Path(path).exists():
            raise MissingFileError(f"{value}: no such file, here or among the files shipped with pydarknet")
        return super().convert(path, param, ctx)


existing_file = UserFile()
shipped_file = ShippedFile()


def shipped_or_given(name: str) -> str:
    """`name` if it exists, else the shipped file of that name (`data/dog.jpg`), else `name` unchanged
    (so that whoever opens it reports it missing)."""
    try:
        path = str(resolve_path(name))
    except MissingFileError:
        return name
    if path != name:
        log.debug(f"{name}: using {path}")
    return path


def _device_of(device: str | None, gpu_index: int | None, nogpu: bool, gpus: str | None) -> str | None:
    """One device from --device or Darknet's -i N / -nogpu / -gpus N (at most one of them)."""
    given = [name for name, value in (("--device", device), ("-i", gpu_index), ("-nogpu", nogpu or None),
                                      ("-gpus", gpus)) if value is not None]
    if len(given) > 1:
        raise click.UsageError(f"{' and '.join(given)} both choose the device: give one")
    if nogpu:
        return "cpu"   # DARKNET(darknet.c:main): -nogpu sets gpu_index = -1
    if gpu_index is not None:
        return darknet_gpu(f"-i {gpu_index}", str(gpu_index))   # DARKNET(darknet.c:main): -i N sets gpu_index
    if gpus is not None:
        ids = [g.strip() for g in gpus.split(",") if g.strip()]
        if len(ids) != 1:
            raise click.UsageError(f"-gpus {gpus}: several GPUs are used by `detector train` only; give one")
        return darknet_gpu(f"-gpus {gpus}", ids[0])
    return device


def darknet_gpu(option: str, index: str) -> str:
    """`cuda:<index>`, or on a machine without CUDA the CPU after one warning line.

    DARKNET(AlexeyAB darknet.c:main): a build without GPU sets gpu_index = -1 whatever -i says (pjreddie's
    too): the same command line runs on a CPU-only machine.
    """
    import torch

    if torch.cuda.is_available():
        return f"cuda:{index}"
    log.warning(f"Warning: {option}: no CUDA GPU on this machine; running on the CPU, as a CPU build of Darknet")
    return "cpu"


def device_option(function=None, *, gpus: bool = True):
    """--device, with Darknet's -i N, -nogpu and (unless `gpus=False`) -gpus N, passed on as `device`.

    Use as `@device_option`, or `@device_option(gpus=False)` on a command with its own -gpus.
    """
    if function is None:
        return functools.partial(device_option, gpus=gpus)

    @functools.wraps(function)
    def run(*args, device, gpu_index, nogpu, **kwargs):
        one_gpu = kwargs.pop("gpus", None) if gpus else None   # with gpus=False, -gpus is the command's own
        return function(*args, device=_device_of(device, gpu_index, nogpu, one_gpu), **kwargs)

    options = [click.option("--device", default=None, help="cpu, cuda, cuda:N; default: CUDA when available, else CPU."),
               click.option("-i", "gpu_index", type=int, default=None, help="GPU index (Darknet's -i N: --device cuda:N)."),
               click.option("-nogpu", "nogpu", is_flag=True, help="Run on the CPU (Darknet's -nogpu).")]
    if gpus:
        options.append(click.option("-gpus", "gpus", default=None, help="One GPU index (as -i)."))
    for option in reversed(options):
        run = option(run)
    return run


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


class ProgramRun:
    """`ctx.obj` of a run as the program (`DarknetGroup.__call__`), never of CliRunner's."""

    def __init__(self) -> None:
        self.skip_teardown = False


def end_without_teardown() -> None:
    """Let the program end as soon as this command returns, skipping the interpreter's teardown (0.3 s
    once torch is loaded: clearing every module, collecting their objects). For commands that leave no
    file open and no process or thread working; a no-op unless running as the program."""
    run = click.get_current_context().find_object(ProgramRun)
    if run is not None:
        run.skip_teardown = True


# Python's default (700, 10, 10) runs 3 full collections while a command imports torch and builds a
# net (hundreds of thousands of long-lived objects, nothing to free): 0.1 s of `detector test`. Young
# collections every 10,000 allocations and full ones 10x rarer keep it at a few milliseconds.
CLI_GC_THRESHOLDS = (10_000, 10, 100)


def one_image_at_a_time(command: click.Command) -> click.Command:
    """Mark a command that runs the net on one image at a time, with no other thread of its own wanting the
    cores: OpenMP's threads may spin between layers (`runtime.spin_between_layers`, applied by `DarknetGroup`
    before the command's options are parsed, which load torch)."""
    command.one_image_at_a_time = True
    return command


class DarknetGroup(click.Group):
    """A click group whose commands report user errors as one line (Darknet prints one line and exits)."""

    command_class = DarknetCommand

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if getattr(command, "one_image_at_a_time", False):
            spin_between_layers()
        return name, command, rest

    def __call__(self, *args, **kwargs):
        """Run as the program (the `pydarknet` script, `python -m pydarknet`, `python -m pydarknet.cli` call
        `main()`): `main`, then, after a command that called `end_without_teardown`, the exit handlers
        (atexit) and the exit itself without the interpreter's teardown. CliRunner calls `main.main`."""
        run = kwargs.setdefault("obj", ProgramRun())
        install_warning_lines()
        try:
            return self.main(*args, **kwargs)
        except SystemExit as done:
            if isinstance(run, ProgramRun) and run.skip_teardown and isinstance(done.code, (int, type(None))):
                atexit._run_exitfuncs()   # what a normal exit runs first (logging.shutdown among them)
                try:
                    sys.stdout.flush()
                    sys.stderr.flush()
                except OSError:
                    os._exit(120)   # as Python exits when it cannot flush stdout
                os._exit(done.code or 0)
            raise

    def main(self, *args, **kwargs):
        """The program (or CliRunner.invoke): runs a command under CLI_GC_THRESHOLDS, then restores them."""
        thresholds = gc.get_threshold()
        gc.set_threshold(*CLI_GC_THRESHOLDS)
        try:
            return super().main(*args, **kwargs)
        finally:
            gc.set_threshold(*thresholds)

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


class _EchoHandler(logging.Handler):
    """Log records as plain lines on click's current stderr (the one CliRunner captures, too)."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(self.format(record), err=True)


def configure_logging(quiet: bool, verbose: bool) -> None:
    """The `pydarknet` logger on stderr: INFO (Darknet's messages), WARNING with -q, DEBUG with -v."""
    if not any(isinstance(handler, _EchoHandler) for handler in log.handlers):
        log.addHandler(_EchoHandler())
        log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    skipped_samples.clear()


def install_warning_lines() -> None:
    """Python warnings as `Warning: …` lines (`show_warning`), for the program only: CliRunner (and so a test's
    `pytest.warns`) keeps Python's own recording."""
    warnings.showwarning = show_warning


# Warnings repeated once per sample: (category name, words of the message, the kind counted)
PER_SAMPLE_WARNINGS = (("BadSampleWarning", "no such label file", "label not found"),
                       ("BadSampleWarning", "no such image file", "image not found"),
                       ("BadSampleWarning", "Cannot load image", "unreadable image"),
                       ("BadSampleWarning", "", "invalid label"),
                       ("MissingLabelWarning", "", "label not found"))
skipped_samples: Counter[str] = Counter()   # kind -> samples skipped in this command's pass


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` for the CLI: one `Warning: <message>` line on stderr, without the source file
    and code line Python adds; a per-sample warning (a bad sample, an image without labels) is shown the
    first time its kind occurs, then only counted (`skipped_line`)."""
    kind = next((kind for name, words, kind in PER_SAMPLE_WARNINGS
                 if category.__name__ == name and words in str(message)), None)
    if kind is not None:
        skipped_samples[kind] += 1
        if skipped_samples[kind] > 1:
            return
        message = f"{message} (further samples like it are counted at the end)"
    click.echo(f"Warning: {_one_line(message)}", err=True)


def skipped_line() -> str | None:
    """`32 bad samples skipped: 30 label not found, 2 unreadable image` for the per-sample warnings counted so
    far (None without any); the count restarts."""
    if not skipped_samples:
        return None
    kinds = ", ".join(f"{count} {kind}" for kind, count in skipped_samples.most_common())
    total = sum(skipped_samples.values())
    skipped_samples.clear()
    return f"{total} bad samples skipped: {kinds}"


@click.group(cls=DarknetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="pydarknet")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_enable_debug,
              help="Show the Python traceback of an error (also PYDARKNET_DEBUG=1).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr (no layer table, no progress).")
@click.option("-v", "--verbose", is_flag=True, help="Also debug messages on stderr.")
def main(quiet: bool, verbose: bool) -> None:
    """Darknet (YOLOv2 / YOLO9000) in PyTorch, with Darknet's commands and files."""
    if quiet and verbose:
        raise click.UsageError("-q and -v contradict each other: give one")
    configure_logging(quiet, verbose)


@main.group(cls=DarknetGroup)
def detector() -> None:
    """Detection: test, train, valid, recall, map, demo."""


@main.group(cls=DarknetGroup)
def classifier() -> None:
    """Classification: predict, label, train, valid."""


@main.group(cls=DarknetGroup)
def data() -> None:
    """Datasets in Darknet's layout."""


def data_cfg_weights(weights_required: bool = True):
    """The DATA CFG WEIGHTS arguments every Darknet verb starts with."""
    arguments = (click.argument("data", type=shipped_file), click.argument("cfg", type=shipped_file),
                 click.argument("weights", type=existing_file, required=weights_required))

    def decorate(function):
        for argument in reversed(arguments):
            function = argument(function)
        return function
    return decorate


def _dialect(_ctx: click.Context, _param: click.Parameter, alexeyab: bool):
    from ..dialect import dialect_for   # on use only: --help loads neither torch nor OpenCV

    return dialect_for(alexeyab)


def alexeyab_mode_options(function):
    """-ab (passed on as `dialect`: pydarknet.dialect.ALEXEYAB, else PJREDDIE) and -letter_box (its letterbox
    switch)."""
    function = click.option("-letter_box", "letter_box", is_flag=True,
                            help="With -ab: letterbox the image (AlexeyAB stretches it unless letter_box=1).")(function)
    return alexeyab_switch("AlexeyAB's Darknet: its defaults, decoding and printed layout.")(function)


def alexeyab_switch(help: str):
    """The -ab flag, passed on as `dialect` (pydarknet.dialect.ALEXEYAB, else PJREDDIE)."""
    return click.option("-ab", "dialect", is_flag=True, callback=_dialect, help=help)


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


def names_for(data_path: str | Path, default: str = "data/names.list", classes: int | None = None) -> list[str]:
    """The class names a .data file names (`names=`, else `labels=`); at least `classes` of them if given."""
    data_file = read_data_file(data_path)
    name_list = resolve_path(data_file.get_str("names", None) or data_file.get_str("labels", default), data_path)
    names = read_names(name_list)
    if classes is not None and len(names) < classes:
        raise DataError(f"{name_list}: {len(names)} names for the {classes} classes of the net "
                        f"(named by {data_path})")
    return names


def open_network(cfg: str, weights: str | None, device: str | None, trained: bool = True,
                 precision: str | None = None, backend: str = "torch", darknet_build: str = "gpu",
                 calibration: str | None = None, single_forward: bool = False):
    """Load the net, printing Darknet's layer table and weights line (on stderr, hidden by -q); with
    `trained`, a weights file that fills no layer is an error. With a `precision`, the net to run
    detections or classifications on: an `InferenceNetwork` of that precision and `backend`.
    `darknet_build`: `Darknet.darknet_build`; `calibration`: int8's list of images; `single_forward`: see
    `InferenceNetwork` (a command that runs the net on one image)."""
    from ..network import load_network
    from ..summary import layer_table, loading_weights_line

    net = load_network(cfg, weights, device, trained=trained, darknet_build=darknet_build)
    log.info("\n".join(layer_table(net)))
    if weights:
        log.info(loading_weights_line(weights))
    if precision is None:
        return net
    from ..inference import InferenceNetwork
    try:
        return InferenceNetwork(net, precision, backend, in_place=True, calibration=calibration,
                                single_forward=single_forward)
    except ValueError as error:   # a choice this net or device cannot run
        raise click.UsageError(str(error)) from None


def classes_of(net, purpose: str) -> int:
    """The classes the net's detection head predicts (a CfgError naming the cfg when it has none)."""
    from ..heads.detector import detection_head
    return detection_head(net, purpose).classes


def report_skipped(skipped: int) -> None:
    """The end of a training pass: the per-sample warnings counted, in one line."""
    line = skipped_line()
    if line is None and skipped:
        line = f"{skipped} bad samples were skipped (see the warnings above)"
    if line is not None:
        click.echo(line, err=True)


def check_data(data: str, cfg: str | None, dialect, list_key: str, default_list: str, *, labels: bool = True,
               images: bool = True, purpose: str = "evaluate"):
    """The checks that need no weights, run before they are loaded (8-14 s for a big net): `classes=` of the
    .data file against the cfg's detection head (an error naming both files), the names file, and
    `data.check.check_dataset` of the `list_key` list, printed on stderr. With `labels`, an error when no listed
    image is readable and labelled (nothing to `purpose`); `images=False`: the images are not looked at.
    Returns the `DatasetReport`."""
    from ..data.check import cfg_head, check_classes, check_dataset

    data_file = read_data_file(data)
    head = cfg_head(cfg) if cfg is not None else None
    classes = data_file.classes if data_file.has("classes") else head[0] if head else None
    if not data_file.has("map"):   # a class map (YOLO9000 on COCO) maps the head's classes onto the .data's
        if data_file.has("classes") and cfg is not None:
            check_classes(data, classes, cfg)
        if classes is not None and (data_file.has("names") or data_file.has("labels")):
            names_for(data, classes=classes)
    labels = labels and classes is not None
    report = check_dataset(data_file.get_path(list_key, default_list), classes or 1, dialect, data_path=data,
                           labels=labels, images=images)
    for line in report.lines(labels):
        (log.warning if line.startswith("Warning") else log.info)(line)   # -q keeps the warning only
    if labels:
        report.require_usable(purpose)
    return report
