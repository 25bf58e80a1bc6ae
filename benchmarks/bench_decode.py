"""Image decoding speed: the stb_image-exact decoder (`load_image`, default) vs OpenCV (`decoder="opencv"`).

Per image, ms per call (medians over --runs interleaved calls after --warmup) for:

* ``decode``: `load_image` alone;
* ``valid input``: decode + letterbox to 416x416 float32 (what `detector valid` does before the forward);
* ``train sample``: decode + `augment_detection` to 416x416 (one training sample, as the data loader makes it);
* with --forward, ``valid image``: valid input + a yolov2-voc forward at batch 1 (the pack's weights).

Images: data/dog.jpg (768x576), and dog.jpg resized to 1920x1080 and 416x416, saved by OpenCV at
quality 95 (4:2:0), in a temp dir. The ratio column is stb / OpenCV.

Usage: python benchmarks/bench_decode.py [--out results/bench/decode.json] [--runs 15] [--forward]
"""
from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import common  # before torch: sets OMP_WAIT_POLICY, which OpenMP reads when torch loads it
import cv2
import numpy as np
import torch
from common import REPO, interleave, print_table, reference_cfg, reference_weights, set_threads, write_json

from pydarknet.data.augment import AugmentOptions, augment_detection
from pydarknet.image import load_image, network_input
from pydarknet.network import load_network

DECODERS = ("stb", "opencv")
NET_SIZE = 416
SIZES = {"1920x1080": (1920, 1080), "416x416": (416, 416)}
TRUTHS = np.array([[0.5, 0.5, 0.4, 0.6, 1]], np.float32)


def test_images(folder: Path) -> dict[str, Path]:
    """data/dog.jpg and its resizes to SIZES, written as JPEGs into `folder`."""
    dog = REPO / "data" / "dog.jpg"
    images = {"dog.jpg 768x576": dog}
    pixels = cv2.imread(str(dog))
    for name, size in SIZES.items():
        images[f"dog {name}"] = folder / f"dog_{name}.jpg"
        cv2.imwrite(str(images[f"dog {name}"]), cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
    return images


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    return partial(common.timed, fn, torch.device("cpu"))


def valid_input(path: Path, decoder: str) -> np.ndarray:
    return network_input(load_image(path, decoder), NET_SIZE, NET_SIZE)


def train_sample(path: Path, decoder: str) -> tuple[np.ndarray, np.ndarray]:
    return augment_detection(load_image(path, decoder), TRUTHS, NET_SIZE, NET_SIZE, AugmentOptions(),
                             np.random.default_rng(0))


def cases(images: dict[str, Path], forward: bool) -> dict[tuple[str, str, str], Callable[[], float]]:
    """(image, stage, decoder) -> one timed call."""
    stages: dict[str, Callable[[Path, str], object]] = {
        "decode": lambda path, decoder: load_image(path, decoder), "valid input": valid_input,
        "train sample": train_sample}
    if forward:
        net = load_network(reference_cfg("yolov2-voc"), reference_weights("yolov2-voc"), "cpu").eval()

        @torch.inference_mode()
        def valid_image(path: Path, decoder: str):
            return net(torch.from_numpy(valid_input(path, decoder))[None])
        stages["valid image"] = valid_image
    return {(image, stage, decoder): timed(partial(run, path, decoder))
            for image, path in images.items() for stage, run in stages.items() for decoder in DECODERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--forward", action="store_true", help="also time a yolov2-voc forward per image")
    args = parser.parse_args()
    set_threads()
    with tempfile.TemporaryDirectory() as folder:
        images = test_images(Path(folder))
        seconds = interleave(cases(images, args.forward), args.warmup, args.runs)
    median = {key: float(np.median(values)) for key, values in seconds.items()}
    rows, summary = [], {}
    for image, stage in dict.fromkeys((image, stage) for image, stage, _ in median):
        stb, opencv = median[image, stage, "stb"], median[image, stage, "opencv"]
        rows.append([image, stage, f"{stb * 1e3:.1f}", f"{opencv * 1e3:.1f}", f"{stb / opencv:.2f}"])
        summary.update({f"{image} {stage}: stb ms": stb * 1e3, f"{image} {stage}: opencv ms": opencv * 1e3,
                        f"{image} {stage}: stb/opencv": stb / opencv})
    print_table(rows, ["image", "stage", "stb ms", "opencv ms", "ratio"])
    write_json(args.out, {"summary": summary, "runs": args.runs, "warmup": args.warmup})


if __name__ == "__main__":
    main()
