"""`data voc`, `data coco` and `detector calc_anchors` as a user types them."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.data.files import read_data_file
from test_anchors import FIXTURES, RECORDED, data_file_for
from test_coco import make_coco
from voc_devkit import make_devkit


def test_data_voc_writes_the_lists_and_a_data_file(tmp_path):
    devkit = make_devkit(tmp_path)
    result = CliRunner().invoke(main, ["data", "voc", str(devkit), "--out", str(tmp_path / "voc")])
    assert result.exit_code == 0, result.output
    data = read_data_file(tmp_path / "voc" / "voc.data")
    assert data.get_path("train") == tmp_path / "voc" / "train.txt"
    assert f"{tmp_path / 'voc' / 'voc.data'}" in result.stdout


def test_data_coco_names_its_data_file(tmp_path):
    instances, images = make_coco(tmp_path / "coco")
    result = CliRunner().invoke(main, ["data", "coco", str(instances), str(images),
                                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert read_data_file(tmp_path / "out" / "coco.data").get_str("eval") == "coco"


def test_calc_anchors_prints_alexeyabs_best_anchors_and_draws_them(tmp_path, monkeypatch):
    data = data_file_for(FIXTURES / "clustered_labels.txt", tmp_path)
    picture = tmp_path / "anchors.png"
    monkeypatch.chdir(tmp_path)   # AlexeyAB's anchors.txt and counters_per_class.txt are written here
    result = CliRunner().invoke(main, ["detector", "calc_anchors", str(data), "-num_of_clusters", "5",
                                       "-width", "416", "-height", "416", "-show", str(picture)])
    assert result.exit_code == 0, result.output
    best = max(RECORDED["runs"]["clustered"], key=lambda run: run["avg_iou_percent"])
    assert f" avg IoU = {best['avg_iou_percent']:.2f} % " in result.output.splitlines()
    # AlexeyAB's %3.0f padding inside the line (the recording strips the line's ends)
    assert f"anchors = {best['anchors']:>43}" in result.output.splitlines()   # 5 x "%3.0f,%3.0f" + 4 x ", "
    assert picture.stat().st_size > 0 and Path(picture).read_bytes()[:4] == b"\x89PNG"
