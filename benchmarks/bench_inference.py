"""Inference speed: yolov2-voc at 416 (pydarknet vs OpenCV 4.x DNN) and yolo9000 at 544 (tree softmax share).

For each device (CPU; CUDA when present) and batch 1 and 8, the cases are timed interleaved
(A B C A B C ...) in one process, medians over --runs calls after --warmup calls:

* ``pydarknet``: `load_network` as is (eval mode, batch norm as a separate op);
* ``pydarknet fused``: `fuse_for_inference` (batch norm folded, channels_last);
* ``pydarknet fused+compile`` (with --compile): that net through `torch.compile` (inductor, frozen
  weights; each batch size compiles once, in the warm-up);
* ``opencv``: `cv2.dnn.readNetFromDarknet` on the same cfg and weights (CPU only), in a child
  process under the OpenCV 4.x virtualenv of opencv_dnn.py (made on first use).

Both libraries use --threads threads (torch.set_num_threads / cv2.setNumThreads). The weights are
the pack's (shared/reference/weights/*.xz), decompressed into a temp dir. Then yolo9000 at 544,
batch 1: forward latency and the share of it spent in the `[region]` layer and in its WordTree softmax.

Usage: python benchmarks/bench_inference.py [--out results/bench/inference.json] [--runs 7]
"""
from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from functools import partial

import common  # before torch: sets OMP_WAIT_POLICY, which OpenMP reads when torch loads it
import torch
from common import (
    Timing,
    devices,
    interleave,
    print_table,
    reference_cfg,
    reference_weights,
    set_threads,
    timed,
    write_json,
)
from opencv_dnn import OpenCVUnavailable, OpenCVWorker
from torch._inductor import config as inductor_config

from pydarknet.fuse import fuse_for_inference
from pydarknet.network import Darknet, load_network

DETECTOR = "yolov2-voc"
TREE_DETECTOR = "yolo9000"
BATCHES = (1, 8)


def forward_case(net: Darknet, batch: int, device: torch.device, model: Callable | None = None) -> Callable[[], float]:
    """One timed forward of `model` (default `net`) on a fixed random batch of `net`'s input size."""
    x = torch.rand(batch, net.channels, net.height, net.width, device=device)
    model = net if model is None else model

    @torch.inference_mode()
    def case() -> float:
        return timed(lambda: model(x), device)
    return case


def compiled(net: Darknet) -> Callable:
    """`torch.compile` with inductor's freezing: the weights become constants, so oneDNN gets them
    prepacked and the leaky ReLUs are fused into the convs. Static shapes: one graph per batch size."""
    inductor_config.freezing = True
    return torch.compile(net, dynamic=False)


def load(name: str, device: torch.device) -> Darknet:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the original cfgs repeat batch= and subdivisions= in [net]
        return load_network(reference_cfg(name), reference_weights(name), device)


def detector_timings(device: torch.device, opencv: OpenCVWorker | None, compile_: bool, warmup: int,
                     runs: int) -> list[dict]:
    net = load(DETECTOR, device)
    fused = fuse_for_inference(net)
    fused_compiled = compiled(fused) if compile_ else None
    rows = []
    for batch in BATCHES:
        cases = {"pydarknet": forward_case(net, batch, device), "pydarknet fused": forward_case(fused, batch, device)}
        if fused_compiled is not None:
            cases["pydarknet fused+compile"] = forward_case(fused, batch, device, fused_compiled)
        if opencv is not None:
            cases["opencv"] = partial(opencv.forward_seconds, batch, net.height, net.width)
        for name, seconds in interleave(cases, warmup, runs).items():
            timing = Timing(name, batch, seconds)
            rows.append({"device": device.type, "net": DETECTOR, "size": net.width, "batch": batch,
                         **timing.as_dict()})
    return rows


