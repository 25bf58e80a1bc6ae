"""Every ```python block of README.md runs, in order, in one namespace (as a reader's session would).

The blocks are run from a scratch directory laid out as the README assumes (a checkout's `cfg/` and
`data/`, `weights/`), with each `weights/<name>.weights` they name decompressed from the reference
pack; the test skips when the pack lacks one.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from reference import decompressed_weights

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[str]:
    return BLOCK.findall((REPO / "README.md").read_text())


def test_the_readme_has_python_blocks():
    assert len(readme_blocks()) >= 2


def test_readme_python_blocks_run(reference, tmp_path, monkeypatch, capsys):
    blocks = readme_blocks()
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in sorted(set(re.findall(r"weights/([\w.-]+)\.weights", "".join(blocks)))):
        if not (reference / "weights" / f"{name}.weights.xz").exists():
            pytest.skip(f"the README uses weights/{name}.weights, which the reference pack lacks")
        decompressed_weights(reference, name, weights)
    for folder in ("cfg", "data"):
        (tmp_path / folder).symlink_to(REPO / folder)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    printed = capsys.readouterr().out
    # the first block's loop (the pack's weights are seeded random ones: which classes show is arbitrary)
    assert re.search(r"^\w+: \d+% \(\d+, \d+, \d+, \d+\)$", printed, re.M)
    assert (tmp_path / "copy.weights").read_bytes() == (weights / "yolov2-voc.weights").read_bytes()
