"""WordTree speed on yolo9000's output: the tree softmax, the hierarchy and the top prediction per cell.

The input is a (1, 3, 9418, 17, 17) class slice (yolo9000's region at 544, batch 1) of random logits;
the tree is the shipped data/9k.tree. Per stage, ms per call (median over --runs interleaved calls
after --warmup), on the CPU and on CUDA when present: ``softmax`` (`WordTree.softmax`, the
index_reduce form), ``exportable softmax`` (the padded-table form the ONNX export uses),
``hierarchy + top`` (`hierarchy_predictions` then `top_prediction`, what yolo9000's detections compute
after the softmax).

Usage: python benchmarks/bench_tree.py [--out results/bench/tree.json] [--runs 15]
"""
from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from functools import partial

import common  # before torch: sets OMP_WAIT_POLICY, which OpenMP reads when torch loads it
import torch
from common import REPO, devices, interleave, print_table, set_threads, write_json

from pydarknet.tree import WordTree

NUM, HEIGHT, WIDTH = 3, 17, 17   # yolo9000: 3 anchors, 544 / 32 cells
HIER_THRESH = 0.5                # DARKNET(detector.c:test_detector): hier_thresh


def hierarchy_and_top(tree: WordTree, p: torch.Tensor) -> torch.Tensor:
    """Absolute probabilities of a tree region's softmax, then the top node per cell."""
    return tree.top_prediction(tree.hierarchy_predictions(p, 2), HIER_THRESH, 2)


def cases(tree: WordTree) -> dict[tuple[str, str], Callable[[], float]]:
    """(device, stage) -> one timed call."""
    found = {}
    for device in devices():
        x = torch.randn(1, NUM, tree.n, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(0)).to(device)
        p = tree.softmax(x, 2)   # the tree moves its index tables to the input's device itself
        stages = {"softmax": partial(tree.softmax, x, 2), "exportable softmax": partial(tree._exportable_softmax, x, 2),
                  "hierarchy + top": partial(hierarchy_and_top, tree, p)}
        for stage, fn in stages.items():
            found[device.type, stage] = partial(common.timed, torch.inference_mode()(fn), device)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    set_threads()
    tree = WordTree.read(REPO / "data" / "9k.tree")
    seconds = interleave(cases(tree), args.warmup, args.runs)
    rows, summary = [], {}
    for (device, stage), values in seconds.items():
        median = statistics.median(values)
        rows.append([device, stage, f"{median * 1e3:.2f}", f"{min(values) * 1e3:.2f}"])
        summary[f"{device} {stage} ms"] = median * 1e3
    print(f"WordTree ({tree.n} nodes) on (1, {NUM}, {tree.n}, {HEIGHT}, {WIDTH})")
    print_table(rows, ["device", "stage", "median ms", "min ms"])
    write_json(args.out, {"summary": summary, "seconds": {f"{d} {s}": v for (d, s), v in seconds.items()},
                          "runs": args.runs, "warmup": args.warmup})


if __name__ == "__main__":
    main()
