"""`make demo9000`: YOLO9000-style joint training on bundled synthetic data, end to end on CPU.

1. writes the hierarchical synthetic dataset (`data.synth9k`): detection images whose boxes carry only
   COARSE classes (shapes), classification-only images of FINE classes (colour x shape), and a
   validation set with boxes of fine classes,
2. trains `cfg/synth9k-tiny.cfg` (a `[region]` with `tree=` and `map=`) from scratch on the joint list
   (`pydarknet detector train`),
3. reports mAP@0.5 on the FINE classes, which never had a box in training, next to the coarse-class mAP,
4. runs `detector test` on a validation image: each box is named by its WordTree top prediction.

A box's score for a class is Darknet's mapped-class probability (region_layer.c:get_region_detections
with a map): objectness x the absolute WordTree probability of the class's node.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ._resources import shipped_root
from .boxes import pixel_xyxy
from .data.files import label_path, read_list, read_names
from .data.labels import read_labels
from .data.synth9k import Hierarchy, make_synth9k
from .detections import format_detections
from .engine.train import train_detector
from .evaluate import Detections, EvalResult, GroundTruth, evaluate_detections, format_map_report
from .image import draw_detections, load_image, save_image
from .network import Darknet, load_network
from .dialect import PJREDDIE
from .evaluate import detect_images, detection_records
from .predict import detect_boxes

DEMO_CFG = shipped_root() / "cfg" / "synth9k-tiny.cfg"
TARGET_MAP = 0.5
SHOW_THRESH = 0.25  # `detector test -thresh .25`: with rescore=1 the objectness of a net this small
                    # (the printed probability with a tree) is near the box IoU, rarely above .5


def mapped_map(net: Darknet, paths: Sequence[str], class_map: Sequence[int], truth_class: Sequence[int],
               workers: int = 1) -> EvalResult:
    """mAP@0.5 of the classes whose tree nodes `class_map` lists (class k = node class_map[k]).

    Detections as `detector valid` makes them with a .data `map=` (thresh .005, NMS .45). Label
    files give ground truth with their own class ids, turned into evaluated classes by `truth_class`
    (label class id -> index into class_map).
    """
    truth_class = np.asarray(truth_class)
    records, ground_truths = [], []
    for image in detect_images(net, paths, PJREDDIE.valid_thresh, PJREDDIE.valid_nms, class_map=np.asarray(class_map),
                               workers=workers):
        rows = read_labels(label_path(image.path), len(truth_class))
        boxes = pixel_xyxy(rows[:, :4], image.width, image.height)
        records.append(detection_records(image, index=len(ground_truths)))   # an unreadable image is skipped
        ground_truths.append(GroundTruth(truth_class[rows[:, 4].astype(int)], boxes))
    return evaluate_detections(Detections.from_records(np.concatenate(records)), ground_truths, len(class_map))


def _show_tree_detections(net: Darknet, data: Path, weights: Path, image_path: str, prediction: Path) -> None:
    """`detector test` on one image: with a tree each box is named by its WordTree top prediction."""
    print(f"$ pydarknet detector test {data} {net.cfg_path} {weights} {image_path} -thresh {SHOW_THRESH} "
          f"-out {prediction}")
    node_names = read_names(data.parent / "synth9k.names")
    image = load_image(image_path)
    dets = detect_boxes(net, image, thresh=SHOW_THRESH)
    for line in format_detections(dets, node_names, SHOW_THRESH):
        print(line)
    save_image(f"{prediction}.jpg", draw_detections(image, dets, node_names, SHOW_THRESH))


def run_demo(out: Path, det: int, cls: int, valid: int, seed: int, max_batches: int | None,
             workers: int, cfg: Path = DEMO_CFG) -> tuple[float, float]:
    """Run the four steps under `out`; returns the fine- and coarse-class mAP@0.5 on the validation set."""
    start = time.perf_counter()
    hierarchy = Hierarchy()
    print(f"writing {det} detection + {cls} classification-only training images and {valid} validation images "
          f"under {out / 'data'}")
    data = make_synth9k(out / "data", det, cls, valid, seed=seed, hierarchy=hierarchy)

    print(f"$ pydarknet detector train {data} {cfg}")
    result = train_detector(data, cfg, workers=workers, seed=seed, max_batches=max_batches,
                            verbose=False, log=print)
    print(f"trained {len(result.history)} iterations in {time.perf_counter() - start:.0f} s; final loss "
          f"{result.history[-1].avg_loss:.3f} avg; weights {result.final_weights}")

    net = load_network(cfg, result.final_weights)
    paths = read_list(data.parent / "valid.txt")
    fine = mapped_map(net, paths, hierarchy.fine_map, np.arange(len(hierarchy.fine)), workers)
    coarse = mapped_map(net, paths, hierarchy.coarse_map, hierarchy.fine_coarse, workers)
    print("fine classes (boxes never seen in training):")
    for line in format_map_report(fine, hierarchy.fine_names):
        print(line)
    _show_tree_detections(net, data, result.final_weights, paths[0], out / "predictions")
    verdict = "reached" if fine.mean_ap >= TARGET_MAP else "MISSED"
    print(f"demo9000: fine-class mAP@0.5 = {fine.mean_ap:.4f} ({verdict} the {TARGET_MAP} target), "
          f"coarse-class mAP@0.5 = {coarse.mean_ap:.4f}, on {valid} validation images; "
          f"{time.perf_counter() - start:.0f} s in all")
    return fine.mean_ap, coarse.mean_ap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out") / "demo9000", help="working folder")
    parser.add_argument("--det", type=int, default=2000, help="detection training images (coarse boxes)")
    parser.add_argument("--cls", type=int, default=1000, help="classification-only training images (fine labels)")
    parser.add_argument("--valid", type=int, default=200, help="validation images (fine boxes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batches", type=int, default=None, help="override the cfg's max_batches")
    parser.add_argument("--workers", type=int, default=1, help="data loading processes")
    parser.add_argument("--cfg", type=Path, default=DEMO_CFG, help="the YOLO9000-style cfg to train")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fine_map, _ = run_demo(args.out, args.det, args.cls, args.valid, args.seed, args.max_batches,
                               args.workers, args.cfg)
    raise SystemExit(0 if fine_map >= TARGET_MAP else 1)


if __name__ == "__main__":
    main()
