"""A yolov4-tiny-shaped net trained by pydarknet (`make demo-v4`), read by AlexeyAB's Darknet: the same
`-ext_output` lines on 30 validation images and the same `detector map` report (fixtures/synth_v4/README.md)."""
from __future__ import annotations

import json
import lzma
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.data.synth import make_synth

FIXTURES = Path(__file__).parent / "fixtures" / "synth_v4"
CFG = Path(__file__).parents[1] / "cfg" / "synth-v4-tiny.cfg"
RECORDED = json.loads((FIXTURES / "alexeyab.json").read_text())
IMAGES = 30


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(the .data file of the 30 validation images, the weights)."""
    folder = tmp_path_factory.mktemp("synth_v4")
    data = make_synth(folder / "data", train=1, valid=IMAGES, size=256, seed=0, layout="alexeyab")
    weights = folder / "synth-v4-tiny_best.weights"
    weights.write_bytes(lzma.decompress((FIXTURES / "synth-v4-tiny_best.weights.xz").read_bytes()))
    return data, weights


def _run(args: list) -> str:
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_ext_output_lines_are_alexeyabs(trained):
    data, weights = trained
    images = (data.parent / "valid.txt").read_text()
    stdout = CliRunner().invoke(main, ["detector", "test", str(data), str(CFG), str(weights), "-ab", "-dont_show",
                                       "-ext_output", "-out", str(data.parent / "out") + "/"], input=images)
    assert stdout.exit_code == 0, stdout.output
    printed: dict[str, list[str]] = {}
    for line in stdout.stdout.splitlines():
        found = re.search(r"(valid_\d+)\.jpg: Predicted in [0-9.]+ milli-seconds\.$", line)
        if found:
            printed[found.group(1)] = []
        elif "%" in line:
            printed[list(printed)[-1]].append(line)
    assert len(printed) == IMAGES and sum(map(len, printed.values())) == 77
    assert printed == RECORDED["detector_test_ext_output"]


def test_map_report_is_alexeyabs(trained):
    data, weights = trained
    assert _run(["detector", "map", data, CFG, weights, "-ab"]).splitlines() == RECORDED["detector_map"]
