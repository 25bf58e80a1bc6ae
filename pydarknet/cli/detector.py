"""`pydarknet detector test | train` and `pydarknet detect`."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..cfg import resolve_path
from ..choices import TRAINING_DECODER
from ..errors import DataError
from .common import (alexeyab_mode_options, data_cfg_weights, decoder_option, detector, device_option,
                     end_without_teardown, existing_file, image_paths, inference_options, main, names_for, open_network,
                     classes_of, report_skipped, shipped_file, shipped_or_given)


class AnnotatedNames:
    """Where each annotated image goes: Darknet's `<out>.jpg` for the one IMAGE argument; for images
    typed at the prompt, `<out>_<image name>.jpg` (`<out>` defaults to `predictions`; a folder as
    `<out>` gives `<folder>/<image name>.jpg`), numbered when two images share a name.

    DIVERGES: Darknet writes every image of a list over the same predictions.jpg.
    """

    def __init__(self, out: str | None, one_image: bool):
        self.prefix, self.one_image = out or "predictions", one_image
        self.used: set[Path] = set()

    def next(self, image_path: str) -> Path:
        if self.one_image:
            return Path(f"{self.prefix}.jpg")   # DARKNET(image.c:save_image): ".jpg" is appended to the -out name
        stem = Path(image_path).stem
        base = Path(self.prefix) / stem if Path(self.prefix).is_dir() else Path(f"{self.prefix}_{stem}")
        name, copy = Path(f"{base}.jpg"), 1
        while name in self.used:
            copy += 1
            name = Path(f"{base}_{copy}.jpg")
        self.used.add(name)
        return name


def alexeyab_options(function):
    """AlexeyAB's -ab / -letter_box, and its -dont_show (we never open a window) and -ext_output."""
    function = click.option("-ext_output", "ext_output", is_flag=True,
                            help="Print each box as AlexeyAB: (left_x: top_y: width: height:) in pixels.")(function)
    function = click.option("-dont_show", "dont_show", is_flag=True, help="Accepted for AlexeyAB; no effect.")(function)
    return alexeyab_mode_options(function)


def _run_detection(data: str, cfg: str, weights: str, image: str | None, thresh: float | None, hier: float,
                   out: str | None, json_path: str | None, device: str | None, decoder: str | None,
                   inference: dict[str, str], habits: dict[str, bool]) -> None:
    from ..detections import detections_to_json
    from ..image import draw_detections, load_image, save_image
    from ..predict import detect_boxes

    net = open_network(cfg, weights, device, **inference)
    names = names_for(data, classes=classes_of(net, "detection"))
    outputs = AnnotatedNames(out, one_image=image is not None)
    dialect = habits["dialect"]
    thresh = thresh if thresh is not None else dialect.test_thresh
    letterbox = dialect.letterbox(net, habits["letter_box"])
    records = []
    for path in image_paths(image):
        picture = load_image(shipped_or_given(path), decoder or "stb",   # data/dog.jpg from anywhere
                             stb_version=dialect.stb_version)
        start = time.perf_counter()
        try:
            dets = detect_boxes(net, picture, thresh, hier, letterbox=letterbox, dialect=dialect)
        except DataError as error:   # an image too thin to letterbox
            raise DataError(f"{path}: {error}") from None
        click.echo(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.")
        for line in dialect.printed_lines(dets, names, thresh, picture.shape[1], picture.shape[0],
                                          ext_output=habits["ext_output"]):
            click.echo(line)
        save_image(outputs.next(path), draw_detections(picture, dets, names, thresh))
        records.append({"image": path, "width": picture.shape[1], "height": picture.shape[0],
                        "detections": detections_to_json(dets, names, thresh)})
    if json_path:
        Path(json_path).write_text(json.dumps(records if len(records) != 1 else records[0], indent=1))
    end_without_teardown()   # everything is written and closed


@detector.command("test")
@data_cfg_weights()
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=None, help="Detection threshold.  [default: 0.5; -ab: 0.25]")
@click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="WordTree threshold.")
@click.option("-out", "out", default=None,
              help="Output image name without .jpg (default predictions); for images read from stdin, "
                   "the prefix of <out>_<image name>.jpg, or a folder.")
