"""`pydarknet`: Darknet's command line, same argument order and single-dash options.

A thin layer: every command parses its arguments and calls the Python API.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import click

from .cfg import resolve_path
from .data.files import read_data_file, read_names

PACKAGE_ROOT = Path(__file__).resolve().parent.parent

device_option = click.option("--device", default=None,
                             help="cpu, cuda, cuda:N; default: CUDA when available, else CPU.")


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
    data = read_data_file(data_path)
    name_list = data.get_str("names", None) or data.get_str("labels", default)
    return read_names(resolve_path(name_list, data_path))


def open_network(cfg: str, weights: str | None, device: str | None):
    from .network import load_network
    return load_network(cfg, weights, device)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Darknet (YOLOv2 / YOLO9000) in PyTorch, with Darknet's commands and files."""


@main.group()
def detector() -> None:
    """Detection: test, train, valid, recall, map, demo."""


def _run_detection(data: str, cfg: str, weights: str, image: str | None, thresh: float, hier: float,
                   out: str | None, json_path: str | None, device: str | None) -> None:
    from .detect import detections_to_json, format_detections
    from .image import draw_detections, load_image, save_image
    from .predict import detect

    names = names_for(data)
    net = open_network(cfg, weights, device)
    records = []
    for path in image_paths(image):
        picture = load_image(path)
        start = time.perf_counter()
        dets = detect(net, picture, thresh, hier)
        click.echo(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.")
        for line in format_detections(dets, names, thresh):
            click.echo(line)
        # DARKNET(image.c:save_image): ".jpg" is appended to the -out name
        save_image(f"{out or 'predictions'}.jpg", draw_detections(picture, dets, names, thresh))
        records.append({"image": path, "width": picture.shape[1], "height": picture.shape[0],
                        "detections": detections_to_json(dets, names, thresh)})
    if json_path:
        Path(json_path).write_text(json.dumps(records if len(records) != 1 else records[0], indent=1))


@detector.command("test")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.argument("cfg", type=click.Path(exists=True, dir_okay=False))
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=0.5, show_default=True, help="Detection threshold.")
@click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="WordTree threshold.")
@click.option("-out", "out", default=None, help="Output image name, without .jpg (default predictions).")
@click.option("--json", "json_path", default=None, help="Also write the detections as JSON here.")
@device_option
def detector_test(data, cfg, weights, image, thresh, hier, out, json_path, device) -> None:
    """Detect objects in IMAGE (or in paths read from stdin) as `darknet detector test`."""
    _run_detection(data, cfg, weights, image, thresh, hier, out, json_path, device)


@main.command("detect")
@click.argument("cfg", type=click.Path(exists=True, dir_okay=False))
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=0.5, show_default=True)
@click.option("-out", "out", default=None)
@click.option("--json", "json_path", default=None)
@device_option
def detect_command(cfg, weights, image, thresh, out, json_path, device) -> None:
    """`darknet detect`: `detector test` with cfg/coco.data."""
    # DARKNET(darknet.c:main): detect always reads cfg/coco.data
    data = resolve_path("cfg/coco.data", PACKAGE_ROOT / "cfg" / "coco.data")
    _run_detection(str(data), cfg, weights, image, thresh, 0.5, out, json_path, device)


@main.group()
def classifier() -> None:
    """Classification: predict, train, valid."""


@classifier.command("predict")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.argument("cfg", type=click.Path(exists=True, dir_okay=False))
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", required=False)
@click.option("-t", "top", type=int, default=0, help="How many classes to print (default: the data file's top, else 1).")
@device_option
def classifier_predict(data, cfg, weights, image, top, device) -> None:
    """Print the top classes of IMAGE as `darknet classifier predict`."""
    from .predict import classify, format_predictions

    # DARKNET(classifier.c:predict_classifier): -t, else the data file's top=, else 1
    top = top or read_data_file(data).get_int("top", 1)
    names = names_for(data, default="data/labels.list")
    net = open_network(cfg, weights, device)
    for path in image_paths(image):
        start = time.perf_counter()
        predictions = classify(net, path, top)
        click.echo(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.", err=True)
        for line in format_predictions(predictions, names):
            click.echo(line)


@detector.command("train")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.argument("cfg", type=click.Path(exists=True, dir_okay=False))
@click.argument("weights", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("-gpus", "gpus", default=None, help="GPU indices, e.g. 0,1,2,3: one torchrun process each.")
@click.option("-clear", "clear", is_flag=True, help="Start seen (and so the schedule) from 0.")
@click.option("--amp", is_flag=True, help="Mixed precision (bfloat16 autocast) on CUDA.")
@click.option("--workers", type=int, default=2, show_default=True, help="Data loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of image sampling and augmentation.")
@click.option("--max-batches", type=int, default=None, help="Override the cfg's max_batches.")
@device_option
def detector_train(data, cfg, weights, gpus, clear, amp, workers, seed, max_batches, device) -> None:
    """Train a detector as `darknet detector train`; backups go to the .data backup folder."""
    from .engine.train import train_detector

    gpu_ids = [g for g in (gpus or "").split(",") if g.strip()]
    if len(gpu_ids) > 1 and "WORLD_SIZE" not in os.environ:
        _relaunch_under_torchrun(gpu_ids)
    if len(gpu_ids) == 1 and device is None:
        device = f"cuda:{gpu_ids[0]}"
    result = train_detector(data, cfg, weights, clear=clear, device=device, amp=amp, workers=workers, seed=seed,
                            max_batches=max_batches, log=click.echo)
    if result.skipped_samples:
        click.echo(f"{result.skipped_samples} bad samples were skipped (see the warnings above)", err=True)


def _relaunch_under_torchrun(gpu_ids: list[str]) -> None:
    """Run this same command as one DistributedDataParallel process per GPU (torchrun), then exit."""
    import subprocess

    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(gpu_ids))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={len(gpu_ids)}",
               "-m", "pydarknet.cli", *sys.argv[1:]]
    sys.exit(subprocess.call(command, env=env))


@main.group()
def data() -> None:
    """Datasets in Darknet's layout."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--train", "train", type=int, default=1000, show_default=True, help="Training images.")
@click.option("--valid", "valid", type=int, default=200, show_default=True, help="Validation images.")
@click.option("--size", type=int, default=320, show_default=True, help="Largest image side (smallest: half).")
@click.option("--seed", type=int, default=0, show_default=True)
def data_synth(out, train, valid, size, seed) -> None:
    """Write a synthetic detection dataset (images, labels, lists, .names, .data) under OUT."""
    from .data.synth import make_synth

    click.echo(make_synth(out, train, valid, size, seed))


@main.command("partial")
@click.argument("cfg", type=click.Path(exists=True, dir_okay=False))
@click.argument("weights", type=click.Path(exists=True, dir_okay=False))
@click.argument("output")
@click.argument("count", type=int)
def partial(cfg, weights, output, count) -> None:
    """Save the weights of the first COUNT layers (e.g. darknet19_448.conv.23) as `darknet partial`."""
    from .weights import save_weights

    net = open_network(cfg, weights, "cpu")
    save_weights(net, output, cutoff=count)
    click.echo(f"Saving weights to {output}", err=True)


# Commands defined beside their engines register themselves on the groups above.
from . import cli_classifier, cli_eval  # noqa: E402,F401

if __name__ == "__main__":
    main()
