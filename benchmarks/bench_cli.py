"""One-image `detector test` as a whole process, pydarknet against the C Darknet, interleaved.

Each round runs every command once, in turn (A B C A B C ...): `python -m pydarknet detector test
cfg/voc.data CFG WEIGHTS data/dog.jpg` (fp32, and -precision bf16) and the same command of the C
programs named by $DARKNET_PJREDDIE / $DARKNET_ALEXEYAB (CPU builds of yours; run in the binary's
folder, which has Darknet's data/labels and cfg/voc.data). The wall time of the process is what a
user waits for: interpreter start, imports, parsing, building, reading the weights, decoding the
JPEG, the forward, drawing and writing predictions.jpg. Medians over --runs rounds after --warmup.

Usage: python benchmarks/bench_cli.py [--out results/bench/cli.json] [--runs 5]
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
from common import C_PROGRAMS, REPO, c_darknet_binaries, print_table, reference_cfg, reference_weights, write_json

NETS = ("yolov2-tiny-voc", "yolov2-voc")
IMAGE = REPO / "data" / "dog.jpg"


def commands(net: str, out: Path) -> dict[str, tuple[list[str], Path]]:
    """Each system's command line and working folder for `net`."""
    cfg, weights = str(reference_cfg(net)), str(reference_weights(net))
    ours = [sys.executable, "-m", "pydarknet", "-q", "detector", "test", str(REPO / "cfg" / "voc.data"), cfg, weights,
            str(IMAGE), "-out", str(out / "pred")]
    found = {"pydarknet fp32": (ours, REPO), "pydarknet bf16": ([*ours, "-precision", "bf16"], REPO)}
    for name, binary in c_darknet_binaries().items():
        extra = ["-dont_show"] if "AlexeyAB" in name else []
        found[name] = ([str(binary), "detector", "test", "cfg/voc.data", cfg, weights, str(IMAGE), *extra], binary.parent)
    return found


def wall_seconds(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (file cache)")
    args = parser.parse_args()
    common.set_child_threads()
    rows, table, summary = [], [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for net in NETS:
            cases = commands(net, Path(tmp))
            print(f"timing {net}: {', '.join(cases)}", flush=True)
            seconds = common.interleave({name: lambda c=command, d=cwd: wall_seconds(c, d)
                                         for name, (command, cwd) in cases.items()}, args.warmup, args.runs)
            medians = {name: statistics.median(values) for name, values in seconds.items()}
            programs = [name for name in medians if name.startswith("C ")]
            for name, median in medians.items():
                versus = {c: median / medians[c] for c in programs}
                rows.append({"net": net, "name": name, "seconds": seconds[name], "median_s": median, "versus": versus})
                table.append([net, name, f"{median:.2f}", f"{min(seconds[name]):.2f}",
                              *(f"{versus[c]:.2f}x" if c in versus else "-" for c in C_PROGRAMS)])
                summary[f"cli {net} {name} s"] = median
                if not name.startswith("C "):
                    summary.update({f"cli {net} {name} / {c}": ratio for c, ratio in versus.items()})
    print(f"\none-image `detector test` (data/dog.jpg) as a whole process, {common.THREADS} threads; "
          f"ratio = median / that C program's median (below 1: faster)")
    print_table(table, ["net", "system", "median s", "min s", *(f"vs {c}" for c in C_PROGRAMS)])
    write_json(args.out, {"cli": rows, "summary": summary, "runs": args.runs, "warmup": args.warmup})


if __name__ == "__main__":
    main()
