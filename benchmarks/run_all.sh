#!/usr/bin/env bash
# Run every benchmark (what `make bench` calls) and print a summary of the headline figures.
# Results: $BENCH_OUT (default results/bench, git-ignored): one JSON per script, plus each script's log.
# Python: $PYTHON (default python). The OpenCV 4.x baseline makes its own virtualenv on first use
# (see benchmarks/opencv_dnn.py); each script takes a few minutes on 2 cores. The C Darknet rows need
# $DARKNET_PJREDDIE / $DARKNET_ALEXEYAB (CPU builds of your own; see benchmarks/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${BENCH_OUT:-results/bench}
mkdir -p "$OUT"

run() {  # run NAME SCRIPT ARGS...: log to $OUT/NAME.log; a failing benchmark does not stop the others
    local name=$1; shift
    echo "== $name: $PYTHON $*"
    if ! "$PYTHON" "$@" 2>&1 | tee "$OUT/$name.log"; then
        echo "!! $name failed (log: $OUT/$name.log)" | tee -a "$OUT/failed.txt"
    fi
}

rm -f "$OUT/failed.txt"
# the machine every row below ran on: CPU model, cores, vector flags, bf16 hardware, load average
"$PYTHON" benchmarks/common.py | tee "$OUT/machine.txt"
run inference benchmarks/bench_inference.py --out "$OUT/inference.json"
run train benchmarks/bench_train.py --out "$OUT/train.json"
run train_loop benchmarks/bench_train_loop.py --out "$OUT/train_loop.json"
run train_loop_v4 benchmarks/bench_train_loop.py --net yolov4-tiny --no-amp --out "$OUT/train_loop_v4.json"
run cli benchmarks/bench_cli.py --out "$OUT/cli.json"
run decode benchmarks/bench_decode.py --out "$OUT/decode.json"
run tree benchmarks/bench_tree.py --out "$OUT/tree.json"
if [[ -f benchmarks/bench_valid.py ]]; then
    run valid benchmarks/bench_valid.py
fi
"$PYTHON" benchmarks/summary.py "$OUT"
[[ ! -f "$OUT/failed.txt" ]]