@click.option("--json", "json_path", default=None, help="Also write the detections as JSON here.")
@alexeyab_options
@device_option
@decoder_option
@inference_options
def detector_test(data, cfg, weights, image, thresh, hier, out, json_path, device, decoder, inference,
                  **habits) -> None:
    """Detect objects in IMAGE (or in each path read from stdin) as `darknet detector test`."""
    _run_detection(data, cfg, weights, image, thresh, hier, out, json_path, device, decoder, inference, habits)


@main.command("detect")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=None, help="[default: 0.5; -ab: 0.25]")
@click.option("-out", "out", default=None)
@click.option("--json", "json_path", default=None)
@alexeyab_options
@device_option
@decoder_option
@inference_options
def detect_command(cfg, weights, image, thresh, out, json_path, device, decoder, inference, **habits) -> None:
    """`darknet detect`: `detector test` with cfg/coco.data."""
    # DARKNET(darknet.c:main): detect always reads cfg/coco.data
    data = resolve_path("cfg/coco.data")
    _run_detection(str(data), cfg, weights, image, thresh, 0.5, out, json_path, device, decoder, inference, habits)


@detector.command("train")
@data_cfg_weights(weights_required=False)
@click.option("-gpus", "gpus", default=None, help="GPU indices, e.g. 0,1,2,3: one torchrun process each.")
@click.option("-clear", "clear", is_flag=True, help="Start seen (and so the schedule) from 0.")
@click.option("--amp", is_flag=True, help="Mixed precision: bfloat16 autocast (CUDA, and CPUs with AVX512-BF16/AMX: "
              "1.8x faster there); not Darknet's floats.")
@click.option("--workers", type=int, default=2, show_default=True, help="Data loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of image sampling and augmentation.")
@click.option("--max-batches", type=int, default=None, help="Override the cfg's max_batches.")
@device_option(gpus=False)
@decoder_option
def detector_train(data, cfg, weights, gpus, clear, amp, workers, seed, max_batches, device, decoder) -> None:
    """Train a detector as `darknet detector train`; backups go to the .data backup folder."""
    from ..engine.train import train_detector

    gpu_ids = [g for g in (gpus or "").split(",") if g.strip()]
    if len(gpu_ids) > 1 and "WORLD_SIZE" not in os.environ:
        relaunch_under_torchrun(gpu_ids)
    if len(gpu_ids) == 1 and device is None:
        device = f"cuda:{gpu_ids[0]}"
    result = train_detector(data, cfg, weights, clear=clear, device=device, amp=amp, workers=workers, seed=seed,
                            max_batches=max_batches, log=click.echo, decoder=decoder or TRAINING_DECODER)
    report_skipped(result.skipped_samples)


def relaunch_under_torchrun(gpu_ids: list[str]) -> None:
    """Run this same command as one DistributedDataParallel process per GPU (torchrun), then exit."""
    import subprocess

    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(gpu_ids))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={len(gpu_ids)}",
               "-m", "pydarknet.cli", *sys.argv[1:]]
    sys.exit(subprocess.call(command, env=env))


@detector.command("calc_anchors")
@click.argument("data", type=existing_file)
@click.option("-num_of_clusters", "clusters", type=int, default=5, show_default=True, help="Anchors to find.")
@click.option("-width", "width", type=int, default=416, show_default=True, help="Network input width.")
@click.option("-height", "height", type=int, default=416, show_default=True, help="Network input height.")
@click.option("-show", "show", is_flag=False, flag_value="anchors.png", default=None,
              help="Also draw the boxes and the anchors into this PNG (default anchors.png).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the k-means++ starts.")
def detector_calc_anchors(data, clusters, width, height, show, seed) -> None:
    """Dimension clusters (YOLOv2 §2): k-means with 1-IoU distance over the train list's boxes, printed as
    AlexeyAB's `detector calc_anchors` (the only Darknet that has it), with its anchors.txt and
    counters_per_class.txt written here."""
    from ..data.anchors import calc_anchors, plot_anchors

    result = calc_anchors(data, clusters, width, height, seed=seed)
    for line in result.alexeyab_lines():
        click.echo(line)
    result.write_alexeyab_files()
    if show:
        click.echo(f"Saved {plot_anchors(result, show)}")
