"""`pydarknet serve CFG WEIGHTS`: the detector over HTTP (a page to upload an image, and POST /detect)."""
from __future__ import annotations

import click

from ..data.files import read_names
from ..errors import DataError
from .common import (alexeyab_mode_options, classes_of, device_option, existing_file, inference_options, log, main,
                     names_for, one_image_at_a_time, open_network, shipped_file)


@one_image_at_a_time
@main.command("serve")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.option("--data", "data", type=shipped_file, default=None, help="A .data file whose names= names the classes.")
@click.option("--names", "names_file", type=shipped_file, default=None, help="The class names, one a line.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="TCP port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface, reachable from other machines).")
@click.option("--max-bytes", "max_bytes", type=click.IntRange(1), default=20 * 1024 * 1024, show_default=True,
              help="Largest image upload accepted (larger: 413).")
@click.option("--sample", "sample", type=shipped_file, default="data/dog.jpg", show_default=True,
              help="The image the page's 'try the sample image' link sends.")
@click.option("-thresh", "thresh", type=float, default=None, help="Detection threshold.  [default: 0.5; -ab: 0.25]")
@click.option("-hier", "hier", type=float, default=0.5, show_default=True, help="WordTree threshold.")
@alexeyab_mode_options
@device_option
@inference_options
def serve_command(cfg, weights, data, names_file, port, host, max_bytes, sample, thresh, hier, dialect, letter_box, device,
                  inference) -> None:
    """Serve a detector: GET / is a page to upload an image and see its detections drawn; POST /detect with an
    image file's bytes as the body answers Darknet's detections as JSON (names, probabilities, boxes relative to
    the image and in pixels). Ctrl-C stops it."""
    from ..serve.app import DetectionServer, DetectionService

    if data is not None and names_file is not None:
        raise click.UsageError("--data and --names both name the classes: give one")
    net = open_network(cfg, weights, device, **inference)
    classes = classes_of(net, "pydarknet serve")
    if names_file is not None:
        names = read_names(names_file)
        if len(names) < classes:
            raise DataError(f"{names_file}: {len(names)} names for the {classes} classes of {cfg}")
    elif data is not None:
        names = names_for(data, classes=classes)
    else:
        names = [str(k) for k in range(classes)]
        log.info("no --data or --names: classes are named by their index")
    service = DetectionService(net, names, dialect.test_thresh if thresh is None else thresh, hier,
                               letterbox=dialect.letterbox(net, letter_box), dialect=dialect)
    server = DetectionServer(service, port, host, max_bytes, sample)
    click.echo(f"Serving {cfg} on {server.url} (upload page; POST /detect with image bytes); Ctrl-C stops", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("Stopped.", err=True)
