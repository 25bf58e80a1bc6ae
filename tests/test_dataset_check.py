"""The dataset check (pydarknet.data.check) and the commands that run it before loading the weights."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.data.check import cfg_head, check_classes, check_dataset
from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.errors import DataError

REPO = Path(__file__).resolve().parent.parent
JPEG = (REPO / "data" / "dog.jpg").read_bytes()[:256]   # a JPEG signature is all the check reads
HEAD_CFG = "[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nfilters=14\nsize=1\n\n[region]\nclasses={classes}\nnum=2\n"


def _image(path: Path, data: bytes = JPEG) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def _label(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _list(tmp_path: Path, images: list[str]) -> Path:
    listed = tmp_path / "train.txt"
    listed.write_text("".join(f"{image}\n" for image in images))
    return listed


def alexeyab_layout(tmp_path: Path, count: int = 3) -> Path:
    """AlexeyAB's README layout: obj/images/x.jpg with x.txt beside it."""
    images = []
    for i in range(count):
        images.append(_image(tmp_path / "obj" / "images" / f"x{i}.jpg"))
        _label(tmp_path / "obj" / "images" / f"x{i}.txt", f"{i % 2} 0.5 0.5 0.2 0.2\n")
    return _list(tmp_path, images)


def test_alexeyab_layout_under_pjreddies_rule_says_how_to_switch(tmp_path):
    report = check_dataset(alexeyab_layout(tmp_path), 2, PJREDDIE)
    assert (report.listed, report.readable, report.labelled, len(report.missing_labels)) == (3, 3, 0, 3)
    assert report.other_rule_finds == 3
    lines = report.lines()
    assert lines[-1].startswith("Warning: 3 images have no label by pjreddie's rule, but alexeyab's rule finds 3")
    assert lines[-1].endswith("add -ab")
    with pytest.raises(DataError, match="no listed image is readable and has a label file by pjreddie's rule"):
        report.require_usable("train")


def test_alexeyab_layout_under_alexeyabs_rule_is_usable(tmp_path):
    report = check_dataset(alexeyab_layout(tmp_path), 2, ALEXEYAB)
    assert (report.labelled, report.objects, report.class_counts, report.other_rule_finds) == (3, 3, {0: 2, 1: 1}, 0)
    assert report.usable == 3
    assert report.lines()[1] == " labels (alexeyab's rule): 3 found with 3 objects"
    assert report.lines()[2] == " classes seen: 2 of classes=2"
    report.require_usable("train")


