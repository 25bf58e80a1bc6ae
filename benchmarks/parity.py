"""Parity report: how far pydarknet's numbers are from the C Darknet's reference pack.

    python benchmarks/parity.py [--reference ../shared/reference]

Prints, per net, the worst per-layer error relative to the layer's max |value| (README §9's measure),
the region/softmax output error, and whether the detections and printed lines are identical; then the
one-step training errors. These are the figures quoted in the project README.
"""
from __future__ import annotations

import argparse
import lzma
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from reference import (FULL_NETS, MINI_NETS, force_leaky_slopes, images_for, is_classifier,  # noqa: E402
                       read_json)

from pydarknet.data.files import read_names  # noqa: E402
from pydarknet.decode import do_nms_sort, format_detections, get_region_detections  # noqa: E402
from pydarknet.engine.sgd import DarknetSGD  # noqa: E402
from pydarknet.engine.step import train_step  # noqa: E402
from pydarknet.network import Darknet, load_network  # noqa: E402
from pydarknet.weights import load_weights  # noqa: E402


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


def network_input(reference: Path, image: str, size: int) -> torch.Tensor:
    return torch.from_numpy(np.load(reference / "inputs" / f"{image}_{size}x{size}.npy"))[None]


def detections_identical(net: Darknet, output: torch.Tensor, folder: Path) -> tuple[int, int]:
    """(cases whose printed lines equal Darknet's, cases) over the three thresholds."""
    names = _names(net.region.options.classes)
    same = 0
    for thresh in ("0.10", "0.25", "0.50"):
        expected = read_json(folder / f"dets_t{thresh}.json")
        dets = get_region_detections(output, net.region.options.anchors, net.width, net.height,
                                     expected["image_w"], expected["image_h"], float(thresh), tree=net.region.tree)
        printed = format_detections(do_nms_sort(dets, net.region.options.classes), names, float(thresh))
        same += printed == expected["printed"]
    return same, 3


def _names(classes: int) -> list[str]:
    """The names file the reference runs used, chosen by class count (README §5)."""
    files = {20: "voc.names", 80: "coco.names", 9418: "9k.names"}
    return read_names(Path(__file__).resolve().parent.parent / "data" / files[classes])


def forward_report(reference: Path, name: str, size: int, net: Darknet, mini: bool) -> str:
    worst_layer, worst_output, identical, cases = 0.0, 0.0, 0, 0
    for image in images_for(name):
        folder = reference / "forward" / name / image
        with torch.no_grad():
            outputs = net.forward_layers(network_input(reference, image, size))
        if mini and (folder / "layers.npz").exists():
            layers = np.load(folder / "layers.npz")
            for index, output in enumerate(outputs):
                key = f"layer_{index:03d}"
                if key in layers:
                    worst_layer = max(worst_layer, relative_error(output[0].numpy().reshape(layers[key].shape),
                                                                  layers[key]))
        final = outputs[-1][0].numpy()
        if is_classifier(name):
            worst_output = max(worst_output, float(np.abs(final.ravel() - np.load(folder / "softmax.npy")).max()))
            continue
        if (folder / "region.npy").exists():
            worst_output = max(worst_output, relative_error(final, np.load(folder / "region.npy")))
        else:  # full-size yolo9000: entries 0..4 everywhere, class vectors at a subset of cells
            subset = np.load(folder / "region_subset.npz")
            anchor, y, x = subset["cells"].T
            worst_output = max(worst_output, relative_error(final[:, :5], subset["coords_obj"]),
                               relative_error(final[anchor, 5:, y, x], subset["class_vectors"]))
        same, total = detections_identical(net, outputs[-1][0], folder) if (folder / "region.npy").exists() \
            else (0, 0)
        identical, cases = identical + same, cases + total
    layer_text = f"{worst_layer:.1e}" if mini else "n/a (stats only)"
    output_text = f"abs {worst_output:.1e}" if is_classifier(name) else f"rel {worst_output:.1e}"
    dets_text = f"{identical}/{cases}" if cases else "—"
    return f"| {name} | {layer_text} | {output_text} | {dets_text} |"


def training_report(reference: Path, case: str) -> str:
    name, seen = case.rsplit("_seen", 1)
    folder = reference / "train" / case
    images = torch.from_numpy(np.load(reference / "train" / f"{name}_seen0" / "input.npy"))
    truths = torch.from_numpy(np.load(folder / "truth.npy"))
    net = Darknet.from_cfg(reference / "mini" / f"{name}.train.cfg")
    load_weights(net, reference / "mini" / f"{name}.weights")
    force_leaky_slopes(net, np.load(folder / "leaky_ties.npz"))  # README §6: rounding-level ties
    step = train_step(net, images, truths, DarknetSGD(net), seen=int(seen))
    delta = np.load(folder / "region_delta.npz")["delta"]
    grads = np.load(folder / "grads.npz")
    bias_error = max(relative_error(step.updates[int(k.split("_")[1])]["biases"].numpy(), grads[k])
                     for k in grads.files if k.endswith("_biases"))
    cost = read_json(folder / "train_meta.json")["cost"]
    return (f"| {case} | {relative_error(step.loss.delta.numpy(), delta):.1e} | "
            f"{abs(step.loss.cost - cost) / cost:.1e} | {bias_error:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference")
    reference = parser.parse_args().reference
    warnings.simplefilter("ignore")
    torch.set_grad_enabled(False)
    print("| net | worst layer (max err / max value) | region / softmax output | printed detections identical |")
    print("|---|---|---|---|")
    for name, size in MINI_NETS.items():
        print(forward_report(reference, name, size, load_network(reference / "mini" / f"{name}.cfg",
                                                                   reference / "mini" / f"{name}.weights", "cpu"), True))
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in FULL_NETS.items():
            weights = Path(tmp) / f"{name}.weights"
            with lzma.open(reference / "weights" / f"{name}.weights.xz") as src, open(weights, "wb") as dst:
                shutil.copyfileobj(src, dst, length=16 << 20)
            net = load_network(reference / "darknet" / "cfg" / f"{name}.cfg", weights, "cpu")
            print(forward_report(reference, name, size, net, False))
            weights.unlink()
    torch.set_grad_enabled(True)
    print()
    print("| training step | region delta (rel) | cost (rel) | worst bias gradient (rel) |")
    print("|---|---|---|---|")
    for case in ("mini-yolov2-voc_seen0", "mini-yolov2-voc_seen20000", "mini-yolo9000_seen0",
                 "mini-yolo9000_seen20000"):
        print(training_report(reference, case))


if __name__ == "__main__":
    main()
