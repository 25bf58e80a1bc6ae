"""`detector calc_anchors`: dimension clusters with 1 - IoU k-means, against AlexeyAB's recorded runs."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pydarknet.data.anchors import (AnchorResult, EmptyLabelWarning, calc_anchors, kmeans_anchors, mean_best_iou,
                                    plot_anchors, wh_iou)
from pydarknet.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "anchors"
RECORDED = json.loads((FIXTURES / "alexeyab_calc_anchors.json").read_text())
PRINTED_ROUNDING = 0.005   # AlexeyAB prints "avg IoU = %2.2f %%"
KNOWN_CENTRES = np.array([[0.05, 0.08], [0.15, 0.3], [0.35, 0.2], [0.3, 0.6], [0.75, 0.7]])   # ascending area


def data_file_for(labels: Path, folder: Path, classes: int = 5) -> Path:
    """A .data file whose train list is one image with `labels` as its label file."""
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(labels, folder / "labels" / "all.txt")
    (folder / "train.txt").write_text(f"{folder / 'JPEGImages' / 'all.jpg'}\n")
    data = folder / "boxes.data"
    data.write_text(f"classes={classes}\ntrain={folder / 'train.txt'}\n")
    return data


def clustered_sizes(count: int, spread: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centre = rng.integers(len(KNOWN_CENTRES), size=count)
    return KNOWN_CENTRES[centre] * np.exp(rng.normal(0, spread, (count, 2)))


def test_finds_known_clusters():
    anchors, mean_iou = kmeans_anchors(clustered_sizes(5000, 0.05, seed=1), 5, seed=0)
    np.testing.assert_allclose(anchors, KNOWN_CENTRES, rtol=0.02)
    assert mean_iou > 0.9


@pytest.mark.parametrize("labels", ["synth", "clustered"])
def test_mean_iou_at_least_alexeyabs(labels, tmp_path):
    result = calc_anchors(data_file_for(FIXTURES / f"{labels}_labels.txt", tmp_path), 5, 416, 416)
    best = max(run["avg_iou_percent"] for run in RECORDED["runs"][labels])
    assert 100 * result.mean_iou >= best - PRINTED_ROUNDING
    assert len(result.box_sizes) == len((FIXTURES / f"{labels}_labels.txt").read_text().splitlines())


def test_same_anchors_as_alexeyabs_best_run_on_clear_clusters(tmp_path):
    result = calc_anchors(data_file_for(FIXTURES / "clustered_labels.txt", tmp_path), 5, 416, 416)
    best = max(RECORDED["runs"]["clustered"], key=lambda run: run["avg_iou_percent"])
    assert result.yolo_line().replace(" ", "") == "anchors=" + best["anchors"].replace(" ", "")
    assert f"{100 * result.mean_iou:.2f}" == f"{best['avg_iou_percent']:.2f}"
    np.testing.assert_allclose(result.grid, result.pixels / 32)


def test_mean_iou_is_the_mean_best_corner_aligned_iou():
    sizes = np.array([[0.1, 0.2], [0.4, 0.4], [0.3, 0.1]])
    anchors = np.array([[0.2, 0.2], [0.4, 0.3]])
    by_hand = [max(min(w, a) * min(h, b) / (w * h + a * b - min(w, a) * min(h, b)) for a, b in anchors)
               for w, h in sizes]
    assert mean_best_iou(sizes, anchors) == pytest.approx(np.mean(by_hand), rel=1e-12)
    np.testing.assert_allclose(wh_iou(sizes, anchors)[0], [0.02 / 0.04, 0.02 / 0.12])


def test_lines_in_region_cells_and_yolo_pixels():
    # yolo-voc.cfg's first anchor, 1.08 x 1.19 cells of the 13 x 13 grid at 416 x 416
    result = AnchorResult(np.array([[1.08 / 13, 1.19 / 13], [9.42 / 13, 5.11 / 13]]), 416, 416, 0.5, np.zeros((0, 2)))
    assert result.region_line() == "anchors = 1.08,1.19, 9.42,5.11"
    assert result.yolo_line() == "anchors = 35,38, 301,164"
    assert "avg IoU = 50.00 %" in result.report()


def test_sorted_by_area():
    anchors, _ = kmeans_anchors(clustered_sizes(3000, 0.1, seed=2), 5, seed=3)
    areas = anchors[:, 0] * anchors[:, 1]
    assert np.all(np.diff(areas) > 0)


def test_seed_makes_it_reproducible():
    sizes = clustered_sizes(2000, 0.3, seed=4)
    np.testing.assert_array_equal(kmeans_anchors(sizes, 5, seed=7)[0], kmeans_anchors(sizes, 5, seed=7)[0])


def test_unlabelled_entries_and_classification_lines_are_left_out(tmp_path):
    labels = tmp_path / "mixed.txt"
    labels.write_text("0 0.5 0.5 0.2 0.4\n1 0 0 0.3 0.3\n2 0.5 0.5 0.0 0.1\n0 0.3 0.3 0.1 0.1\n")
    data = data_file_for(labels, tmp_path)
    with open(tmp_path / "train.txt", "a") as file:
        file.write(f"{tmp_path / 'JPEGImages' / 'nolabel.jpg'}\n")
    with pytest.warns(EmptyLabelWarning):
        result = calc_anchors(data, 2, 416, 416)
    np.testing.assert_array_equal(result.box_sizes, np.array([[0.2, 0.4], [0.1, 0.1]], np.float32))
    np.testing.assert_allclose(result.anchors, [[0.1, 0.1], [0.2, 0.4]], rtol=1e-6)
    assert len(result.notes) == 3 and "1 of 2 images have no label file" in result.notes[0]


def test_fewer_boxes_than_clusters_is_an_error(tmp_path):
    labels = tmp_path / "two.txt"
    labels.write_text("0 0.5 0.5 0.2 0.4\n0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DataError, match="2 boxes .* fewer than num_of_clusters=5"):
        calc_anchors(data_file_for(labels, tmp_path), 5, 416, 416)


def test_picture_is_written(tmp_path):
    result = calc_anchors(data_file_for(FIXTURES / "clustered_labels.txt", tmp_path), 5, 416, 416)
    picture = plot_anchors(result, tmp_path / "anchors.png")
    assert picture.read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------------------------ AlexeyAB's printed lines
def fixed_result(width: int = 416, height: int = 416) -> AnchorResult:
    """Three boxes and two fixed clusters (relative w, h), ascending area; classes 0, 2, 2 of 3."""
    sizes = np.array([[0.1, 0.2], [0.4, 0.4], [0.3, 0.1]], np.float32).astype(np.float64)
    anchors = np.array([[0.2, 0.2], [0.4, 0.3]])
    return AnchorResult(anchors, width, height, mean_best_iou(sizes, anchors), sizes, images=2,
                        counters_per_class=(1, 0, 2))


def c_avg_iou(result: AnchorResult) -> float:
    """detector.c:calc_anchors' loop, one float32 operation at a time."""
    f = np.float32
    total = f(0)
    for bw, bh in result.box_sizes.astype(np.float32) * np.array([result.width, result.height], np.float32):
        min_dist, best_iou = f(np.finfo(np.float32).max), f(0)
        for aw, ah in result.pixels.astype(np.float32):
            inter = min(bw, aw) * min(bh, ah)
            iou = inter / (bw * bh + aw * ah - inter)
            if f(1) - iou < min_dist:
                min_dist, best_iou = f(1) - iou, iou
        total = f(total + best_iou)
    return float(f(100) * total / f(len(result.box_sizes)))


