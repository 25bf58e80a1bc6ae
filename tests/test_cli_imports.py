"""What the commands import: only what they need (start-up time is most of a one-image `detector test`)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from reference import read_json

from pydarknet.prepack import prepacking_available

REPO = Path(__file__).resolve().parent.parent


# Imported by none of `detector test`'s code: sympy is what a net built on the meta device and moved
# with Module.to_empty pulls in (0.25 s); the others belong to other commands
NOT_FOR_DETECTOR_TEST = ("onnx", "onnxruntime", "matplotlib", "pycocotools", "hypothesis", "sympy", "scipy", "PIL")


def _run_program(args: list[str], before: str = "", stdin: str = "") -> subprocess.CompletedProcess:
    """`python -m pydarknet ARGS` in a fresh interpreter, after the Python statements `before`, reading `stdin`;
    at exit (atexit) it prints the top-level modules imported, on a line `MODULES …`."""
    code = (f"import atexit, runpy, sys\n{before}\n"
            "atexit.register(lambda: print('MODULES', *sorted({name.split('.')[0] for name in sys.modules})))\n"
            f"sys.argv = ['pydarknet', *{[str(a) for a in args]!r}]\n"
            "runpy.run_module('pydarknet', run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, input=stdin)


def _modules_after(args: list[str]) -> set[str]:
    """The top-level modules imported by `python -m pydarknet ARGS`."""
    result = _run_program(args)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_detector_test_imports_only_what_it_needs(reference, tmp_path):
    net = "mini-yolov2-voc"
    modules = _modules_after(["-q", "detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
                              reference / "mini" / f"{net}.weights", REPO / "data" / "dog.jpg", "-out", tmp_path / "p"])
    assert {"torch", "cv2", "pydarknet"} <= modules
    assert not modules & set(NOT_FOR_DETECTOR_TEST)
    assert (tmp_path / "p.jpg").is_file()


# Says, at exit, how many convs were prepacked and whether the JSON writers were imported
PREPACK_COUNTER = ("import atexit, sys\nimport pydarknet.prepack as prepack\nprepacked = []\n"
                   "original = prepack.PrepackedConvolution.__init__\n"
                   "def counted(self, *args, **kwargs):\n    prepacked.append(1)\n    original(self, *args, **kwargs)\n"
                   "prepack.PrepackedConvolution.__init__ = counted\n"
                   "atexit.register(lambda: print('PREPACKED', len(prepacked), 'JSON_WRITERS',\n"
                   "                              'pydarknet.serve.json_stream' in sys.modules))")


def test_a_one_image_test_runs_the_folded_weights_unpacked(reference, tmp_path):
    """One image: one forward, for which reordering the weights (prepacking) costs more than it saves; images typed
    at the prompt: prepacked. The AlexeyAB JSON writers are imported only when asked for."""
    if not prepacking_available(torch.device("cpu")):
        pytest.skip("this PyTorch has no oneDNN prepacked convolution")
    one_image = _run_program(_detector_test(reference, tmp_path)[:-2], before=PREPACK_COUNTER)
    prompt = _run_program([*_detector_test(reference, tmp_path)[:5], *_detector_test(reference, tmp_path)[6:-2]],
                          before=PREPACK_COUNTER, stdin=f"{REPO / 'data' / 'dog.jpg'}\n" * 2)
    assert one_image.returncode == 0 and prompt.returncode == 0, one_image.stderr + prompt.stderr
    assert "PREPACKED 0 JSON_WRITERS False" in one_image.stdout
    assert "PREPACKED 23 JSON_WRITERS False" in prompt.stdout   # mini-yolov2-voc's 23 convs
    def printed(stdout: str) -> list[str]:
        return [line for line in stdout.replace("Enter Image Path: ", "\n").splitlines() if line.endswith("%")]
    assert printed(one_image.stdout) and printed(one_image.stdout) * 2 == printed(prompt.stdout)


def test_help_imports_no_torch_and_no_opencv():
    modules = _modules_after(["detector", "test", "--help"])
    assert not modules & {"torch", "cv2", *NOT_FOR_DETECTOR_TEST}


def _detector_test(reference, tmp_path) -> list[str]:
    net = "mini-yolov2-voc"
    return ["detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
            reference / "mini" / f"{net}.weights", REPO / "data" / "dog.jpg", "-thresh", "0.1",
            "-out", tmp_path / "p", "--json", tmp_path / "dets.json"]


# An object that says when the interpreter's teardown frees it (a module global of __main__)
TEARDOWN_WITNESS = ("class Witness:\n    def __del__(self):\n        print('TEARDOWN', flush=True)\n"
                    "witness = Witness()")


def test_detector_test_ends_without_the_interpreters_teardown(reference, tmp_path):
    """After writing everything, `detector test` runs the exit handlers and ends: no teardown."""
    result = _run_program(_detector_test(reference, tmp_path), before=TEARDOWN_WITNESS)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    expected = read_json(reference / "forward" / "mini-yolov2-voc" / "dog" / "dets_t0.10.json")["printed"]
    assert [line for line in lines if "Predicted in" not in line and not line.startswith("MODULES ")] == expected
    assert lines[-1].startswith("MODULES ") and "TEARDOWN" not in result.stdout  # atexit ran, teardown did not
    assert json.loads((tmp_path / "dets.json").read_text())["detections"]   # written whole
    assert (tmp_path / "p.jpg").stat().st_size > 0


def test_a_failing_command_exits_normally(reference, tmp_path):
    args = _detector_test(reference, tmp_path)
    args[5] = tmp_path / "nope.jpg"
    result = _run_program(args, before=TEARDOWN_WITNESS)
    assert result.returncode == 1 and "nope.jpg" in result.stderr and "Traceback" not in result.stderr
    assert "TEARDOWN" in result.stdout


# Clears the user's OpenMP wait settings before pydarknet loads, and prints OpenMP's at exit
OPENMP_WAIT_AT_EXIT = ("import atexit, os\n{clear}\n"
                       "atexit.register(lambda: print('WAIT', os.environ.get('OMP_WAIT_POLICY'), "
                       "os.environ.get('GOMP_SPINCOUNT')))")
NO_USER_WAIT = OPENMP_WAIT_AT_EXIT.format(clear="os.environ.pop('OMP_WAIT_POLICY', None); "
                                                "os.environ.pop('GOMP_SPINCOUNT', None)")


def test_one_image_commands_let_openmp_spin_before_torch_loads(reference, tmp_path):
    """`detector test` sets GOMP_SPINCOUNT (only ever before torch loads: runtime.spin_between_layers); a command
    whose other threads want the cores (here `partial`, as training and `detector valid`) keeps the threads
    sleeping; a wait the user chose is left alone."""
    one_image = _run_program(_detector_test(reference, tmp_path)[:-2], before=NO_USER_WAIT)
    net = reference / "mini" / "mini-yolov2-voc"
    partial = _run_program(["-q", "partial", f"{net}.cfg", f"{net}.weights", tmp_path / "part.weights", "2"],
                           before=NO_USER_WAIT)
    chosen = _run_program(_detector_test(reference, tmp_path)[:-2], before=OPENMP_WAIT_AT_EXIT.format(
        clear="os.environ.pop('GOMP_SPINCOUNT', None); os.environ['OMP_WAIT_POLICY'] = 'ACTIVE'"))
    assert one_image.returncode == partial.returncode == chosen.returncode == 0, one_image.stderr + partial.stderr
    assert "WAIT PASSIVE 10000" in one_image.stdout
    assert "WAIT PASSIVE None" in partial.stdout
    assert "WAIT ACTIVE None" in chosen.stdout


def test_spinning_is_not_asked_for_once_torch_is_loaded():
    code = ("import os\nos.environ.pop('OMP_WAIT_POLICY', None); os.environ.pop('GOMP_SPINCOUNT', None)\n"
            "import torch\nfrom pydarknet.runtime import spin_between_layers\n"
            "print(spin_between_layers(), os.environ.get('GOMP_SPINCOUNT'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.split() == ["False", "None"]
