"""`pydarknet detector valid | recall | map | demo`: thin click commands over the evaluation API."""
from __future__ import annotations

import time
import warnings

import click

from ..data.files import read_data_file
from ..errors import DataError
from .common import (alexeyab_mode_options, data_cfg_weights, decoder_option, detector, device_option,
                     inference_options, names_for, open_network, classes_of)

workers_option = click.option("--workers", type=int, default=None,
                              help="Image decoding threads (0: decode between forwards, no overlap).")
batch_option = click.option("--batch", type=int, default=None, help="Images per forward pass.")


def list_options(function):
    """What every command that runs the net over an image list takes: --workers, --batch, the device,
    the decoder and the inference precision / backend."""
    for option in (inference_options, decoder_option, device_option, batch_option, workers_option):
        function = option(function)
    return function


def _loader_args(workers: int | None, batch: int | None, decoder: str | None) -> dict[str, int | str]:
    """Only the options given, so that the API's defaults stay the single source of them."""
    given = (("workers", workers), ("batch", batch), ("decoder", decoder))
    return {key: value for key, value in given if value is not None}


@detector.command("valid")
@data_cfg_weights()
@click.option("-out", "outfile", default=None,
              help="Result file prefix (default comp4_det_test_, coco_results or imagenet-detection).")
@alexeyab_mode_options
@list_options
def detector_valid(data, cfg, weights, outfile, dialect, letter_box, workers, batch, device, decoder,
                   inference) -> None:
    """Write Darknet's result files for the data file's `valid` list, as `darknet detector valid`."""
    from ..evaluate import ValidSetup, validate_detector

    setup = ValidSetup.from_data(data)
    net = open_network(cfg, weights, device, **inference)
    start = time.perf_counter()
    written = validate_detector(net, setup, outfile, progress=True, dialect=dialect,
                                letterbox=dialect.letterbox(net, letter_box),
                                **_loader_args(workers, batch, decoder))
    seconds = time.perf_counter() - start
    click.echo(f"Total Detection Time: {seconds:f} Seconds", err=True)
    click.echo(f"{len(setup.paths)} images, {len(setup.paths) / seconds:.2f} images/s; wrote {len(written)} "
               f"file(s) under {setup.results}", err=True)


@detector.command("recall")
@data_cfg_weights()
@list_options
def detector_recall(data, cfg, weights, workers, batch, device, decoder, inference) -> None:
    """Proposal recall on the data file's `valid` list, as `darknet detector recall`.

    DIVERGES: Darknet ignores the data file and always reads data/coco_val_5k.list; here that is
    only the default when the data file has no `valid=`.
    """
    from ..evaluate import RECALL_LIST, valid_paths, validate_detector_recall

    paths = valid_paths(read_data_file(data), RECALL_LIST)
    net = open_network(cfg, weights, device, **inference)
    for stats in validate_detector_recall(net, paths, **_loader_args(workers, batch, decoder)):
        # DARKNET(detector.c:validate_detector_recall): a running-totals line per image on stderr, which
        # is this job's progress report (a bar drawn between these lines would only garble them)
        click.echo(stats.line(), err=True)


@detector.command("map")
@data_cfg_weights()
@click.option("-iou_thresh", "iou_thresh", type=float, default=0.5, show_default=True,
              help="Minimum IoU of a true positive.")
@click.option("-thresh", "thresh", type=float, default=0.25, show_default=True,
              help="Confidence threshold of the precision / recall / F1 / IoU line.")
@click.option("-points", "points", type=int, default=0, show_default=True,
              help="AP interpolation: 0 all points (VOC2010+), 11 (VOC2007), 101 (COCO).")
@alexeyab_mode_options
@list_options
def detector_map(data, cfg, weights, iou_thresh, thresh, points, dialect, letter_box, workers, batch, device,
                 decoder, inference) -> None:
    """Per-class AP and mAP on the data file's `valid` list (AlexeyAB's `detector map` report).

    Difficult objects go in an optional `<label>.difficult` file beside each label file (same
    `class x y w h` lines); they are neither positives nor false positives. Images without a label
    file are skipped and counted. With `eval=coco` the pycocotools AP@[.5:.95], AP50, AP75 follow.
    With -ab: AlexeyAB's inference (stretched images unless -letter_box / letter_box=1), matching of
    unclipped boxes and report, line for line (`evaluate.alexeyab_map`).
    """
    from ..evaluate import MissingLabelWarning, coco_ap, collect_map_inputs, valid_paths

    data_file = read_data_file(data)
    net = open_network(cfg, weights, device, **inference)
    classes = classes_of(net, "detector map")
    names = names_for(data, classes=classes)
    # DIVERGES: AlexeyAB's map reads only the cfg's letter_box and ignores -letter_box; -letter_box is honoured
    letterbox = dialect.letterbox(net, letter_box)
    with warnings.catch_warnings(record=True) as missing:
        warnings.simplefilter("always", MissingLabelWarning)
        inputs = collect_map_inputs(net, valid_paths(data_file), progress=True, dialect=dialect,
                                    letterbox=letterbox,
                                    **_loader_args(workers, batch, decoder))
    for warning in missing:
        click.echo(f"Warning: {warning.message}", err=True)
    if inputs.skipped:
        click.echo(f"{len(inputs.skipped)} of {len(inputs.skipped) + len(inputs.paths)} images skipped: "
                   f"no label file", err=True)
    if not inputs.paths:
        raise DataError(f"{data}: no image of the valid list has a label file and can be read: nothing to evaluate")
    for line in dialect.map_report(inputs.detections, inputs.ground_truths, names[:classes], iou_thresh, points,
                                   thresh):
        click.echo(line)
    if dialect.map_report_extended and data_file.get_str("eval", "voc") == "coco":
        coco = coco_ap(inputs.detections, inputs.ground_truths, classes, inputs.image_sizes)
        click.echo(f"COCO AP@[.5:.95] = {coco.ap:.4f}, AP50 = {coco.ap50:.4f}, AP75 = {coco.ap75:.4f}")


@detector.command("demo")
@data_cfg_weights()
@click.argument("video", type=click.Path(exists=True, dir_okay=False))
@click.option("-thresh", "thresh", type=float, default=0.5, show_default=True, help="Detection threshold.")
@click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="WordTree threshold.")
@click.option("-avg", "avg", type=int, default=3, show_default=True, help="Frames whose outputs are averaged.")
@click.option("-out_filename", "out_filename", default="out.mp4", show_default=True,
              help="Annotated video (.avi: MJPG, else mp4v).")
@device_option
@inference_options
def detector_demo(data, cfg, weights, video, thresh, hier, avg, out_filename, device, inference) -> None:
    """Detect objects in every frame of VIDEO and write an annotated copy (no window is opened)."""
    from ..evaluate import annotate_video

    net = open_network(cfg, weights, device, **inference)
    names = names_for(data, classes=classes_of(net, "detector demo"))
    click.echo(f"video file: {video}", err=True)
    stats = annotate_video(net, video, out_filename, names, thresh, hier, avg, progress=True)
    click.echo(f"{stats.frames} frames in {stats.seconds:.2f} s: FPS:{stats.fps:.1f}; wrote {out_filename}")
