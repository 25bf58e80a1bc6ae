"""`pydarknet detector test | train` and `pydarknet detect`."""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import click

from ..cfg import resolve_path
from ..choices import TRAINING_DECODER
from ..errors import DataError
from .common import (alexeyab_mode_options, alexeyab_switch, check_data, classes_of, darknet_gpu, data_cfg_weights,
                     decoder_option, detector, device_option, end_without_teardown, existing_file, image_paths,
                     inference_options, main, names_for, one_image_at_a_time, open_network, report_skipped,
                     shipped_file, shipped_or_given)


class AnnotatedNames:
    """Where each annotated image goes: Darknet's `<out>.jpg` for the one IMAGE argument; for images
    typed at the prompt, `<out>_<image name>.jpg` (`<out>` defaults to `predictions`); a folder as `<out>`
    (an existing one, or a name ending in `/`) gives `<folder>/<image name>.jpg`; names are numbered when
    two images share one.

    DIVERGES: Darknet writes every image of a list over the same predictions.jpg, and `-out DIR/` as `DIR/.jpg`.
    """

    def __init__(self, out: str | None, one_image: bool):
        self.prefix, self.one_image = out or "predictions", one_image
        self.folder = is_folder(self.prefix)
        self.used: set[Path] = set()

    def next(self, image_path: str) -> Path:
        if self.one_image and not self.folder:
            return Path(f"{self.prefix}.jpg")   # DARKNET(image.c:save_image): ".jpg" is appended to the -out name
        stem = Path(image_path).stem
        base = Path(self.prefix) / stem if self.folder else Path(f"{self.prefix}_{stem}")
        if self.folder:
            base.parent.mkdir(parents=True, exist_ok=True)
        name, copy = Path(f"{base}.jpg"), 1
        while name in self.used:
            copy += 1
            name = Path(f"{base}_{copy}.jpg")
        self.used.add(name)
        return name


def is_folder(out: str) -> bool:
    return out.endswith(("/", os.sep)) or Path(out).is_dir()


def alexeyab_options(function):
    """AlexeyAB's -ab / -letter_box, and its -dont_show (we never open a window) and -ext_output."""
    function = click.option("-ext_output", "ext_output", is_flag=True,
                            help="Print each box as AlexeyAB: (left_x: top_y: width: height:) in pixels.")(function)
    function = click.option("-dont_show", "dont_show", is_flag=True, help="Accepted for AlexeyAB; no effect.")(function)
    return alexeyab_mode_options(function)


def alexeyab_test_options(function):
    """AlexeyAB's `detector test` options beyond `alexeyab_options`: -save_labels, and -benchmark and -prefix,
    which its `detector test` accepts without effect on what it writes."""
    function = click.option("-save_labels", "save_labels", is_flag=True,
                            help="Write each image's detections as a label file (class x y w h of each box's best "
                                 "class above -thresh) where this Darknet's training reads it (-ab: beside "
                                 "the image).")(function)
    # DARKNET(AlexeyAB detector.c:run_detector): -benchmark only sets dont_show for `test` (demo uses it)
    function = click.option("-benchmark", "benchmark", is_flag=True,
                            help="Accepted for AlexeyAB (its test only implies -dont_show); no effect.")(function)
    # DARKNET(AlexeyAB detector.c:run_detector): -prefix is read for every verb, used by demo only
    return click.option("-prefix", "prefix", default=None,
                        help="Accepted for AlexeyAB (used by its demo only); no effect on test.")(function)


@dataclass(frozen=True)
class DetectionOutputs:
    """What `detector test` writes besides its printed lines: the annotated images, AlexeyAB's JSON results
    (`-out X.json`, or any -out under -ab), pydarknet's JSON (`--json`), label files (`-save_labels`)."""

    images: AnnotatedNames
    alexeyab_json: str | None
    json_path: str | None
    save_labels: bool

    @classmethod
    def of(cls, out: str | None, json_path: str | None, save_labels: bool, dialect, one_image: bool) -> DetectionOutputs:
        # DARKNET(AlexeyAB detector.c:test_detector): -out is the JSON results file, the image is predictions.jpg;
        # pjreddie's -out names the image: its meaning without -ab, except for a .json name or a folder.
        # DIVERGES: under -ab too a folder takes the images (AlexeyAB's fopen of a folder fails)
        alexeyab_json = out if out is not None and not is_folder(out) and (
            out.endswith(".json") or dialect.name == "alexeyab") else None
        return cls(AnnotatedNames(None if alexeyab_json else out, one_image), alexeyab_json, json_path, save_labels)