def tree_softmax_share(device: torch.device, warmup: int, runs: int) -> dict:
    """yolo9000 at 544, batch 1: latency, and the share of the region layer and of its tree softmax."""
    net = load(TREE_DETECTOR, device)
    fused = fuse_for_inference(net)
    region = fused.region
    captured: list[torch.Tensor] = []
    # registered after fuse_for_inference's own pre-hook, so it sees the input the layer really gets
    handle = region.register_forward_pre_hook(lambda _module, inputs: captured.append(inputs[0]))
    forward = forward_case(fused, 1, device)
    forward()
    handle.remove()
    raw = captured[0]                                                    # (1, A*(5+C), H, W)
    o = region.options
    classes = raw.view(1, o.num, o.coords + 1 + o.classes, *raw.shape[2:])[:, :, o.coords + 1:]

    @torch.inference_mode()
    def region_case() -> float:
        return timed(lambda: region(raw), device)

    @torch.inference_mode()
    def softmax_case() -> float:
        return timed(lambda: region.tree.softmax(classes, dim=2), device)

    cases = {"pydarknet": forward_case(net, 1, device), "pydarknet fused": forward,
             "region layer": region_case, "tree softmax": softmax_case}
    timings = {name: Timing(name, 1, seconds).as_dict() for name, seconds in interleave(cases, warmup, runs).items()}
    fused_median = timings["pydarknet fused"]["median_s"]
    return {"device": device.type, "net": TREE_DETECTOR, "size": net.width, "batch": 1, "timings": timings,
            "region_share": timings["region layer"]["median_s"] / fused_median,
            "tree_softmax_share": timings["tree softmax"]["median_s"] / fused_median}


def start_opencv(threads: int) -> OpenCVWorker | None:
    try:
        return OpenCVWorker(reference_cfg(DETECTOR), reference_weights(DETECTOR), threads)
    except OpenCVUnavailable as exc:
        print(f"OpenCV DNN baseline skipped: {exc}")
        return None


def report(rows: list[dict], trees: list[dict]) -> dict:
    """Print the tables; return the headline figures."""
    summary = {}
    table = []
    for row in rows:
        opencv = next((r for r in rows if r["name"] == "opencv" and r["device"] == row["device"]
                       and r["batch"] == row["batch"]), None)
        speedup = f"{opencv['median_s'] / row['median_s']:.2f}x" if opencv else "-"
        table.append([row["device"], row["batch"], row["name"], f"{1e3 * row['median_s']:.1f}",
                      f"{1e3 * row['min_s']:.1f}", f"{row['items_per_s']:.2f}", speedup])
        summary[f"{DETECTOR} {row['device']} batch {row['batch']} {row['name']} median ms"] = 1e3 * row["median_s"]
    print(f"\n{DETECTOR} at 416")
    print_table(table, ["device", "batch", "implementation", "median ms", "min ms", "images/s", "OpenCV time / this"])
    for tree in trees:
        t = tree["timings"]
        print(f"\n{TREE_DETECTOR} at {tree['size']}, batch 1, {tree['device']}: pydarknet "
              f"{1e3 * t['pydarknet']['median_s']:.1f} ms, fused {1e3 * t['pydarknet fused']['median_s']:.1f} ms; "
              f"region layer {1e3 * t['region layer']['median_s']:.1f} ms ({100 * tree['region_share']:.1f}%), "
              f"tree softmax {1e3 * t['tree softmax']['median_s']:.1f} ms ({100 * tree['tree_softmax_share']:.1f}% "
              f"of the fused forward; target < 15%)")
        summary[f"{TREE_DETECTOR} {tree['device']} batch 1 fused median ms"] = 1e3 * t["pydarknet fused"]["median_s"]
        summary[f"{TREE_DETECTOR} {tree['device']} tree softmax share"] = tree["tree_softmax_share"]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--runs", type=int, default=7, help="timed calls per case (the median is reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per case first")
    parser.add_argument("--threads", type=int, default=common.THREADS, help="CPU threads, both libraries")
    parser.add_argument("--no-opencv", action="store_true", help="skip the OpenCV DNN baseline")
    parser.add_argument("--compile", action="store_true", help="also time the fused net under torch.compile "
                        "(needs a C++ compiler; about 40 s of compiling per batch size on 2 cores)")
    args = parser.parse_args()
    set_threads(args.threads)

    opencv = None if args.no_opencv else start_opencv(args.threads)
    rows, trees = [], []
    try:
        for device in devices():
            rows += detector_timings(device, opencv if device.type == "cpu" else None, args.compile, args.warmup,
                                     args.runs)
            trees.append(tree_softmax_share(device, args.warmup, args.runs))
    finally:
        if opencv is not None:
            opencv.close()
    summary = report(rows, trees)
    write_json(args.out, {"inference": rows, "tree_softmax": trees, "summary": summary,
                          "opencv_version": opencv.version if opencv else None,
                          "runs": args.runs, "warmup": args.warmup, "threads": args.threads, "compile": args.compile})


if __name__ == "__main__":
    main()
