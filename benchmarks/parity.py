"""Parity report: how far pydarknet's numbers are from the C Darknet's reference pack.

    python benchmarks/parity.py [--reference ../shared/reference] [--device cuda] [--json parity.json]

Prints, per net, the worst per-layer error relative to the layer's max |value| (README §9's measure),
the region/softmax output error, and whether the detections and printed lines are identical; then the
one-step training errors. These are the figures quoted in the project README. The last column says
whether the row is within the pack's README §9 tolerances. Nets whose files are not in the pack given
(a `benchmarks/gpu_pack.py` subset) are left out with a line saying so; a mini net without
`layers.npz` is compared layer by layer on `layers_stats.json` (absmean and first16, §9's full-size
measures) instead. On CUDA, TF32 is off (§9: float32 only).
"""
from __future__ import annotations

import argparse
import json
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
from pydarknet.detections import do_nms_sort, format_detections  # noqa: E402
from pydarknet.heads.region.detections import get_region_detections  # noqa: E402
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


# README §9 (float32) as upper bounds of the measures below
MINI_TOLERANCE = 1e-4        # per layer and region output, relative to the max |value|
FULL_TOLERANCE = 1e-3        # full-size region output; per-layer stats (absmean rel, first16 abs)
SOFTMAX_TOLERANCE = 1e-5     # classifier probabilities, abs
TRAIN_TOLERANCE = 1e-4       # region delta and cost (rel), bias gradients (rel to the max)


def layer_stats_error(outputs: list[torch.Tensor], stats_path: Path) -> float:
    """Worst over layers of the absmean relative error and the first16 absolute error (§9, full size)."""
    worst = 0.0
    for entry in read_json(stats_path):
        values = outputs[entry["index"]][0].contiguous().reshape(-1).double()
        absmean = float(values.abs().mean())
        first16 = values[:16].numpy()
        worst = max(worst, abs(absmean - entry["absmean"]) / entry["absmean"],
                    float(np.abs(first16 - np.asarray(entry["first16"])).max()))
    return worst


def forward_figures(reference: Path, name: str, size: int, net: Darknet, mini: bool, device: torch.device) -> dict:
    """Worst per-layer error (arrays, else stats), worst output error and identical detections of one net."""
    worst_layer, worst_output, identical, cases, layer_measure = 0.0, 0.0, 0, 0, "stats"
    for image in images_for(name):
        folder = reference / "forward" / name / image
        with torch.no_grad():
            outputs = [o.float().cpu() for o in net.forward_layers(network_input(reference, image, size).to(device))]
        if mini and (folder / "layers.npz").exists():
            layer_measure = "arrays"
            layers = np.load(folder / "layers.npz")
            for index, output in enumerate(outputs):
                key = f"layer_{index:03d}"
                if key in layers:
                    worst_layer = max(worst_layer, relative_error(output[0].numpy().reshape(layers[key].shape),
                                                                  layers[key]))
        elif (folder / "layers_stats.json").exists():
            worst_layer = max(worst_layer, layer_stats_error(outputs, folder / "layers_stats.json"))
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
    layer_tolerance = MINI_TOLERANCE if mini and layer_measure == "arrays" else FULL_TOLERANCE
    output_tolerance = SOFTMAX_TOLERANCE if is_classifier(name) else MINI_TOLERANCE if mini else FULL_TOLERANCE
    within = worst_layer <= layer_tolerance and worst_output <= output_tolerance and identical == cases
    return {"net": name, "device": device.type, "layer_measure": layer_measure, "worst_layer": worst_layer,
            "output_measure": "abs" if is_classifier(name) else "rel", "worst_output": worst_output,
            "detections_identical": identical, "detection_cases": cases, "within_tolerance": within}


def forward_row(figures: dict) -> str:
    layer = figures["layer_measure"]
    layer_text = f"{figures['worst_layer']:.1e}" + (" (stats)" if layer == "stats" else "")
    cases = figures["detection_cases"]
    dets_text = f"{figures['detections_identical']}/{cases}" if cases else "—"
    return (f"| {figures['net']} | {layer_text} | {figures['output_measure']} {figures['worst_output']:.1e} | "
            f"{dets_text} | {_verdict(figures)} |")