def _run_detection(data: str, cfg: str, weights: str, image: str | None, thresh: float | None, hier: float,
                   outputs: DetectionOutputs, device: str | None, decoder: str | None, inference: dict[str, str],
                   habits: dict) -> None:
    from ..detections import detections_to_json
    from ..image import draw_detections, load_image, save_image
    from ..predict import detect_boxes

    net = open_network(cfg, weights, device, single_forward=image is not None, **inference)
    names = names_for(data, classes=classes_of(net, "detection"))
    dialect = habits["dialect"]
    thresh = thresh if thresh is not None else dialect.test_thresh
    letterbox = dialect.letterbox(net, habits["letter_box"])
    records, alexeyab_images = [], []
    for path in image_paths(image):
        picture = load_image(shipped_or_given(path), decoder or "stb",   # data/dog.jpg from anywhere
                             stb_version=dialect.stb_version)
        start = time.perf_counter()
        try:
            dets = detect_boxes(net, picture, thresh, hier, letterbox=letterbox, dialect=dialect)
        except DataError as error:   # an image too thin to letterbox
            raise DataError(f"{path}: {error}") from None
        click.echo(dialect.predicted_line(path, time.perf_counter() - start))
        for line in dialect.printed_lines(dets, names, thresh, picture.shape[1], picture.shape[0],
                                          ext_output=habits["ext_output"]):
            click.echo(line)
        save_image(outputs.images.next(path), draw_detections(picture, dets, names, thresh))
        records.append({"image": path, "width": picture.shape[1], "height": picture.shape[0],
                        "detections": detections_to_json(dets, names, thresh)})
        if outputs.alexeyab_json:
            from ..serve.json_stream import detection_json   # only here: a one-image test imports less
            alexeyab_images.append(detection_json(dets, names, len(alexeyab_images) + 1, path))
        if outputs.save_labels:
            from ..evaluate.results import pseudo_label_lines
            _write_labels(dialect, path, pseudo_label_lines(dets, thresh))
    if outputs.json_path:
        Path(outputs.json_path).write_text(json.dumps(records if len(records) != 1 else records[0], indent=1))
    if outputs.alexeyab_json:
        from ..evaluate.results import alexeyab_json_file
        Path(outputs.alexeyab_json).write_text(alexeyab_json_file(alexeyab_images))
    end_without_teardown()   # everything is written and closed


def _write_labels(dialect, image: str, lines: str) -> None:
    """DARKNET(AlexeyAB detector.c:test_detector): -save_labels writes the label file training would read."""
    try:
        label = dialect.label_path(image)
    except ValueError as error:   # pjreddie's rule knows no label path for this name
        raise DataError(f"-save_labels: {error}") from None
    Path(label).write_text(lines)


@one_image_at_a_time
@detector.command("test")
@data_cfg_weights()
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=None, help="Detection threshold.  [default: 0.5; -ab: 0.25]")
@click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="WordTree threshold.")
@click.option("-out", "out", default=None,
              help="Output image name without .jpg (default predictions); for images read from stdin, "
                   "the prefix of <out>_<image name>.jpg; a folder (DIR/): DIR/<image name>.jpg. X.json, or "
                   "any name with -ab: AlexeyAB's JSON results of every image (the image goes to predictions.jpg).")
@click.option("--json", "json_path", default=None, help="Also write the detections as pydarknet's JSON here.")
@alexeyab_test_options
@alexeyab_options
@device_option
@decoder_option
@inference_options
def detector_test(data, cfg, weights, image, thresh, hier, out, json_path, save_labels, device, decoder, inference,
                  **habits) -> None:
    """Detect objects in IMAGE (or in each path read from stdin) as `darknet detector test`."""
    outputs = DetectionOutputs.of(out, json_path, save_labels, habits["dialect"], one_image=image is not None)
    _run_detection(data, cfg, weights, image, thresh, hier, outputs, device, decoder, inference, habits)


@one_image_at_a_time
@main.command("detect")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=None, help="[default: 0.5; -ab: 0.25]")
@click.option("-out", "out", default=None, help="As `detector test -out`.")
@click.option("--json", "json_path", default=None)
@alexeyab_test_options
@alexeyab_options
@device_option
@decoder_option
@inference_options
def detect_command(cfg, weights, image, thresh, out, json_path, save_labels, device, decoder, inference,
                   **habits) -> None:
    """`darknet detect`: `detector test` with cfg/coco.data."""
    # DARKNET(darknet.c:main): detect always reads cfg/coco.data
    data = resolve_path("cfg/coco.data")
    outputs = DetectionOutputs.of(out, json_path, save_labels, habits["dialect"], one_image=image is not None)
    _run_detection(str(data), cfg, weights, image, thresh, 0.5, outputs, device, decoder, inference, habits)


@detector.command("train")
@data_cfg_weights(weights_required=False)
@click.option("-gpus", "gpus", default=None, help="GPU indices, e.g. 0,1,2,3: one torchrun process each "
              "(without CUDA: a warning, and the CPU).")
