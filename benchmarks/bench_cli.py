"""One-image `detector test` as a whole process, pydarknet against the C Darknet, interleaved.

Each round runs every command once, in turn (A B C A B C ...), on data/dog.jpg. pjreddie's nets
(yolov2-tiny-voc, yolov2-voc; the reference pack's weights): `python -m pydarknet detector test
cfg/voc.data CFG WEIGHTS data/dog.jpg` (fp32, and -precision bf16) against the same command of the C
programs named by $DARKNET_PJREDDIE / $DARKNET_ALEXEYAB. AlexeyAB's nets (yolov4-tiny at 416, the
reference-yolo pack's weights; yolov4 at 608, cfg/yolov4.cfg with random weights made once,
common.random_weights): `python -m pydarknet detector test cfg/coco.data CFG WEIGHTS data/dog.jpg -ab`
against AlexeyAB's program only (pjreddie's cannot read these cfgs), with `-dont_show`. The C programs
are CPU builds of yours, run in the binary's folder (Darknet's data/labels, cfg/voc.data, cfg/coco.data); one
that is not built is a row saying so. The wall time of the process is what a user waits for: interpreter
start, imports, parsing, building, reading the weights, decoding the JPEG, the forward, drawing and
writing predictions.jpg. Medians over --runs rounds after --warmup; the ratio to a C program is the median
of the per-round ratios (paired: both processes of a round ran back to back, under the same load).

The other baseline, for every net: `opencv_detect.py`, the script a user of OpenCV 4.x DNN writes for the same
job (readNetFromDarknet, imread, blob, forward, NMS, print, draw, imwrite), run in the OpenCV 4.x environment
(opencv_dnn.py; a row saying why when it cannot be made).

bf16 rows are run only where the CPU has bf16 hardware (AVX512-BF16 or AMX): elsewhere PyTorch emulates
it, several times slower than fp32, and the row says so (--emulated-bf16 times it anyway).

Usage: python benchmarks/bench_cli.py [--out results/bench/cli.json] [--runs 5] [--net yolov4 ...]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import opencv_dnn
from common import (
    C_PROGRAMS,
    REPO,
    c_binary,
    cpu_line,
    print_table,
    random_weights,
    reference_cfg,
    reference_weights,
    write_json,
)

from pydarknet.prepack import cpu_runs_bf16

AB = "C Darknet (AlexeyAB)"
OPENCV = "OpenCV DNN script"
BASELINES = [*C_PROGRAMS, OPENCV]   # the systems every pydarknet row is given a ratio to
# net: (the C programs that read its cfg, whether pydarknet runs it with -ab, the .data file)
NETS = {"yolov2-tiny-voc": (tuple(C_PROGRAMS), False, "voc.data"), "yolov2-voc": (tuple(C_PROGRAMS), False, "voc.data"),
        "yolov4-tiny": ((AB,), True, "coco.data"), "yolov4": ((AB,), True, "coco.data")}
IMAGE = REPO / "data" / "dog.jpg"
OPENCV_SCRIPT = Path(__file__).resolve().parent / "opencv_detect.py"


def net_files(net: str) -> tuple[str, str]:
    """The cfg and weights of `net`: a pack's, or (yolov4) cfg/ of this repository with random weights."""
    if net == "yolov4":
        cfg = REPO / "cfg" / "yolov4.cfg"
        return str(cfg), str(random_weights(cfg))
    yolo = NETS[net][1]
    return str(reference_cfg(net, yolo)), str(reference_weights(net, yolo))


def commands(net: str, out: Path, bf16: bool) -> tuple[dict[str, tuple[list[str], Path]], dict[str, str]]:
    """Each system's command line and working folder for `net`; and the systems not run, with why."""
    programs, ab, data = NETS[net]
    cfg, weights = net_files(net)
    ours = [sys.executable, "-m", "pydarknet", "-q", "detector", "test", str(REPO / "cfg" / data), cfg, weights,
            str(IMAGE), "-out", str(out / "pred"), *(["-ab"] if ab else [])]
    flag = " -ab" if ab else ""
    found = {f"pydarknet fp32{flag}": (ours, REPO)}
    skipped = {}
    if bf16:
        found[f"pydarknet bf16{flag}"] = ([*ours, "-precision", "bf16"], REPO)
    else:
        skipped[f"pydarknet bf16{flag}"] = "not run: bf16 is emulated on this CPU (--emulated-bf16 times it)"
    for name in programs:
        binary = c_binary(name)
        if isinstance(binary, str):
            skipped[name] = binary
            continue
        extra = ["-dont_show"] if name == AB else []
        found[name] = ([str(binary), "detector", "test", f"cfg/{data}", cfg, weights, str(IMAGE), *extra],
                       binary.parent)
    names = REPO / "data" / ("voc.names" if data == "voc.data" else "coco.names")
    try:
        found[OPENCV] = ([str(opencv_dnn.opencv_python()), str(OPENCV_SCRIPT), cfg, weights, str(names), str(IMAGE),
                          str(out / "opencv.jpg"), str(common.THREADS)], REPO)
    except opencv_dnn.OpenCVUnavailable as error:
        skipped[OPENCV] = f"not run: {error}".splitlines()[0]
    return found, skipped


def wall_seconds(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """The median of the per-round ratios ours[i] / theirs[i]."""
    return statistics.median(a / b for a, b in zip(ours, theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (file cache)")
    parser.add_argument("--net", action="append", choices=list(NETS), help="time only this net (repeatable)")
    parser.add_argument("--emulated-bf16", action="store_true",
                        help="time the bf16 rows on a CPU without bf16 hardware too")
    args = parser.parse_args()
    common.set_child_threads()
    bf16 = args.emulated_bf16 or cpu_runs_bf16()
    rows, table, summary = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for net in args.net or NETS:
            cases, skipped = commands(net, Path(tmp), bf16)
            print(f"timing {net}: {', '.join(cases)}", flush=True)
            seconds = common.interleave({name: lambda c=command, d=cwd: wall_seconds(c, d)
                                         for name, (command, cwd) in cases.items()}, args.warmup, args.runs)
            programs = [name for name in seconds if name in BASELINES]
            for name, values in seconds.items():
                median = statistics.median(values)
                versus = {c: paired_ratio(values, seconds[c]) for c in programs}
                rows.append({"net": net, "name": name, "seconds": values, "median_s": median, "versus": versus})
                table.append([net, name, f"{median:.2f}", f"{min(values):.2f}",
                              *(f"{versus[c]:.2f}x" if c in versus else "-" for c in BASELINES), ""])
                summary[f"cli {net} {name} s"] = median
                if name not in BASELINES:
                    summary.update({f"cli {net} {name} / {c}": ratio for c, ratio in versus.items()})
            for name, why in skipped.items():
                rows.append({"net": net, "name": name, "skipped": why})
                table.append([net, name, "-", "-", *("-" for _ in BASELINES), why])
    print(f"\none-image `detector test` (data/dog.jpg) as a whole process, {common.THREADS} threads; "
          f"ratio = median of the per-round ratios to that program (below 1: faster)\n{cpu_line()}")
    print_table(table, ["net", "system", "median s", "min s", *(f"vs {c}" for c in BASELINES), "note"])
    write_json(args.out, {"cli": rows, "summary": summary, "runs": args.runs, "warmup": args.warmup})


if __name__ == "__main__":
    main()
