"""The heap-corruption hunt of issue 20: train -> map -> test repeated in ONE process under glibc's checking
allocator, so that a double free, a write past a block or a use after free aborts the run here instead
of once in a long `make demo`.

Each round exercises the suspects named in the issue: data loader processes forked (workers=2) after
OpenMP/oneDNN have started in the parent, the threaded evaluation that decodes JPEGs with jpeglib
(`imdecode._JPEGLIB_LOCK`), a prepacked, batch-norm-folded `InferenceNetwork` beside the plain net it
was built from (and, last, one folded in place), and, in the "tuned" variant, `runtime.keep_freed_memory`'s
mallopt values (applied only when $GLIBC_TUNABLES is unset, so that variant checks with MALLOC_CHECK_).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
MALLOC_DEBUG = next((p for p in (Path("/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"),
                                  Path("/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0"),
                                  Path("/lib64/libc_malloc_debug.so.0")) if p.exists()), None)
ROUNDS = 3
STRESS = r"""
import gc, sys, warnings
from pathlib import Path

if sys.argv[2] == "tuned":
    from pydarknet.runtime import keep_freed_memory
    assert keep_freed_memory(), "mallopt not applied"
sys.path.insert(0, sys.argv[3])
from tiny_detector import write_tiny_cfg

import torch
from pydarknet.data.files import read_list
from pydarknet.data.synth import make_synth
from pydarknet.engine.train import train_detector
from pydarknet.evaluate import compute_map
from pydarknet.image import load_image
from pydarknet.inference import InferenceNetwork
from pydarknet.network import load_network
from pydarknet.predict import detect_boxes

warnings.simplefilter("ignore")
out = Path(sys.argv[1])
data = make_synth(out / "data", train=24, valid=24, size=128, seed=5)
cfg = write_tiny_cfg(out / "tiny.cfg", classes=5)
weights = None
for round in range(int(sys.argv[4])):
    result = train_detector(data, cfg, weights, workers=2, max_batches=12 * (round + 1), seed=round,
                            show_progress=False, verbose=False, log=lambda line: None)
    weights = result.final_weights
    net = load_network(cfg, weights, "cpu")
    # 4 decoding threads (jpeglib), the demo's map step; in round 0 they make the process's first stb JPEG
    # decodes (jpeglib loaded and switched to libjpeg-turbo), as in `make demo`, whose training used OpenCV
    compute_map(net, data, workers=4)
    sample = load_image(read_list(data.parent / "valid.txt")[0])
    fast = InferenceNetwork(net)                         # a folded, prepacked copy beside the plain net
    plain, folded = detect_boxes(net, sample, 0.1), detect_boxes(fast, sample, 0.1)
    assert len(plain) == len(folded), (len(plain), len(folded))
    compute_map(fast, data, workers=4)
    detect_boxes(InferenceNetwork(net, in_place=True), sample, 0.1)   # the CLI's way: nothing else uses `net`
    del net, fast
    gc.collect()
    print(f"round {round}: {len(result.history)} iterations, {len(plain)} boxes", flush=True)
print("done", flush=True)
"""


def stress_environment(allocator: str) -> dict[str, str]:
    """The environment of a stress run: glibc's checking allocator turned on the way `allocator` says
    ("tunables": GLIBC_TUNABLES, which also turns `keep_freed_memory` off; "tuned": MALLOC_CHECK_ with the
    mallopt values applied), the Python traceback of a fatal signal, two threads."""
    env = dict(os.environ, PYTHONFAULTHANDLER="1", OMP_NUM_THREADS="2", MALLOC_PERTURB_="165")
    env.pop("GLIBC_TUNABLES", None)
    # glibc >= 2.34 checks only with its debugging malloc preloaded
    env["LD_PRELOAD"] = " ".join(filter(None, [str(MALLOC_DEBUG), env.get("LD_PRELOAD", "")]))
    if allocator == "tunables":
        env["GLIBC_TUNABLES"] = "glibc.malloc.check=3"
    else:
        env["MALLOC_CHECK_"] = "3"
    return env


def run_stress(folder: Path, allocator: str, rounds: int = ROUNDS, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STRESS, str(folder), allocator, str(TESTS), str(rounds)],
                          env=stress_environment(allocator), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.skipif(MALLOC_DEBUG is None or not sys.platform.startswith("linux"),
                    reason="glibc's libc_malloc_debug.so.0 (the checking allocator) is not here")
@pytest.mark.parametrize("allocator", ["tunables", "tuned"])
def test_train_map_test_rounds_in_one_process_keep_the_heap_whole(tmp_path, allocator):
    done = run_stress(tmp_path, allocator)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert done.stdout.splitlines()[-1] == "done"


OVERFLOW = """
import ctypes
libc = ctypes.CDLL(None)
libc.dlvsym.restype = ctypes.c_void_p
libc.dlvsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
# the versioned symbols, as C code binds them (plain dlsym finds libc's own malloc, not the preloaded one)
malloc = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_size_t)(libc.dlvsym(None, b"malloc", b"GLIBC_2.2.5"))
free = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(libc.dlvsym(None, b"free", b"GLIBC_2.2.5"))
block = malloc(20)
ctypes.memset(block + 20, 0x41, 1)   # one byte past the block
free(block)
print("not detected")
"""


@pytest.mark.skipif(MALLOC_DEBUG is None or not sys.platform.startswith("linux"),
                    reason="glibc's libc_malloc_debug.so.0 (the checking allocator) is not here")
@pytest.mark.parametrize("allocator", ["tunables", "tuned"])
def test_the_stress_environment_catches_a_one_byte_overflow(allocator):
    """The stress runs above prove something only if the checker is on: it aborts on one byte written past
    a block (the plain allocator does not notice), with the Python traceback."""
    done = subprocess.run([sys.executable, "-c", OVERFLOW], env=stress_environment(allocator), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "not detected" not in done.stdout
    assert "free(): invalid pointer" in done.stderr and "Fatal Python error: Aborted" in done.stderr
