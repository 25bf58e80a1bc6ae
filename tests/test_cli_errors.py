"""A user's mistake ends any command with one line naming the file, exit code 1, and no traceback."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pydarknet.cli import main
from reference import decompressed_weights  # noqa: F401  (skips cleanly without the pack)

REPO = Path(__file__).resolve().parent.parent
NET = "mini-yolov2-tiny-voc"


def _error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def _test(reference, tmp_path, *, cfg=None, weights=None, data=None, image=None):
    mini = reference / "mini"
    return CliRunner().invoke(main, ["detector", "test", str(data or REPO / "cfg" / "voc.data"),
                                     str(cfg or mini / f"{NET}.cfg"), str(weights or mini / f"{NET}.weights"),
                                     str(image or reference / "darknet" / "data" / "dog.jpg")])


def test_a_misspelt_section_names_the_cfg_line(reference, tmp_path):
    cfg = tmp_path / "typo.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n\n[maxpoool]\n")
    line = _error_line(_test(reference, tmp_path, cfg=cfg))
    assert f"{cfg}:6" in line and "unknown section [maxpoool]" in line


def test_a_truncated_weights_file_names_the_file_and_layer(reference, tmp_path):
    weights = tmp_path / "cut.weights"
    weights.write_bytes((reference / "mini" / f"{NET}.weights").read_bytes()[:5000])
    line = _error_line(_test(reference, tmp_path, weights=weights))
    assert str(weights) in line and "file ends inside layer 6 (convolutional)" in line


def test_a_header_only_weights_file_is_refused_for_detection(reference, tmp_path):
    weights = tmp_path / "header.weights"
    weights.write_bytes((reference / "mini" / f"{NET}.weights").read_bytes()[:20])
    line = _error_line(_test(reference, tmp_path, weights=weights))
    assert str(weights) in line and "holds no layer's weights" in line and "random weights" in line


def test_too_few_names_names_the_names_file(reference, tmp_path):
    names = tmp_path / "short.names"
    names.write_text("aeroplane\nbicycle\n")
    data = tmp_path / "short.data"
    data.write_text(f"classes=20\nnames={names}\n")
    line = _error_line(_test(reference, tmp_path, data=data))
    assert str(names) in line and "2 names for the 20 classes" in line


def test_partial_on_a_missing_layer_count_file_is_one_line(reference, tmp_path):
    result = CliRunner().invoke(main, ["partial", str(reference / "mini" / f"{NET}.cfg"),
                                       str(tmp_path / "absent.weights"), str(tmp_path / "out.weights"), "3"])
    assert result.exit_code != 0 and "Traceback" not in result.output and "absent.weights" in result.output


@pytest.mark.parametrize("debug", [["--debug"], []], ids=["--debug", "PYDARKNET_DEBUG=1"])
def test_debug_shows_the_traceback(reference, tmp_path, debug):
    cfg = tmp_path / "typo.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n\n[maxpoool]\n")
    env = {"PYDARKNET_DEBUG": "1"} if not debug else {}
    completed = subprocess.run([sys.executable, "-m", "pydarknet", *debug, "detector", "test",
                                str(REPO / "cfg" / "voc.data"), str(cfg), str(reference / "mini" / f"{NET}.weights"),
                                str(reference / "darknet" / "data" / "dog.jpg")],
                               capture_output=True, text=True, cwd=REPO, env={**_environ(), **env})
    assert completed.returncode != 0
    assert "Traceback" in completed.stderr and "CfgError" in completed.stderr


def _environ() -> dict[str, str]:
    import os
    return {key: value for key, value in os.environ.items() if key != "PYDARKNET_DEBUG"}
