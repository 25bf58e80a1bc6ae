"""The Python API finds the shipped cfg/ and data/ files as the CLI does (issue #21 item 7): the README's
Python blocks run from a directory holding nothing but the weights they name."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pydarknet._resources import shipped_or_given, shipped_root
from reference import decompressed_weights
from test_readme import readme_blocks

REPO = Path(__file__).resolve().parent.parent


def test_a_missing_relative_name_is_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shipped_or_given("cfg/yolov2-voc.cfg") == shipped_root() / "cfg" / "yolov2-voc.cfg"
    assert shipped_or_given("data/dog.jpg") == shipped_root() / "data" / "dog.jpg"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dog.jpg").write_bytes(b"mine")
    assert shipped_or_given("data/dog.jpg") == "data/dog.jpg"             # the user's own file wins
    assert shipped_or_given("cfg/nothing.cfg") == "cfg/nothing.cfg"       # reported missing by whoever opens it
    assert shipped_or_given("../cfg/yolov2.cfg") == "../cfg/yolov2.cfg"   # never climbs out of the shipped folder


@pytest.mark.slow
def test_readme_python_blocks_run_from_an_empty_directory(reference, tmp_path):
    blocks = readme_blocks()
    (tmp_path / "weights").mkdir()
    for name in sorted(set(re.findall(r"weights/([\w.-]+)\.weights", "".join(blocks)))):
        if not (reference / "weights" / f"{name}.weights.xz").exists():
            pytest.skip(f"the README uses weights/{name}.weights, which the reference pack lacks")
        decompressed_weights(reference, name, tmp_path / "weights")
    script = tmp_path / "readme_blocks.py"
    script.write_text("\n".join(blocks))
    environment = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            env=environment, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"^\w+: \d+% \(\d+, \d+, \d+, \d+\)$", result.stdout, re.M)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.weights", "readme_blocks.py", "weights"]
