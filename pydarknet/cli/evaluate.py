"""`pydarknet detector valid | recall | map | demo`: thin click commands over the evaluation API."""
from __future__ import annotations

import contextlib
import time
import warnings

import click

from ..data.files import read_data_file
from ..errors import DataError
from .common import (alexeyab_mode_options, check_data, data_cfg_weights, decoder_option, detector, device_option,
                     existing_file, inference_options, names_for, open_network, classes_of)

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
    from ..evaluate.detect_list import VALID_LIST

    check_data(data, cfg, dialect, "valid", VALID_LIST, labels=False)   # valid writes detections: no labels read
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
    from ..dialect import PJREDDIE
    from ..evaluate import RECALL_LIST, valid_paths, validate_detector_recall

    check_data(data, cfg, PJREDDIE, "valid", RECALL_LIST, purpose="measure the recall of")
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
    from ..evaluate.detect_list import VALID_LIST

    data_file = read_data_file(data)
    check_data(data, cfg, dialect, "valid", VALID_LIST)
    net = open_network(cfg, weights, device, **inference)
    classes = classes_of(net, "detector map")
    names = names_for(data, classes=classes)
    # DIVERGES: AlexeyAB's map reads only the cfg's letter_box and ignores -letter_box; -letter_box is honoured
    letterbox = dialect.letterbox(net, letter_box)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingLabelWarning)   # the dataset check above counted them
        inputs = collect_map_inputs(net, valid_paths(data_file), progress=True, dialect=dialect,
                                    letterbox=letterbox,
                                    **_loader_args(workers, batch, decoder))
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
@click.argument("video", required=False)
@click.option("-c", "camera", type=click.IntRange(0), default=None,
              help="Camera index (cv2.VideoCapture(N)), read when no VIDEO is given.  [default: 0]")
@click.option("-thresh", "thresh", type=float, default=0.5, show_default=True, help="Detection threshold.")
@click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="WordTree threshold.")
@click.option("-avg", "avg", type=int, default=3, show_default=True, help="Frames whose outputs are averaged.")
@click.option("-out_filename", "out_filename", default=None,
              help="Annotated video (.avi: MJPG, else mp4v).  [default: out.mp4, unless -prefix or a port is given]")
@click.option("-prefix", "prefix", default=None, help="Save each drawn frame as <prefix>_%08d.jpg.")
@click.option("-mjpeg_port", "mjpeg_port", type=click.IntRange(1, 65535), default=None,
              help="Serve the drawn frames as an MJPEG stream on this port (open http://host:port/ in a browser).")
@click.option("-json_port", "json_port", type=click.IntRange(1, 65535), default=None,
              help="Serve each frame's detections as AlexeyAB's JSON stream on this port.")
@click.option("--host", "host", default="127.0.0.1", show_default=True,
              help="Address the -mjpeg_port / -json_port servers listen on (0.0.0.0: every interface).")
@click.option("-ext_output", "ext_output", is_flag=True,
              help="Print each frame's objects with their boxes in pixels, as AlexeyAB's demo.")
@click.option("-dont_show", "dont_show", is_flag=True, help="Accepted for AlexeyAB; no window is ever opened.")
@device_option
@inference_options
def detector_demo(data, cfg, weights, video, camera, thresh, hier, avg, out_filename, prefix, mjpeg_port, json_port,
                  host, ext_output, dont_show, device, inference) -> None:
    """Detect objects in every frame of VIDEO (a file or a stream URL such as rtsp://...), or of camera -c N,
    and write an annotated copy; -prefix, -mjpeg_port, -json_port and -ext_output send the frames elsewhere
    too. No window is opened. A stream or a camera runs until it closes or Ctrl-C."""
    from ..evaluate.video import annotate_video, is_stream_url

    if video is not None and camera is not None:
        raise click.UsageError(f"VIDEO {video} and -c {camera} both name the frames to read: give one")
    if video is not None and not is_stream_url(video):
        existing_file.convert(video, None, None)
    source = video if video is not None else camera or 0   # DARKNET(demo.c:demo): no file: webcam -c, default 0
    if out_filename is None and not (prefix or mjpeg_port or json_port):
        out_filename = DEMO_OUT_FILENAME
    net = open_network(cfg, weights, device, **inference)
    names = names_for(data, classes=classes_of(net, "detector demo"))
    click.echo(f"video file: {video}" if video is not None else f"Webcam index: {source}", err=True)
    with contextlib.ExitStack() as servers:
        sinks = _demo_sinks(names, prefix, ext_output, mjpeg_port, json_port, host, servers)
        stats = annotate_video(net, source, out_filename, names, thresh, hier, avg, progress=not ext_output,
                               sinks=sinks)
    wrote = f"; wrote {out_filename}" if out_filename else ""
    click.echo(f"{stats.frames} frames in {stats.seconds:.2f} s: FPS:{stats.fps:.1f}{wrote}")


DEMO_OUT_FILENAME = "out.mp4"   # DIVERGES: Darknet shows a window and writes no video unless -out_filename


def _demo_sinks(names, prefix, ext_output, mjpeg_port, json_port, host, servers: contextlib.ExitStack):
    """Where `detector demo` sends each drawn frame besides the video file; the servers are closed by `servers`."""
    from ..evaluate.video import FrameRate, ext_output_lines, prefix_sink
    from ..serve.json_stream import JsonStreamServer
    from ..serve.mjpeg import MjpegServer, encode_jpeg

    sinks = []
    if prefix:
        sinks.append(prefix_sink(prefix))
    if mjpeg_port:
        mjpeg = servers.enter_context(MjpegServer(mjpeg_port, host))
        sinks.append(lambda frame: mjpeg.publish(encode_jpeg(frame.image)))
    if json_port:
        json_stream = servers.enter_context(JsonStreamServer(json_port, host))
        sinks.append(lambda frame: json_stream.publish_detections(frame.detections, names, frame.frame_id))
    if ext_output:
        rate = FrameRate()

        def print_objects(frame) -> None:
            # DARKNET(AlexeyAB demo.c:demo): "Objects:", a line per box, then the frame rates
            height, width = frame.image.shape[:2]
            lines = ext_output_lines(frame.detections, names, frame.thresh, width, height)
            fps, avg_fps = rate.tick()
            click.echo("\n".join(["Objects:", "", *lines, "", f"FPS:{fps:.1f} \t AVG_FPS:{avg_fps:.1f}"]))
        sinks.append(print_objects)
    return sinks
