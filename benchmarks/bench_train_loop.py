"""The real training loop: `detector train` iteration times, data loading included, against the C Darknet.

Each system runs `detector train` as a whole process on the same synthetic dataset (VOC-like image
sides, `pydarknet data synth`, each label file both under labels/ and beside its image, so both forks' rules
find it) with `--net` yolov2-tiny-voc (the reference pack's cfg) or yolov4-tiny (AlexeyAB's, from its pack:
two [yolo] heads, CIoU; pydarknet trains it as AlexeyAB's Darknet, pjreddie's cannot read it) at 416, batch 8,
subdivisions 1, random=0 (no multi-scale resizing, so every iteration has the same cost), from random
weights, for --iterations iterations; the seconds each iteration line reports are read off its output, and the median past the
first --warmup iterations is the figure. pydarknet's line times the whole iteration (waiting for data
included); Darknet's times `train_network` while its loader thread reads the next batch.

The C programs are not part of pydarknet: build them yourself (CPU, e.g. `make GPU=0 CUDNN=0 OPENCV=0
OPENMP=1`) and point to the binaries with $DARKNET_PJREDDIE and $DARKNET_ALEXEYAB; without them only
pydarknet's rows are timed. pjreddie's CPU build skips the region layer's backward (so it does less
than a full step), AlexeyAB's runs it; both are reported.

Usage: python benchmarks/bench_train_loop.py [--net yolov4-tiny] [--out results/bench/train_loop.json] [--iterations 8]
"""
from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import common
from common import C_PROGRAMS, REPO, c_darknet_binaries, print_table, reference_cfg, write_json

from pydarknet.data.synth import make_synth

BATCH, SIZE = 8, 416
# net -> (its cfg, the classes and names of its .data file: the synthetic labels' class ids are below them)
NETS = {"yolov2-tiny-voc": (reference_cfg("yolov2-tiny-voc"), 20, REPO / "data" / "voc.names"),
        "yolov4-tiny": (reference_cfg("yolov4-tiny", yolo=True), 80, REPO / "data" / "coco.names")}
# "N: loss, avg, rate, S seconds, ..." (pjreddie, pydarknet) and " N: loss, avg loss, rate, S seconds, ..." (AlexeyAB)
ITERATION_LINE = re.compile(r"^\s*(\d+): \S+, \S+ avg(?: loss)?, \S+ rate, ([\d.]+) seconds", re.M)


def training_cfg(net: str, path: Path, iterations: int) -> Path:
    """The pack's cfg of `net`, set to train batch 8 at 416 for `iterations`, without multi-scale."""
    text = NETS[net][0].read_text()
    text = re.sub(r"^\s*#?\s*(batch|subdivisions)\s*=.*\n", "", text, flags=re.M)
    text = text.replace("[net]\n", f"[net]\nbatch={BATCH}\nsubdivisions=1\n", 1)
    text = re.sub(r"^max_batches\s*=.*$", f"max_batches={iterations}", text, flags=re.M)
    text = re.sub(r"^(width|height)\s*=.*$", lambda m: f"{m.group(1)}={SIZE}", text, flags=re.M)
    text = re.sub(r"^random\s*=\s*1", "random=0", text, flags=re.M)
    path.write_text(text)
    return path


def dataset(folder: Path, images: int, net: str) -> Path:
    synth = make_synth(folder / "synth", train=images, valid=1, size=500)   # sides 250..500, as VOC's
    for label in (synth.parent / "labels").glob("*.txt"):   # AlexeyAB's rule: beside the image
        shutil.copy(label, synth.parent / "images" / label.name)
    _, classes, names = NETS[net]
    data = folder / "train.data"
    data.write_text(f"classes={classes}\ntrain={synth.parent / 'train.txt'}\nnames={names}\n"
                    f"backup={folder / 'backup'}\n")
    (folder / "backup").mkdir(exist_ok=True)
    return data


def iteration_seconds(command: list[str], cwd: Path, timeout: float) -> list[float]:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    seconds = [float(s) for _, s in ITERATION_LINE.findall(done.stdout + done.stderr)]
    if done.returncode or not seconds:
        tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: " + " | ".join(tail))
    return seconds


def systems(data: Path, cfg: Path, workers: int, amp: bool, net: str) -> dict[str, list[str]]:
    ours = [sys.executable, "-m", "pydarknet", "detector", "train", str(data), str(cfg), "-clear",
            "--workers", str(workers), "-nogpu"]
    commands = {"pydarknet fp32": ours}
    if amp:
        commands["pydarknet --amp (bf16)"] = [*ours, "--amp"]
    binaries = c_darknet_binaries()
    if net != "yolov2-tiny-voc":
        binaries.pop("C Darknet (pjreddie)", None)   # pjreddie's Darknet cannot read AlexeyAB's cfgs
    for name, binary in binaries.items():
        commands[name] = [str(binary), "detector", "train", str(data), str(cfg)] + (["-dont_show"] if "AlexeyAB" in name else [])
    return commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=sorted(NETS), default="yolov2-tiny-voc")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--no-amp", dest="amp", action="store_false",
                        help="leave out the bf16 row (on a CPU that only emulates bf16 it is 8x slower)")
    parser.add_argument("--iterations", type=int, default=8, help="iterations per run")
    parser.add_argument("--warmup", type=int, default=2, help="first iterations left out of the median")
    parser.add_argument("--images", type=int, default=96, help="synthetic training images")
    parser.add_argument("--workers", type=int, default=1, help="pydarknet's data loading processes")
    args = parser.parse_args()
    rows, summary = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = dataset(folder, args.images, args.net)
        cfg = training_cfg(args.net, folder / f"{args.net}-train.cfg", args.iterations)
        common.set_child_threads()
        for name, command in systems(data, cfg, args.workers, args.amp, args.net).items():
            print(f"timing {name}: {' '.join(command)}", flush=True)
            seconds = iteration_seconds(command, folder, timeout=120 + 60 * args.iterations)[args.warmup:]
            rows.append({"name": name, "command": command, "seconds": seconds, "median_s": statistics.median(seconds)})
    fastest_c = min((r["median_s"] for r in rows if r["name"].startswith("C ")), default=None)
    table = []
    for row in rows:
        versus = {c["name"]: c["median_s"] / row["median_s"] for c in rows if c["name"].startswith("C ")}
        row["speedup_vs"] = versus
        table.append([row["name"], f"{row['median_s']:.2f}", f"{BATCH / row['median_s']:.1f}",
                      *(f"{versus.get(name, 0):.1f}x" if name in versus else "-" for name in C_PROGRAMS)])
        summary[f"train loop {args.net} {row['name']} s/iteration"] = row["median_s"]
        summary.update({f"train loop {args.net} {row['name']} speed-up vs {name}": ratio for name, ratio in versus.items()
                        if not row["name"].startswith("C ")})
    print(f"\n`detector train` {args.net}, batch {BATCH} at {SIZE}, {common.THREADS} threads, median of iterations "
          f"{args.warmup + 1}..{args.iterations}")
    print_table(table, ["system", "s/iteration", "images/s", *(f"speed-up vs {name}" for name in C_PROGRAMS)])
    write_json(args.out, {"net": args.net, "train_loop": rows, "fastest_c_s": fastest_c, "summary": summary,
                          "iterations": args.iterations, "warmup": args.warmup, "workers": args.workers})


if __name__ == "__main__":
    main()