def training_figures(reference: Path, case: str, device: torch.device) -> dict:
    name, seen = case.rsplit("_seen", 1)
    folder = reference / "train" / case
    images = torch.from_numpy(np.load(reference / "train" / f"{name}_seen0" / "input.npy"))
    truths = torch.from_numpy(np.load(folder / "truth.npy"))
    net = Darknet.from_cfg(reference / "mini" / f"{name}.train.cfg")
    load_weights(net, reference / "mini" / f"{name}.weights")
    net.to(device)
    force_leaky_slopes(net, np.load(folder / "leaky_ties.npz"))  # README §6: rounding-level ties
    step = train_step(net, images.to(device), truths.to(device), DarknetSGD(net), seen=int(seen))
    delta = np.load(folder / "region_delta.npz")["delta"]
    grads = np.load(folder / "grads.npz")
    bias_error = max(relative_error(step.updates[int(k.split("_")[1])]["biases"].cpu().numpy(), grads[k])
                     for k in grads.files if k.endswith("_biases"))
    cost = read_json(folder / "train_meta.json")["cost"]
    figures = {"case": case, "device": device.type, "delta": relative_error(step.loss.delta.cpu().numpy(), delta),
               "cost": abs(step.loss.cost - cost) / cost, "bias_gradient": bias_error}
    figures["within_tolerance"] = max(figures["delta"], figures["cost"], bias_error) <= TRAIN_TOLERANCE
    return figures


def training_row(figures: dict) -> str:
    return (f"| {figures['case']} | {figures['delta']:.1e} | {figures['cost']:.1e} | {figures['bias_gradient']:.1e} | "
            f"{_verdict(figures)} |")


def _verdict(figures: dict) -> str:
    return "yes" if figures["within_tolerance"] else "**NO**"


def _present(reference: Path, paths: list[str], what: str) -> bool:
    missing = [p for p in paths if not (reference / p).exists()]
    if missing:
        print(f"({what}: left out, {missing[0]} is not in {reference})")
    return not missing


TRAINING_CASES = ("mini-yolov2-voc_seen0", "mini-yolov2-voc_seen20000", "mini-yolo9000_seen0",
                  "mini-yolo9000_seen20000")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--json", type=Path, help="also write every figure and verdict here")
    args = parser.parse_args()
    reference, device = args.reference, torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    warnings.simplefilter("ignore")
    torch.set_grad_enabled(False)
    forward, training = [], []
    print("| net | worst layer (max err / max value) | region / softmax output | printed detections identical "
          "| within §9 |")
    print("|---|---|---|---|---|")
    for name, size in MINI_NETS.items():
        if _present(reference, [f"mini/{name}.weights", f"forward/{name}/dog/meta.json"], name):
            net = load_network(reference / "mini" / f"{name}.cfg", reference / "mini" / f"{name}.weights", device)
            forward.append(forward_figures(reference, name, size, net, True, device))
            print(forward_row(forward[-1]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in FULL_NETS.items():
            if not _present(reference, [f"weights/{name}.weights.xz", f"forward/{name}/dog/meta.json"], name):
                continue
            weights = Path(tmp) / f"{name}.weights"
            with lzma.open(reference / "weights" / f"{name}.weights.xz") as src, open(weights, "wb") as dst:
                shutil.copyfileobj(src, dst, length=16 << 20)
            net = load_network(reference / "darknet" / "cfg" / f"{name}.cfg", weights, device)
            forward.append(forward_figures(reference, name, size, net, False, device))
            print(forward_row(forward[-1]))
            weights.unlink()
    torch.set_grad_enabled(True)
    print()
    print("| training step | region delta (rel) | cost (rel) | worst bias gradient (rel) | within §9 |")
    print("|---|---|---|---|---|")
    for case in TRAINING_CASES:
        if _present(reference, [f"train/{case}/grads.npz", f"mini/{case.rsplit('_seen', 1)[0]}.weights"], case):
            training.append(training_figures(reference, case, device))
            print(training_row(training[-1]))
    if args.json:
        args.json.write_text(json.dumps({"device": device.type, "forward": forward, "training": training,
                                         "all_within_tolerance": all(r["within_tolerance"]
                                                                     for r in forward + training)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