@click.option("-clear", "clear", is_flag=True, help="Start seen (and so the schedule) from 0.")
@click.option("-map", "calc_map", is_flag=True, help="AlexeyAB: measure mAP@0.5 on the valid= list while training; "
              "the best goes to <backup>/<cfg>_best.weights, the curve onto the chart.")
@click.option("-mAP_epochs", "map_epochs", type=click.IntRange(min=1), default=4, show_default=True,
              help="With -map: epochs between measures (at least 100 iterations).")
@click.option("-chart", "chart", default=None, help="Where the chart goes.  [default: <backup>/chart.png]")
@click.option("-mjpeg_port", "mjpeg_port", type=click.IntRange(1, 65535), default=None,
              help="Serve the chart as an MJPEG stream at http://127.0.0.1:PORT/.")
@click.option("-dont_show", "dont_show", is_flag=True, help="Accepted for AlexeyAB; no window is ever shown.")
@alexeyab_switch("AlexeyAB's Darknet: its lines, labels and mAP (a cfg with AlexeyAB-only keys trains so anyway).")
@click.option("--amp", is_flag=True, help="Mixed precision: bfloat16 autocast (CUDA, and CPUs with AVX512-BF16/AMX: "
              "1.8x faster there); not Darknet's floats.")
@click.option("--workers", type=int, default=2, show_default=True, help="Data loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of image sampling and augmentation.")
@click.option("--max-batches", type=int, default=None, help="Override the cfg's max_batches.")
@device_option(gpus=False)
@decoder_option
def detector_train(data, cfg, weights, gpus, clear, calc_map, map_epochs, chart, mjpeg_port, dont_show, dialect, amp,
                   workers, seed, max_batches, device, decoder) -> None:
    """Train a detector as `darknet detector train`; backups go to the .data backup folder, one row per
    iteration to <backup>/<cfg>_log.csv. Ctrl-C stops it (exit code 130), naming the last weights written.

    DIVERGES: AlexeyAB writes chart.png and chart_<cfg>.png in the working directory and reads -chart as a chart
    image to draw on; here the chart is drawn again from <cfg>_log.csv (a resumed run's earlier iterations too)
    into -chart or <backup>/chart.png."""
    try:
        result = _train_detector(data, cfg, weights, gpus, clear, calc_map, map_epochs, chart, mjpeg_port, dialect,
                                 amp, workers, seed, max_batches, device, decoder)
    except KeyboardInterrupt as stop:   # engine.train.TrainingInterrupted names the last weights written
        click.echo(str(stop) or "Interrupted before training started: no weights were written", err=True)
        sys.exit(130)   # the shell's code for a command ended by SIGINT
    report_skipped(result.skipped_samples)
    for line in result.summary_lines():
        click.echo(line)


def _train_detector(data, cfg, weights, gpus, clear, calc_map, map_epochs, chart, mjpeg_port, dialect, amp, workers,
                    seed, max_batches, device, decoder):
    """`detector train` up to its result: the GPUs, then training."""
    from ..dialect import ALEXEYAB
    from ..engine.train import TrainingExtras, train_detector

    gpu_ids = [g.strip() for g in (gpus or "").split(",") if g.strip()]
    if gpu_ids and device is None:
        device = darknet_gpu(f"-gpus {gpus}", gpu_ids[0])
        if len(gpu_ids) > 1 and device != "cpu" and "WORLD_SIZE" not in os.environ:
            relaunch_under_torchrun(gpu_ids)
    extras = TrainingExtras(calc_map=calc_map, map_epochs=map_epochs, chart=chart, mjpeg_port=mjpeg_port,
                            dialect=ALEXEYAB if dialect is ALEXEYAB else None)
    return train_detector(data, cfg, weights, clear=clear, device=device, amp=amp, workers=workers, seed=seed,
                          max_batches=max_batches, log=click.echo, decoder=decoder or TRAINING_DECODER, extras=extras)


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
@alexeyab_switch("AlexeyAB's label-path rule (its calc_anchors reads the labels beside the images).")
def detector_calc_anchors(data, clusters, width, height, show, seed, dialect) -> None:
    """Dimension clusters (YOLOv2 §2): k-means with 1-IoU distance over the train list's boxes, printed as
    AlexeyAB's `detector calc_anchors` (the only Darknet that has it), with its anchors.txt and
    counters_per_class.txt written here."""
    from ..data.anchors import calc_anchors, plot_anchors

    # DARKNET(AlexeyAB detector.c:calc_anchors): reads the label files only
    check_data(data, None, dialect, "train", "data/train.list", images=False, purpose="cluster")
    result = calc_anchors(data, clusters, width, height, seed=seed, label_rule=dialect.label_path)
    for line in result.alexeyab_lines():
        click.echo(line)
    result.write_alexeyab_files()
    if show:
        click.echo(f"Saved {plot_anchors(result, show)}")
