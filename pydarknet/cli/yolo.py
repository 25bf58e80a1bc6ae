"""`pydarknet yolo test`: YOLOv1 as pjreddie's `darknet yolo test` runs it (examples/yolo.c)."""
from __future__ import annotations

import time

import click

from .common import (DarknetGroup, decoder_option, device_option, end_without_teardown, existing_file, image_paths,
                     main, one_image_at_a_time, open_network, shipped_file, shipped_or_given)

# DARKNET(yolo.c:voc_names): `yolo` names the 20 VOC classes itself, it reads no .data file
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
             "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
TEST_THRESH = 0.2   # DARKNET(yolo.c:run_yolo): -thresh default
TEST_NMS = 0.4      # DARKNET(yolo.c:test_yolo): float nms=.4


@main.group(cls=DarknetGroup)
def yolo() -> None:
    """YOLOv1 ([detection] nets) as examples/yolo.c: test."""


@one_image_at_a_time
@yolo.command("test")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file, required=False)
@click.argument("image", required=False)
@click.option("-thresh", "thresh", type=float, default=TEST_THRESH, show_default=True, help="Detection threshold.")
@click.option("-out", "out", default=None,
              help="Output image name without .jpg (default predictions); for images read from stdin, "
                   "the prefix of <out>_<image name>.jpg, or a folder.")
@device_option
@decoder_option
def yolo_test(cfg, weights, image, thresh, out, device, decoder) -> None:
    """Detect the VOC classes in IMAGE (or in each path read from stdin) with a YOLOv1 net, as `darknet yolo test`:
    the image stretched to the net, NMS .4, yolo.c's own VOC names."""
    from ..detections import format_detections
    from ..heads.detector import detection_head
    from ..image import draw_detections, load_image, save_image
    from ..predict import detect_boxes
    from .detector import AnnotatedNames

    net = open_network(cfg, weights, device, trained=weights is not None)
    head = detection_head(net, "yolo test")
    if head.kind != "detection":
        raise click.UsageError(f"{cfg}: yolo test runs YOLOv1 nets, whose last layer is [detection]; this one has a "
                               f"[{head.kind}] head: use `detector test`")
    if head.classes > len(VOC_NAMES):
        raise click.UsageError(f"{cfg}: yolo test names {len(VOC_NAMES)} VOC classes, the net predicts {head.classes}")
    names = VOC_NAMES[:head.classes]
    outputs = AnnotatedNames(out, one_image=image is not None)
    for path in image_paths(image):
        picture = load_image(shipped_or_given(path), decoder or "stb")   # data/dog.jpg from anywhere
        start = time.perf_counter()
        # DARKNET(yolo.c:test_yolo): resize_image (no letterbox), get_network_boxes(net, 1, 1, ...), do_nms_sort
        dets = detect_boxes(net, picture, thresh, nms=TEST_NMS, letterbox=False)
        click.echo(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.")
        for line in format_detections(dets, names, thresh):   # DARKNET(image.c:draw_detections)
            click.echo(line)
        save_image(outputs.next(path), draw_detections(picture, dets, names, thresh))
    end_without_teardown()   # everything is written and closed
