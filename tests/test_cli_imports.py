"""What the commands import: only what they need (start-up time is most of a one-image `detector test`)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# Imported by none of `detector test`'s code: sympy is what a net built on the meta device and moved
# with Module.to_empty pulls in (0.25 s); the others belong to other commands
NOT_FOR_DETECTOR_TEST = ("onnx", "onnxruntime", "matplotlib", "pycocotools", "hypothesis", "sympy", "scipy", "PIL")


def _modules_after(args: list[str]) -> set[str]:
    """The top-level modules imported by `python -m pydarknet ARGS`, run in a fresh interpreter."""
    code = ("import runpy, sys\n"
            f"sys.argv = ['pydarknet', *{[str(a) for a in args]!r}]\n"
            "try:\n    runpy.run_module('pydarknet', run_name='__main__')\n"
            "except SystemExit as done:\n    assert not done.code, done.code\n"
            "print('MODULES', *sorted({name.split('.')[0] for name in sys.modules}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES "))
    return set(line.split()[1:])


def test_detector_test_imports_only_what_it_needs(reference, tmp_path):
    net = "mini-yolov2-voc"
    modules = _modules_after(["-q", "detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
                              reference / "mini" / f"{net}.weights", REPO / "data" / "dog.jpg", "-out", tmp_path / "p"])
    assert {"torch", "cv2", "pydarknet"} <= modules
    assert not modules & set(NOT_FOR_DETECTOR_TEST)
    assert (tmp_path / "p.jpg").is_file()


def test_help_imports_no_torch():
    modules = _modules_after(["detector", "test", "--help"])
    assert "torch" not in modules and not modules & set(NOT_FOR_DETECTOR_TEST)
