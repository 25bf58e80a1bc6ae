#!/usr/bin/env bash
# The whole CUDA check in one command, for a session lent one GPU machine (see benchmarks/README.md,
# "GPU check"): install, the `gpu` tests, parity on CUDA against the reference pack subset, the
# WordTree softmax, AMP training, DDP, throughput and profiles. Each part runs under its own
# `timeout` and writes into OUTDIR; a failing part does not stop the others; the script stops by
# itself within $GPU_CHECK_BUDGET seconds (default 470) and ends with OUTDIR/summary.md.
# $GPU_CHECK_PARTS (e.g. "unpack-full parity-full"): run only the parts named.
#
#   bash benchmarks/gpu_check.sh [OUTDIR] [--cpu-smoke]
#
# OUTDIR: default $OUT when set (the GPU machine's folder that comes back), else out/gpu_check.
# The reference subset: .gpu_pack/mini and/or .gpu_pack/full (benchmarks/gpu_pack.py build; carried).
# --cpu-smoke: the same script on a machine without CUDA, tiny sizes, no pip install (a few minutes).
set -uo pipefail
cd "$(dirname "$0")/.."
SMOKE=""
OUT_DIR=""
for arg in "$@"; do
    case $arg in
        --cpu-smoke) SMOKE="--smoke" ;;
        *) OUT_DIR=$arg ;;
    esac
done
OUT_DIR=${OUT_DIR:-${OUT:-out/gpu_check}}
PYTHON=${PYTHON:-python3}
BUDGET=${GPU_CHECK_BUDGET:-470}
START=$(date +%s)
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
rm -f "$OUT_DIR/parts.tsv"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout, installed or not
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

# part NAME SECONDS COMMAND...: run under `timeout`, at most what is left of the budget (20 s are kept
# for the summary); log to OUTDIR/NAME.log; a line "NAME<TAB>exit<TAB>seconds" in OUTDIR/parts.tsv.
part() {
    local name=$1 limit=$2; shift 2
    if [[ -n ${GPU_CHECK_PARTS:-} && " $GPU_CHECK_PARTS " != *" $name "* ]]; then
        return   # not among the parts asked for
    fi
    local left=$((START + BUDGET - 20 - $(date +%s)))
    (( limit > left )) && limit=$left
    if (( limit < 10 )); then
        echo "== $name: skipped, out of time"
        printf '%s\tskipped\t0\n' "$name" >> "$OUT_DIR/parts.tsv"
        return
    fi
    echo "== $name (at most ${limit}s): $*"
    local begin=$(date +%s)
    GPU_CHECK_PART_SECONDS=$limit timeout -k 5 "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    local code=$?
    printf '%s\t%s\t%s\n' "$name" "$code" "$(( $(date +%s) - begin ))" >> "$OUT_DIR/parts.tsv"
    tail -n 3 "$OUT_DIR/$name.log"
}

py_part() {  # py_part NAME SECONDS: a part of benchmarks/gpu_check.py
    part "$1" "$2" "$PYTHON" benchmarks/gpu_check.py "$1" --out "$OUT_DIR" $SMOKE
}

"$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA:", torch.cuda.is_available() and torch.cuda.get_device_name())' \
    | tee "$OUT_DIR/environment.txt"
nvidia-smi >> "$OUT_DIR/environment.txt" 2>&1 || echo "no nvidia-smi" >> "$OUT_DIR/environment.txt"
if ! "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
    echo "No CUDA device: every CUDA part is skipped (a line in its log says so); CPU paths run instead."
fi

if [[ -n $SMOKE ]]; then
    echo "skipped in the CPU smoke run (this machine's environment is not touched)" | tee "$OUT_DIR/install.log"
else   # the machine's own python: no torch install, no index (--no-build-isolation: setuptools is there)
    part install 60 "$PYTHON" -m pip install --no-deps --no-build-isolation -e .
fi

for pack in mini full; do
    if [[ -f .gpu_pack/$pack/reference.tar.xz ]]; then
        part "unpack-$pack" 60 "$PYTHON" benchmarks/gpu_pack.py unpack ".gpu_pack/$pack"
    fi
done
REFERENCE=""
[[ -f .gpu_pack/mini.unpacked/README.md ]] && REFERENCE=$PWD/.gpu_pack/mini.unpacked
[[ -z $REFERENCE && -f .gpu_pack/full.unpacked/README.md ]] && REFERENCE=$PWD/.gpu_pack/full.unpacked
[[ -z $REFERENCE && -f ../shared/reference/README.md ]] && REFERENCE=$(cd ../shared/reference && pwd)
if [[ -n $REFERENCE ]]; then
    export PYDARKNET_REFERENCE=$REFERENCE
else
    echo "no reference pack (.gpu_pack/*/reference.tar.xz): the parity parts are skipped"
fi

# --continue-on-collection-errors: a test module needing a package the GPU machine lacks must not stop the rest
part pytest-gpu 90 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors \
    --junitxml "$OUT_DIR/pytest_gpu.xml"
DEVICE=cuda
[[ -n $SMOKE ]] && DEVICE=cpu
for pack in mini full; do
    if [[ -n $SMOKE && $pack == full ]]; then
        echo "== parity-full: skipped in the CPU smoke run (full-size nets on CPU take minutes; python benchmarks/parity.py runs them)"
    elif [[ -f .gpu_pack/$pack.unpacked/README.md ]]; then
        part "parity-$pack" 100 bash -c "set -o pipefail; \"$PYTHON\" benchmarks/parity.py --device $DEVICE \
            --reference .gpu_pack/$pack.unpacked --json \"$OUT_DIR/parity-$pack.json\" | tee \"$OUT_DIR/parity-$pack.md\""
    fi
done
py_part tree 30
py_part amp 110
py_part ddp 70
py_part infer 120
py_part train-speed 70
py_part profile 50
"$PYTHON" benchmarks/gpu_check.py summary --out "$OUT_DIR" $SMOKE > /dev/null
echo "== done in $(( $(date +%s) - START ))s; summary: $OUT_DIR/summary.md"
cat "$OUT_DIR/summary.md"
