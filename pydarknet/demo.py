"""`make demo`: the main job on bundled data, end to end on CPU.

1. writes a synthetic detection dataset in Darknet's layout (`pydarknet data synth`),
2. trains `cfg/synth-tiny.cfg` from scratch on it (`pydarknet detector train`),
3. reports mAP@0.5 on its validation split (`pydarknet detector map`),
4. runs `detector test` on a validation image and writes the predictions image.

Every step is the same Python API the CLI calls; the equivalent commands are printed as it goes.
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from ._resources import shipped_root
from .data.files import read_list, read_names
from .data.synth import make_synth
from .detections import format_detections
from .engine.train import train_detector
from .evaluate import format_map_report
from .image import draw_detections, load_image, save_image
from .network import load_network
from .evaluate import compute_map
from .predict import detect_boxes

DEMO_CFG = shipped_root() / "cfg" / "synth-tiny.cfg"
TARGET_MAP = 0.8


def run_demo(out: Path, train: int, valid: int, seed: int, max_batches: int | None, workers: int) -> float:
    """Run the four steps under `out`; returns the validation mAP@0.5."""
    start = time.perf_counter()
    print(f"$ pydarknet data synth {out / 'data'} --train {train} --valid {valid} --size 256 --seed {seed}")
    data = make_synth(out / "data", train, valid, size=256, seed=seed)

    print(f"$ pydarknet detector train {data} {DEMO_CFG}")
    result = train_detector(data, DEMO_CFG, workers=workers, seed=seed, max_batches=max_batches,
                            verbose=False, log=print)
    trained = time.perf_counter()
    print(f"trained {len(result.history)} iterations in {trained - start:.0f} s; final loss "
          f"{result.history[-1].avg_loss:.3f} avg; weights {result.final_weights}")

    print(f"$ pydarknet detector map {data} {DEMO_CFG} {result.final_weights}")
    net = load_network(DEMO_CFG, result.final_weights)
    names = read_names(data.parent / "synth.names")
    report = compute_map(net, data, workers=workers)
    for line in format_map_report(report, names):
        print(line)

    sample = read_list(data.parent / "valid.txt")[0]
    prediction = out / "predictions"
    print(f"$ pydarknet detector test {data} {DEMO_CFG} {result.final_weights} {sample} -out {prediction}")
    image = load_image(sample)
    dets = detect_boxes(net, image, thresh=0.5)
    for line in format_detections(dets, names, 0.5):
        print(line)
    save_image(f"{prediction}.jpg", draw_detections(image, dets, names, 0.5))
    verdict = "reached" if report.mean_ap >= TARGET_MAP else "MISSED"
    print(f"demo: mAP@0.5 = {report.mean_ap:.4f} on {valid} validation images ({verdict} the {TARGET_MAP} target), "
          f"{time.perf_counter() - start:.0f} s in all; predictions image {prediction}.jpg; "
          f"loss chart {result.final_weights.parent / 'chart.png'}")
    return report.mean_ap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out") / "demo", help="working folder (default out/demo)")
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--valid", type=int, default=200, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batches", type=int, default=None, help="override the cfg's max_batches")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mean_ap = run_demo(args.out, args.train, args.valid, args.seed, args.max_batches, args.workers)
    raise SystemExit(0 if mean_ap >= TARGET_MAP else 1)


if __name__ == "__main__":
    main()
