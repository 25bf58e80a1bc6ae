"""`make demo` / `make demo-v4`: the main job on bundled data, end to end on CPU.

1. writes a synthetic detection dataset in Darknet's layout (`pydarknet data synth`),
2. trains a detector from scratch on it (`pydarknet detector train`): `cfg/synth-tiny.cfg` (YOLOv2, pjreddie's
   Darknet) or, with `--net v4`, `cfg/synth-v4-tiny.cfg` (yolov4-tiny's layers, trained as AlexeyAB's Darknet
   with `-map`: the best weights kept, the mAP drawn on the chart),
3. reports mAP@0.5 on its validation split (`pydarknet detector map`),
4. runs `detector test` on a validation image and writes the predictions image.

Every step is the same Python API the CLI calls; the equivalent commands are printed as it goes.
"""
from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from ._resources import shipped_root
from .data.files import read_list, read_names
from .data.synth import make_synth
from .dialect import ALEXEYAB, PJREDDIE, Dialect
from .engine.train import TrainingExtras, train_detector
from .evaluate.scoring import collect_map_inputs
from .evaluate.metrics import ALL_POINTS
from .image import draw_detections, load_image, save_image
from .network import load_network
from .predict import detect_boxes

TARGET_MAP = 0.8
MAP_IOU, MAP_THRESH = 0.5, 0.25   # `detector map`'s defaults


@dataclass(frozen=True)
class Demo:
    """One demo: the cfg it trains, whose Darknet it follows, and how its dataset lays out the labels."""

    cfg: Path
    dialect: Dialect
    layout: str          # data.synth.LAYOUTS
    calc_map: bool       # `-map` while training; the best weights are then the ones evaluated

    @property
    def flags(self) -> str:
        return " -ab" if self.dialect is ALEXEYAB else ""


DEMOS = {"v2": Demo(shipped_root() / "cfg" / "synth-tiny.cfg", PJREDDIE, "darknet", calc_map=False),
         "v4": Demo(shipped_root() / "cfg" / "synth-v4-tiny.cfg", ALEXEYAB, "alexeyab", calc_map=True)}
DEMO_CFG = DEMOS["v2"].cfg


def run_demo(out: Path, train: int, valid: int, seed: int, max_batches: int | None, workers: int,
             demo: Demo = DEMOS["v2"]) -> float:
    """Run the four steps under `out`; returns the validation mAP@0.5."""
    start = time.perf_counter()
    print(f"$ pydarknet data synth {out / 'data'} --train {train} --valid {valid} --size 256 --seed {seed}"
          f" --layout {demo.layout}")
    data = make_synth(out / "data", train, valid, size=256, seed=seed, layout=demo.layout)

    print(f"$ pydarknet detector train {data} {demo.cfg}{demo.flags}" + (" -map -dont_show" if demo.calc_map else ""))
    result = train_detector(data, demo.cfg, workers=workers, seed=seed, max_batches=max_batches, verbose=False,
                            log=print, extras=TrainingExtras(calc_map=demo.calc_map, dialect=demo.dialect))
    trained = time.perf_counter()
    print(f"trained {len(result.history)} iterations in {trained - start:.0f} s; final loss "
          f"{result.history[-1].avg_loss:.3f} avg; weights {result.final_weights}")
    weights = result.best_weights or result.final_weights   # -map's best, when it measured one

    print(f"$ pydarknet detector map {data} {demo.cfg} {weights}{demo.flags}")
    net = load_network(demo.cfg, weights)
    names = read_names(data.parent / "synth.names")
    dialect = demo.dialect
    inputs = collect_map_inputs(net, read_list(data.parent / "valid.txt"), workers, dialect=dialect,
                                letterbox=dialect.letterbox(net))
    report = dialect.map_evaluation(inputs.detections, inputs.ground_truths, len(names), MAP_IOU, ALL_POINTS,
                                    MAP_THRESH)
    for line in dialect.map_format(report, names):
        print(line)

    sample = read_list(data.parent / "valid.txt")[0]
    prediction = out / "predictions"
    print(f"$ pydarknet detector test {data} {demo.cfg} {weights} {sample}{demo.flags} -out {prediction}")
    image = load_image(sample)
    thresh = dialect.test_thresh
    dets = detect_boxes(net, image, thresh=thresh, letterbox=dialect.letterbox(net), dialect=dialect)
    for line in dialect.printed_lines(dets, names, thresh, image.shape[1], image.shape[0]):
        print(line)
    save_image(f"{prediction}.jpg", draw_detections(image, dets, names, thresh))
    verdict = "reached" if report.mean_ap >= TARGET_MAP else "MISSED"
    print(f"demo: mAP@0.5 = {report.mean_ap:.4f} on {valid} validation images ({verdict} the {TARGET_MAP} target), "
          f"{time.perf_counter() - start:.0f} s in all; predictions image {prediction}.jpg; "
          f"loss chart {result.final_weights.parent / 'chart.png'}")
    return report.mean_ap


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=sorted(DEMOS), default="v2",
                        help="v2: YOLOv2 (cfg/synth-tiny.cfg); v4: yolov4-tiny's layers (cfg/synth-v4-tiny.cfg), -ab -map")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default out/demo, out/demo-v4)")
    parser.add_argument("--train", type=int, default=3000, help="training images")
    parser.add_argument("--valid", type=int, default=200, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-batches", type=int, default=None, help="override the cfg's max_batches")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes")
    args = parser.parse_args(argv)
    out = args.out or Path("out") / ("demo" if args.net == "v2" else f"demo-{args.net}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mean_ap = run_demo(out, args.train, args.valid, args.seed, args.max_batches, args.workers, DEMOS[args.net])
    raise SystemExit(0 if mean_ap >= TARGET_MAP else 1)


if __name__ == "__main__":
    main()
