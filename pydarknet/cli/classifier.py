"""`pydarknet classifier predict | label | train | valid` and `pydarknet classify`."""
from __future__ import annotations

import time

import click

from ..cfg import resolve_path
from ..choices import TRAINING_DECODER
from ..data.files import read_data_file, read_list
from ..errors import MissingFileError
from .common import (classifier, data_cfg_weights, decoder_option, device_option, existing_file, image_paths,
                     inference_options, main, names_for, one_image_at_a_time, open_network, report_skipped,
                     shipped_file, shipped_or_given)


@one_image_at_a_time
@classifier.command("predict")
@data_cfg_weights()
@click.argument("image", required=False)
@click.option("-t", "top", type=int, default=0, help="How many classes to print (default: the data file's top, else 1).")
@device_option
@decoder_option
@inference_options
def classifier_predict(data, cfg, weights, image, top, device, decoder, inference) -> None:
    """Print the top classes of IMAGE as `darknet classifier predict`."""
    _run_prediction(data, cfg, weights, image, top, device, decoder, inference)


@one_image_at_a_time
@main.command("classify")
@click.argument("cfg", type=shipped_file)
@click.argument("weights", type=existing_file)
@click.argument("image", required=False)
@device_option
@decoder_option
@inference_options
def classify_command(cfg, weights, image, device, decoder, inference) -> None:
    """`darknet classify`: `classifier predict` with cfg/imagenet1k.data and the top 5."""
    # DARKNET(darknet.c:main): classify is predict_classifier("cfg/imagenet1k.data", cfg, weights, image, 5)
    _run_prediction(str(resolve_path("cfg/imagenet1k.data")), cfg, weights, image, 5, device, decoder, inference)


def _run_prediction(data: str, cfg: str, weights: str, image: str | None, top: int, device: str | None,
                    decoder: str | None, inference: dict[str, str]) -> None:
    from ..image import load_image
    from ..predict import classify, format_predictions

    # DARKNET(classifier.c:predict_classifier): -t, else the data file's top=, else 1
    top = top or read_data_file(data).get_int("top", 1)
    names = names_for(data, default="data/labels.list")
    net = open_network(cfg, weights, device, **inference)
    for path in image_paths(image):
        start = time.perf_counter()
        predictions = classify(net, load_image(shipped_or_given(path), decoder or "stb"), top)
        click.echo(f"{path}: Predicted in {time.perf_counter() - start:f} seconds.", err=True)
        for line in format_predictions(predictions, names):
            click.echo(line)


@classifier.command("label")
@data_cfg_weights()
@device_option
def classifier_label(data, cfg, weights, device) -> None:
    """Print the best label of every image of the data file's `test` list, as `darknet classifier label`.

    .data keys: `test` (data/train.list), `names` (data/labels.list), `classes` (2).
    """
    from ..predict import label

    # DARKNET(classifier.c:label_classifier): these keys and defaults
    data_file = read_data_file(data)
    names = names_for(data, default="data/labels.list")
    classes = data_file.get_int("classes", 2)
    images = read_list(listed_images(data_file, "test", "data/train.list"))   # before the weights: #21 item 5
    net = open_network(cfg, weights, device)
    for path in images:
        click.echo(names[label(net, path, classes)])


def listed_images(data_file, key: str, default: str):
    """The list file `key=` of a .data file names, else Darknet's default; when neither is there, an error
    saying the key is absent (not that the .data file names the default)."""
    if data_file.has(key):
        return data_file.get_path(key)
    try:
        return resolve_path(default)
    except MissingFileError:
        raise MissingFileError(f"{data_file.path}: no {key}= list of images, and Darknet's default {default} is not "
                               f"there: add {key}=<a file listing the images>") from None


@classifier.command("train")
@data_cfg_weights(weights_required=False)
@click.option("-clear", "clear", is_flag=True, help="Start seen (and so the schedule) from 0.")
@click.option("--workers", type=int, default=2, show_default=True, help="Data loading processes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of image sampling and augmentation.")
@click.option("--max-batches", type=int, default=None, help="Override the cfg's max_batches.")
@device_option
@decoder_option
def classifier_train(data, cfg, weights, clear, workers, seed, max_batches, device, decoder) -> None:
    """Train a classifier as `darknet classifier train`; backups go to the .data backup folder."""
    from ..engine.classifier import train_classifier

    result = train_classifier(data, cfg, weights, clear=clear, device=device, workers=workers, seed=seed,
                              max_batches=max_batches, log=click.echo, decoder=decoder or TRAINING_DECODER)
    report_skipped(result.skipped_samples)


@classifier.command("valid")
@data_cfg_weights()
@click.option("--workers", type=int, default=2, show_default=True, help="Image decoding processes.")
@device_option
@inference_options
def classifier_valid(data, cfg, weights, workers, device, inference) -> None:
    """Top-1 / top-k accuracy on the .data valid list, as `darknet classifier valid`."""
    from ..evaluate import validate_classifier

    # DARKNET(classifier.c:validate_classifier_single): valid=, default data/train.list; found before the weights
    listed_images(read_data_file(data), "valid", "data/train.list")
    validate_classifier(open_network(cfg, weights, device, **inference), data, workers=workers, log=click.echo)