def test_alexeyab_lines_on_fixed_clusters():
    result = fixed_result()
    # box 1: IoU .5 with (.2,.2); box 2: .75 with (.4,.3); box 3: .02/.05 = .4 with (.2,.2) (.25 with the other)
    assert result.alexeyab_avg_iou() == pytest.approx(100 * (0.5 + 0.75 + 0.4) / 3, abs=1e-4)
    assert result.alexeyab_avg_iou() == c_avg_iou(result)
    assert result.alexeyab_lines() == [
        "", " num_of_clusters = 2, width = 416, height = 416 ", " read labels from 2 images ",
        " loaded \t image: 2 \t box: 3", " all loaded. ", "", " calculating k-means++ ...", "", "",
        "counters_per_class = 1, 0, 2", "", " avg IoU = 55.00 % ", "", "Saving anchors to the file: anchors.txt ",
        "anchors =  83, 83, 166,125"]


def test_alexeyab_anchors_in_grid_cells_below_width_33():
    """-width 13 -height 13: [region] anchors in cells, printed %2.4f."""
    assert fixed_result(13, 13).alexeyab_anchors() == "2.6000,2.6000, 5.2000,3.9000"


@pytest.mark.parametrize("clusters", [6, 9])
def test_calc_anchors_command_prints_and_writes_alexeyabs_files(tmp_path, monkeypatch, clusters):
    from click.testing import CliRunner

    from pydarknet.cli import main

    data = data_file_for(FIXTURES / "synth_labels.txt", tmp_path / "set")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["detector", "calc_anchors", str(data), "-num_of_clusters", str(clusters),
                                       "-width", "416", "-height", "320"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()   # the dataset check's lines are on stderr
    assert lines[:5] == ["", f" num_of_clusters = {clusters}, width = 416, height = 320 ", " read labels from 1 images ",
                         " loaded \t image: 1 \t box: 1263", " all loaded. "]
    assert re.fullmatch(r" avg IoU = \d\d\.\d\d % ", lines[-4]) and lines[-2:][0].startswith("Saving anchors")
    anchors = (tmp_path / "anchors.txt").read_text()
    assert lines[-1] == f"anchors = {anchors}" and re.fullmatch(r"( *\d+, *\d+, ){%d} *\d+, *\d+" % (clusters - 1),
                                                                anchors)
    pairs = np.array([[float(v) for v in pair.split(",")] for pair in re.findall(r" *\d+, *\d+", anchors)])
    assert len(pairs) == clusters and np.all(np.diff(pairs[:, 0] * pairs[:, 1]) >= 0)   # by area, as its qsort
    counters = (tmp_path / "counters_per_class.txt").read_text()
    assert f"counters_per_class = {', '.join(map(str, np.bincount(label_classes(), minlength=5)))}" == counters
    assert counters in lines


def label_classes() -> np.ndarray:
    return np.loadtxt(FIXTURES / "synth_labels.txt", usecols=0).astype(int)