def test_pjreddie_layout_under_alexeyabs_rule_says_leave_out_ab(tmp_path):
    image = _image(tmp_path / "images" / "a.jpg")
    _label(tmp_path / "labels" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    report = check_dataset(_list(tmp_path, [image]), 1, ALEXEYAB)
    assert report.missing_labels == [image] and report.lines()[-1].endswith("leave out -ab")
    assert check_dataset(_list(tmp_path, [image]), 1, PJREDDIE).labelled == 1


def test_a_missing_image_is_a_missing_image_not_a_missing_label(tmp_path):
    present = _image(tmp_path / "obj" / "a.jpg")
    _label(tmp_path / "obj" / "a.txt", "0 0.5 0.5 0.1 0.1\n")
    missing = str(tmp_path / "obj" / "gone.jpg")
    _label(tmp_path / "obj" / "gone.txt", "0 0.5 0.5 0.1 0.1\n")
    report = check_dataset(_list(tmp_path, [present, missing]), 1, ALEXEYAB)
    assert report.missing_images == [missing] and report.missing_labels == []
    assert report.lines()[0] == f"Dataset {tmp_path / 'train.txt'}: 2 images listed, 1 readable; 1 missing (first: {missing})"


def test_unreadable_images_empty_and_invalid_labels_and_classes(tmp_path):
    folder = tmp_path / "obj"
    good = _image(folder / "good.jpg")
    _label(folder / "good.txt", "0 0.5 0.5 0.1 0.1\n\n2 0.5 0.5 0.1 0.1\n")
    text = _image(folder / "text.jpg", b"hello, not an image")
    (folder / "dir.jpg").mkdir()
    empty = _image(folder / "empty.jpg")
    _label(folder / "empty.txt", "\n  \n")
    invalid = []
    for name, text_of_label in (("short", "0 0.5 0.5 0.1 0.1\n0 0.5 0.5 0.1\n"), ("class", "7 0.5 0.5 0.1 0.1\n"),
                                ("negative", "1 .5 .5 -1 .1\n"), ("word", "x 1 2 3 4\n")):
        invalid.append(_image(folder / f"{name}.jpg"))
        _label(folder / f"{name}.txt", text_of_label)
    png = _image(folder / "p.png", b"\x89PNG\r\n\x1a\n" + bytes(8))
    _label(folder / "p.txt", "0 0 0 0 0\n")   # x = y = 0: a classification-only label (YOLO9000's)
    report = check_dataset(_list(tmp_path, [good, text, str(folder / "dir.jpg"), empty, *invalid, png]), 4, ALEXEYAB)
    assert report.unreadable_images == [text, str(folder / "dir.jpg")]
    assert report.empty_labels == [str(folder / "empty.txt")]
    # training's rules (labels.parse_labels): the first bad line of each file, which training would skip
    assert [error.split(": ")[0] for error in report.invalid_labels] == \
        [f"{folder / 'short.txt'}:2", f"{folder / 'class.txt'}:1", f"{folder / 'negative.txt'}:1", f"{folder / 'word.txt'}:1"]
    assert "class id 7 is outside 0..3" in report.invalid_labels[1]
    assert (report.labelled, report.objects, report.class_counts) == (2, 3, {0: 2, 2: 1})
    lines = report.lines()
    assert "2 not an image file" in lines[0] and "1 empty" in lines[1] and "4 invalid" in lines[1]
    assert lines[2] == " classes seen: 2 of classes=4 (never seen: 1, 3)"


def test_pjreddies_rule_without_a_label_path_is_reported(tmp_path):
    image = _image(tmp_path / "x.bmp", b"BM" + bytes(30))
    report = check_dataset(_list(tmp_path, [image]), 1, PJREDDIE)
    assert report.no_label_rule == [image] and "1 no label path rule applies" in report.lines()[1]


def test_classes_of_data_and_cfg_head_must_agree(tmp_path):
    cfg = tmp_path / "net.cfg"
    cfg.write_text(HEAD_CFG.format(classes=2))
    assert cfg_head(cfg) == (2, f"{cfg}:11 [region]")
    check_classes("x.data", 2, cfg)
    with pytest.raises(DataError) as error:
        check_classes("x.data", 3, cfg)
    assert str(error.value) == f"x.data: classes=3, but {cfg}:11 [region] has classes=2: make them equal"


def test_training_names_the_data_line_and_the_head_of_a_classes_mismatch(tmp_path):
    from pydarknet.engine.train import train_detector

    cfg = tmp_path / "net.cfg"
    cfg.write_text(HEAD_CFG.format(classes=2) + "anchors=1,1,2,2\nsoftmax=1\n")
    data = tmp_path / "x.data"
    listed = _list(tmp_path, [_image(tmp_path / "a.jpg")])
    data.write_text(f"train={listed}\nclasses=3\nbackup={tmp_path / 'backup'}\n")
    with pytest.raises(DataError) as error:
        train_detector(data, cfg, workers=0, show_progress=False, log=lambda line: None)
    assert str(error.value) == f"{data}:2: classes=3, but {cfg}:11 [region] has classes=2: make them equal"


def test_hundred_thousand_images_in_seconds(tmp_path):
    folder = tmp_path / "obj"
    folder.mkdir()
    for i in range(1000):
        (folder / f"{i}.jpg").write_bytes(JPEG[:16])
        (folder / f"{i}.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    listed = _list(tmp_path, [str(folder / f"{i % 1000}.jpg") for i in range(100_000)])   # each file 100 times
    start = time.perf_counter()
    report = check_dataset(listed, 1, ALEXEYAB)
    seconds = time.perf_counter() - start
    assert report.labelled == 100_000
    assert seconds < 60, f"{seconds:.1f} s"   # 8-20 s measured on 2 loaded cores: no decoding, a few syscalls a file


test_hundred_thousand_images_in_seconds = pytest.mark.slow(test_hundred_thousand_images_in_seconds)


# ---------------------------------------------------------------------------- the commands


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A .data with an AlexeyAB-layout valid list, a 2-class cfg, and a weights file that must never be read."""
    monkeypatch.chdir(tmp_path)
    listed = alexeyab_layout(tmp_path)
    (tmp_path / "two.names").write_text("a\nb\n")
    cfg = tmp_path / "net.cfg"
    cfg.write_text(HEAD_CFG.format(classes=2))
    weights = tmp_path / "never.weights"
    weights.write_bytes(b"not weights")   # loading it would fail with a weights error
    data = tmp_path / "x.data"
    data.write_text(f"classes=2\nvalid={listed}\ntrain={listed}\nnames=two.names\n")
    return data, cfg, weights


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("command", ["map", "recall"])
def test_map_and_recall_check_the_labels_before_the_weights(setup, command):
    data, cfg, weights = setup
    result = _invoke("detector", command, data, cfg, weights)
    assert result.exit_code == 1
    assert "add -ab" in result.stderr
    assert "no listed image is readable and has a label file by pjreddie's rule" in result.stderr
    assert "never.weights" not in result.stderr


def test_map_missing_valid_list_is_reported_before_the_weights(setup, tmp_path):
    data, cfg, weights = setup
    data.write_text("classes=2\nvalid=nowhere.txt\nnames=two.names\n")
    result = _invoke("detector", "map", data, cfg, weights)
    assert result.exit_code == 1 and "nowhere.txt" in result.stderr and "never.weights" not in result.stderr


def test_classes_mismatch_names_both_files(setup):
    data, cfg, weights = setup
    data.write_text(data.read_text().replace("classes=2", "classes=3"))
    result = _invoke("detector", "map", data, cfg, weights, "-ab")
    assert result.exit_code == 1
    assert f"{data}: classes=3, but {cfg}:11 [region] has classes=2" in result.stderr


def test_valid_checks_the_images_only(setup, tmp_path):
    data, cfg, weights = setup
    (tmp_path / "obj" / "images" / "x0.jpg").unlink()
    result = _invoke("detector", "valid", data, cfg, weights)
    assert "3 images listed, 2 readable; 1 missing" in result.stderr and "labels (" not in result.stderr
    assert "never.weights" in result.stderr   # then the weights were loaded: the check let it go on


def test_calc_anchors_checks_with_alexeyabs_rule(setup, tmp_path):
    data, _, _ = setup
    result = _invoke("detector", "calc_anchors", data, "-num_of_clusters", "1", "-ab")
    assert result.exit_code == 0, result.output
    assert " labels (alexeyab's rule): 3 found with 3 objects" in result.stderr
    assert (tmp_path / "anchors.txt").exists()
    without = _invoke("detector", "calc_anchors", data, "-num_of_clusters", "1")
    assert without.exit_code == 1 and "add -ab" in without.stderr
