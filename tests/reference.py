"""Helpers for reading the Darknet reference pack in tests (see ../shared/reference/README.md)."""
from __future__ import annotations

import json
import lzma
import shutil
from pathlib import Path

import numpy as np
import torch

from pydarknet.image import network_input as image_network_input
from pydarknet.network import Darknet, load_network

MINI_NETS = {"mini-yolov2-voc": 416, "mini-yolov2-tiny-voc": 416, "mini-darknet19": 256, "mini-yolo9000": 224}
FULL_NETS = {"yolov2-voc": 416, "yolov2-tiny-voc": 416, "darknet19": 256, "yolo9000": 544}
DETECTOR_IMAGES = ("dog", "horses", "person")
CLASSIFIER_IMAGES = ("dog", "eagle")


# ../shared/reference-yolo (AlexeyAB's Darknet): the mini nets and the full-size nets with weights
YOLO_MINI_NETS = ("mini-yolov3-tiny", "mini-yolov4-tiny", "mini-yolov4", "mini-yolov7-tiny")
YOLO_FULL_NETS = ("yolov3-tiny", "yolov4-tiny")


def is_classifier(net_name: str) -> bool:
    return "darknet19" in net_name


def images_for(net_name: str) -> tuple[str, ...]:
    return CLASSIFIER_IMAGES if is_classifier(net_name) else DETECTOR_IMAGES


def network_input(reference: Path, image: str, size: int) -> torch.Tensor:
    """The exact letterboxed input Darknet fed the net, as a (1, 3, size, size) batch."""
    return torch.from_numpy(np.load(reference / "inputs" / f"{image}_{size}x{size}.npy"))[None]


def read_json(path: Path):
    return json.loads(path.read_text())


def mini_network(reference: Path, name: str) -> Darknet:
    return load_network(reference / "mini" / f"{name}.cfg", reference / "mini" / f"{name}.weights", "cpu")


def decompressed_weights(reference: Path, name: str, cache: Path) -> Path:
    """Decompress weights/<name>.weights.xz into `cache` once per test session."""
    target = cache / f"{name}.weights"
    if not target.exists():
        with lzma.open(reference / "weights" / f"{name}.weights.xz") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, length=16 << 20)
    return target


def yolo_forward_dirs(reference_yolo: Path) -> list[Path]:
    """Every forward/<net>/<image>/ folder of the YOLO pack (letter_box runs included)."""
    return sorted(path.parent for path in (reference_yolo / "forward").glob("*/*/meta.json"))


def yolo_network(reference_yolo: Path, meta: dict, cache: Path) -> Darknet:
    """The net a forward/<net>/<image>/meta.json ran: a mini net from mini/, a full-size one from its .xz."""
    weights = reference_yolo / meta["weights"]
    if weights.suffix == ".xz":
        weights = decompressed_weights(reference_yolo, weights.name.removesuffix(".weights.xz"), cache)
    return load_network(reference_yolo / meta["cfg"], weights, "cpu")


def yolo_input(reference_yolo: Path, meta: dict) -> torch.Tensor:
    """The exact network input AlexeyAB's Darknet fed the net (resized or letterboxed), as a batch of one.

    The pack leaves out the inputs its README §4 says follow from decoded/ (horses at 320, letterboxed):
    those are made from decoded/<image>.npy (`made_yolo_input`).
    """
    path = reference_yolo / meta["input"]
    if path.exists():
        return torch.from_numpy(np.load(path))[None]
    return torch.from_numpy(made_yolo_input(reference_yolo, path.stem))[None]


def made_yolo_input(reference_yolo: Path, name: str) -> np.ndarray:
    """inputs/<name>.npy (e.g. horses_320x320_resize) made from decoded/<image>.npy as README §4 describes."""
    image, size, mode = name.split("_")
    width, height = (int(side) for side in size.split("x"))
    decoded = np.load(reference_yolo / "decoded" / f"{image}.npy")
    return image_network_input(decoded, width, height, letterbox=mode == "letterbox")


def full_network(reference: Path, name: str, cache: Path) -> Darknet:
    # Relative tree=/map= paths in the original cfgs resolve next to the cfg folder (darknet/data/).
    return load_network(reference / "darknet" / "cfg" / f"{name}.cfg",
                        decompressed_weights(reference, name, cache), "cpu")


def assert_layer_close(actual: np.ndarray, expected: np.ndarray, what: str, rel: float = 1e-4) -> None:
    """README §9: per layer |a-b| <= rel*max|b| + rel*|b|."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    scale = np.abs(expected).max()
    excess = np.abs(actual - expected) - (rel * scale + rel * np.abs(expected))
    assert excess.max() <= 0, (f"{what}: max |a-b| = {np.abs(actual - expected).max():.3g} "
                               f"(max|b| = {scale:.3g}) exceeds the §9 tolerance")


LEAKY_SLOPE = 0.1


def force_leaky_slopes(net: Darknet, ties) -> list:
    """README §6: use Darknet's leaky slope at the rounding-level ties listed in `leaky_ties.npz`."""
    handles = []
    for index in np.unique(ties["layer"]):
        pick = ties["layer"] == index
        where = tuple(torch.from_numpy(ties["index"][pick].astype(np.int64)).T)   # (image, channel, y, x)
        slope = torch.from_numpy(ties["slope"][pick])

        def hook(_module, inputs, _output, where=where, slope=slope):
            v = inputs[0]
            mask = torch.where(v > 0, 1.0, LEAKY_SLOPE).to(v.dtype)
            mask[tuple(i.to(v.device) for i in where)] = slope.to(v.device, v.dtype)   # CUDA too
            return v * mask
        handles.append(net.layers[int(index)].activation.register_forward_hook(hook))
    return handles


def lines_after_prediction(stdout: str) -> list[str]:
    """The detection lines `detector test` prints after its `Predicted in` line (blank lines dropped)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Predicted in" in line)
    return [line for line in lines[start + 1:] if line]
