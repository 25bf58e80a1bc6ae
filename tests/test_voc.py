"""`data voc`: the labels and lists of Darknet's voc_label.py, then training and mAP on them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tiny_detector import train_briefly, write_tiny_cfg
from voc_devkit import annotation_xml, make_devkit

from pydarknet import load_network
from pydarknet.data.files import read_data_file, read_list, read_names
from pydarknet.data.voc import VocObject, convert_voc, voc_label_line
from pydarknet.errors import DataError, MissingFileError
from pydarknet.evaluate import collect_map_inputs, compute_map

RECORDED = Path(__file__).parent / "fixtures" / "voc" / "voc_label_output.json"
# DARKNET(scripts/voc_label.py): its class list, in order
VOC_LABEL_CLASSES = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                     "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
                     "train", "tvmonitor"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    devkit = make_devkit(root)
    return devkit, root / "out", convert_voc(devkit, root / "out")


def test_labels_are_voc_label_pys_bytes(converted):
    devkit, _, result = converted
    recorded = json.loads(RECORDED.read_text())["labels"]
    written = {str(path.relative_to(devkit)): path.read_text() for path in sorted(devkit.glob("*/labels/*.txt"))}
    assert written == recorded
    assert result.label_files == len(recorded)
    assert result.objects == sum(text.count("\n") for text in recorded.values())


def test_lists_are_voc_label_pys_and_the_instructions_concatenations(converted):
    devkit, out, result = converted
    recorded = json.loads(RECORDED.read_text())["lists"]
    for name, text in recorded.items():
        assert (out / name).read_text() == text.replace("{devkit}", str(devkit)), name
    assert {path.name for path in result.lists} == set(recorded)
    train = (out / "train.txt").read_text().split()
    # cat 2007_train.txt 2007_val.txt 2012_*.txt > train.txt; train.all.txt adds 2007_test after 2007_val
    assert [Path(path).stem for path in train] == ["000001", "000002", "000003", "2008_000008", "2008_000015",
                                                   "2008_000019"]
    assert (out / "train.all.txt").read_text().split() == train[:3] + (out / "2007_test.txt").read_text().split() \
        + train[3:]


def test_centre_shift_and_reciprocal_scaling_by_hand():
    # dog of 000001: x 10..80, y 20..110 in a 160x120 image
    assert voc_label_line(VocObject(11, False, (10.0, 80.0, 20.0, 110.0)), 160, 120) == \
        f"11 {44 / 160} {(65 - 1) * (1 / 120)} {70 / 160} {90 * (1 / 120)}\n"
    # 0.1 * 3 is not 0.3: the script multiplies by 1/size, it does not divide
    line = voc_label_line(VocObject(0, False, (1.0, 4.0, 1.0, 4.0)), 10, 10)
    assert line == "0 0.15000000000000002 0.15000000000000002 0.30000000000000004 0.30000000000000004\n"


def test_difficult_objects_go_to_the_difficult_file_and_count_in_map(converted):
    devkit, out, _ = converted
    labels = devkit / "VOC2007" / "labels"
    assert (labels / "000001.difficult").read_text() == "8 0.775 0.7333333333333333 0.3125 0.48333333333333334\n"
    assert (labels / "000003.txt").read_text() == ""
    assert len((labels / "000003.difficult").read_text().splitlines()) == 2
    assert [line.split()[0] for line in (labels / "000002.difficult").read_text().splitlines()] == ["1"]  # bicycle
    assert not (labels / "000005.difficult").exists()
    assert not (labels / "000004.difficult").exists()   # its difficult object is of an unknown class


def test_data_file_and_names(converted):
    _, out, result = converted
    data = read_data_file(result.data_file)
    assert result.data_file == out / "voc.data"
    assert data.classes == 20
    assert data.get_path("train") == out / "train.txt"
    assert data.get_path("valid") == out / "2007_test.txt"
    assert read_names(data.get_path("names")) == VOC_LABEL_CLASSES
    assert data.get_str("backup") == str(out / "backup")
    assert any("difficult" in note for note in result.notes)
    assert any("not in voc.names" in note for note in result.notes)


def test_absent_sets_are_skipped_with_a_note(tmp_path):
    devkit = make_devkit(tmp_path)
    shutil.rmtree(devkit / "VOC2012")
    (devkit / "VOC2007" / "ImageSets" / "Main" / "test.txt").unlink()
    result = convert_voc(devkit, tmp_path / "out")
    assert sorted(path.name for path in result.lists) == ["2007_train.txt", "2007_val.txt", "train.all.txt",
                                                          "train.txt"]
    assert len([note for note in result.notes if "not written" in note]) == 3 + 1   # 3 sets, then valid=
    assert (tmp_path / "out" / "train.all.txt").read_text() == (tmp_path / "out" / "train.txt").read_text()


def test_no_image_set_at_all_is_an_error(tmp_path):
    (tmp_path / "VOCdevkit").mkdir()
    with pytest.raises(DataError, match="no VOC image set found"):
        convert_voc(tmp_path / "VOCdevkit", tmp_path / "out")


@pytest.mark.parametrize("xml, message", [
    ("<annotation><size><width>10</width>", r"000001\.xml: malformed XML: no element found: line 1"),
    ("<annotation><size><width>10</width></size></annotation>", r"000001\.xml: has no <size/height> value"),
    ("<annotation><size><width>ten</width><height>5</height></size></annotation>",
     r"000001\.xml: <size/width> is not an integer: 'ten'"),
    ("<annotation><size><width>10</width><height>5</height></size>"
     "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin></bndbox></object></annotation>",
     r"000001\.xml: object 1 has no <bndbox/xmax> value"),
])
def test_malformed_annotation_names_the_file(tmp_path, xml, message):
    devkit = make_devkit(tmp_path)
    (devkit / "VOC2007" / "Annotations" / "000001.xml").write_text(xml)
    with pytest.raises(DataError, match=message):
        convert_voc(devkit, tmp_path / "out")


def test_missing_annotation_names_the_file(tmp_path):
    devkit = make_devkit(tmp_path)
    (devkit / "VOC2012" / "Annotations" / "2008_000019.xml").unlink()
    with pytest.raises(MissingFileError, match="2008_000019.xml"):
        convert_voc(devkit, tmp_path / "out")


def test_object_without_difficult_is_not_difficult(tmp_path):
    devkit = make_devkit(tmp_path)
    xml = annotation_xml("000001", 100, 50, [("dog", "0", ("1", "1", "51", "26"), ())])
    (devkit / "VOC2007" / "Annotations" / "000001.xml").write_text(xml.replace("<difficult>0</difficult>", ""))
    convert_voc(devkit, tmp_path / "out")
    assert (devkit / "VOC2007" / "labels" / "000001.txt").read_text() == "11 0.25 0.25 0.5 0.5\n"


def test_devkit_under_a_folder_darknet_rewrites_is_refused(tmp_path):
    # Darknet would rewrite .../raw/... to .../labels/... before JPEGImages: the labels would not be found
    devkit = make_devkit(tmp_path / "raw")
    with pytest.raises(DataError, match="label path rule"):
        convert_voc(devkit, tmp_path / "out")


def test_train_and_map_on_the_converted_set(converted, tmp_path):
    _, out, result = converted
    cfg = write_tiny_cfg(tmp_path / "voc-tiny.cfg", classes=20)
    trained = train_briefly(result.data_file, cfg)
    assert trained.final_weights == out / "backup" / "voc-tiny_final.weights"
    net = load_network(cfg, trained.final_weights, "cpu")
    inputs = collect_map_inputs(net, read_list(out / "train.txt")[:3], workers=0)
    assert [truth.classes.tolist() for truth in inputs.ground_truths] == [[11, 14, 8], [6, 7, 1], [4, 19]]
    assert [truth.difficult.tolist() for truth in inputs.ground_truths] == \
        [[False, False, True], [False, False, True], [True, True]]
    evaluation = compute_map(net, result.data_file, workers=0)
    assert evaluation.num_positives.sum() == 2   # the horse and the person of 000004
    assert 0.0 <= evaluation.mean_ap <= 1.0
