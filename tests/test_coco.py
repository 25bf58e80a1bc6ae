"""`data coco`: instances json -> Darknet labels; train, `detector valid`, and pycocotools scoring."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_detector import train_briefly, write_tiny_cfg

from pydarknet.data.coco import convert_coco, read_image_ids
from pydarknet.data.files import read_data_file, read_list, read_names
from pydarknet.data.labels import read_labels
from pydarknet.data.synth import make_synth
from pydarknet.errors import DataError, MissingFileError
from pydarknet.network import load_network
from pydarknet.data.coco import COCO_IDS, coco_image_id
from pydarknet.detections import Detection
from pydarknet.evaluate import ImageDetections, ValidSetup, coco_lines, validate_detector

# the synthetic set's 5 classes as COCO categories with gaps: class index = position in Darknet's coco_ids
SYNTH_CATEGORIES = {0: (1, 0), 1: (13, 11), 2: (27, 24), 3: (46, 40), 4: (90, 79)}   # synth: (COCO id, class)
IMAGE_IDS = [42, 73, 139, 285, 632, 724]


def make_coco(root: Path, file_name=lambda image_id: f"COCO_val2014_{image_id:012d}.jpg") -> tuple[Path, Path]:
    """A COCO-style copy of a small synthetic set: (instances json, images folder).

    One crowd box per image, unused categories among the used ones, and a last image without any object.
    """
    synth = make_synth(root / "synth", train=len(IMAGE_IDS) - 1, valid=1, size=64, seed=5).parent
    images_dir = root / "coco" / "images" / "val2014"
    images_dir.mkdir(parents=True)
    sources = sorted((synth / "images").glob("train_*.jpg")) + sorted((synth / "images").glob("valid_*.jpg"))
    images, annotations = [], []
    for image_id, source in zip(IMAGE_IDS, sources):
        name = file_name(image_id)
        shutil.copyfile(source, images_dir / name)
        height, width = _size(source)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        if image_id == IMAGE_IDS[-1]:
            continue   # an image without objects
        truths = read_labels(synth / "labels" / f"{source.stem}.txt", 5)
        for x, y, w, h, synth_class in truths.astype(float):
            bbox = [(x - w / 2) * width, (y - h / 2) * height, w * width, h * height]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 0, "area": bbox[2] * bbox[3],
                                "category_id": SYNTH_CATEGORIES[int(synth_class)][0], "bbox": bbox})
        annotations.append({"id": len(annotations) + 1, "image_id": image_id, "iscrowd": 1, "area": 100.0,
                            "category_id": 1, "bbox": [0, 0, 10, 10], "segmentation": {"counts": [], "size": [1, 1]}})
    categories = [{"id": category, "name": f"c{category}", "supercategory": "thing"} for category in (1, 2, 13, 27, 46, 90)]
    instances = root / "annotations" / "instances_val2014.json"
    instances.parent.mkdir()
    instances.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return instances, images_dir


def _size(path: Path) -> tuple[int, int]:
    import cv2
    return cv2.imread(str(path)).shape[:2]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    instances, images_dir = make_coco(root)
    return root, instances, images_dir, convert_coco(instances, images_dir, root / "out")


def test_labels_are_where_darknet_looks_with_contiguous_classes(converted):
    root, instances, images_dir, result = converted
    synth = root / "synth"
    labels_dir = root / "coco" / "labels" / "val2014"
    for image_id, synth_name in zip(IMAGE_IDS, ["train_00000", "train_00001", "train_00002", "train_00003",
                                                 "train_00004"]):
        written = read_labels(labels_dir / f"COCO_val2014_{image_id:012d}.txt", 80)
        expected = read_labels(synth / "labels" / f"{synth_name}.txt", 5)
        expected[:, 4] = [SYNTH_CATEGORIES[int(c)][1] for c in expected[:, 4]]
        np.testing.assert_allclose(written, expected, atol=2e-6)   # crowd boxes are not there
    assert (labels_dir / f"COCO_val2014_{IMAGE_IDS[-1]:012d}.txt").read_text() == ""
    assert result.label_files == len(IMAGE_IDS)
    assert result.objects == sum(1 for a in json.loads(instances.read_text())["annotations"] if not a["iscrowd"])
    assert result.notes == (f"{len(IMAGE_IDS) - 1} crowd annotation(s) skipped",)
    assert result.image_ids is None


def test_box_conversion_by_hand(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "COCO_val2014_000000000007.jpg").write_bytes(b"")
    instances = tmp_path / "instances_tiny.json"
    instances.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "width": 100, "height": 200}],
        "annotations": [{"image_id": 7, "category_id": 90, "iscrowd": 0, "bbox": [10, 20, 30, 40]},
                        {"image_id": 7, "category_id": 13, "bbox": [0, 0, 100, 200]},
                        {"image_id": 7, "category_id": 13, "bbox": [5, 5, 0, 10]}],
        "categories": [{"id": 13}, {"id": 90}]}))
    result = convert_coco(instances, images, tmp_path / "out")
    assert (tmp_path / "labels" / "COCO_val2014_000000000007.txt").read_text() == \
        "79 0.250000 0.200000 0.300000 0.200000\n11 0.500000 0.500000 1.000000 1.000000\n"
    assert result.lists == (tmp_path / "out" / "tiny.txt",)
    assert result.notes == ("1 zero-size annotation(s) skipped",)


def test_list_names_and_data_file(converted):
    root, _, images_dir, result = converted
    out = root / "out"
    assert read_list(out / "val2014.txt") == [str(images_dir / f"COCO_val2014_{i:012d}.jpg") for i in IMAGE_IDS]
    data = read_data_file(result.data_file)
    assert (data.classes, data.get_str("eval")) == (80, "coco")
    assert data.get_path("train") == data.get_path("valid") == out / "val2014.txt"
    names = read_names(data.get_path("names"))
    assert (len(names), names[0], names[11], names[79]) == (80, "person", "stop sign", "toothbrush")


def test_train_valid_and_pycocotools_score_the_results(converted, tmp_path):
    pytest.importorskip("pycocotools", reason="pip install pycocotools (setup.py extra 'coco')")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    _, instances, _, result = converted
    cfg = write_tiny_cfg(tmp_path / "coco-tiny.cfg", classes=80)
    net = load_network(cfg, train_briefly(result.data_file, cfg).final_weights, "cpu")
    [results] = validate_detector(net, ValidSetup.from_data(result.data_file), workers=0)
    assert results == result.data_file.parent / "results" / "coco_results.json"
    detections = json.loads(results.read_text())
    assert detections, "the briefly trained net should give some box above valid's .005 threshold"
    assert {d["image_id"] for d in detections} <= set(IMAGE_IDS)
    assert {d["category_id"] for d in detections} <= set(COCO_IDS)
    truth = COCO(str(instances))
    evaluation = COCOeval(truth, truth.loadRes(str(results)), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    assert len(evaluation.stats) == 12 and all(-1 <= s <= 1 for s in evaluation.stats)


def test_2017_names_under_an_underscored_folder_get_an_image_id_map(tmp_path):
    instances, images_dir = make_coco(tmp_path / "with_underscore", file_name=lambda image_id: f"{image_id:012d}.jpg")
    result = convert_coco(instances, images_dir, tmp_path / "out")
    paths = read_list(result.lists[0])
    assert coco_image_id(paths[0]) != IMAGE_IDS[0]   # Darknet reads the number after the folder's '_'
    assert result.image_ids == tmp_path / "out" / "val2014.image_ids.json"
    assert read_image_ids(result.image_ids) == dict(zip(paths, IMAGE_IDS))
    assert read_data_file(result.data_file).get_path("image_ids") == result.image_ids
    assert any("image_ids=" in note for note in result.notes)
    # `detector valid` writes the mapped ids, not the number after the folder's '_'
    setup = ValidSetup.from_data(result.data_file)
    assert setup.image_ids == dict(zip(paths, IMAGE_IDS))
    image = ImageDetections(index=0, path=paths[0], width=100, height=80,
                            detections=[Detection(np.array([0.5, 0.5, 0.2, 0.2], np.float32),
                                                  0.9, np.eye(80, dtype=np.float32)[3])])
    assert [json.loads(line)["image_id"] for line in coco_lines(image, setup.image_ids)] == [IMAGE_IDS[0]]


@pytest.mark.parametrize("change, message", [
    (lambda doc: doc["annotations"][0].update(category_id=12), r"annotations\[0\]: category_id 12 is not among"),
    (lambda doc: doc["categories"].append({"id": 91}), r"category id\(s\) \[91\]"),
    (lambda doc: doc["annotations"][1].update(bbox=[1, 2, 3]), r"annotations\[1\]: 'bbox' must be four numbers"),
    (lambda doc: doc["annotations"][0].update(image_id=5), r"annotations\[0\]: image_id 5 is not in 'images'"),
    (lambda doc: doc["images"][2].pop("width"), r"images\[2\]: 'width' must be of type int, got None"),
    (lambda doc: doc.pop("annotations"), r"'annotations' must be a list of objects"),
])
def test_malformed_json_names_the_file_and_entry(converted, tmp_path, change, message):
    _, instances, images_dir, _ = converted
    document = json.loads(instances.read_text())
    change(document)
    broken = tmp_path / "instances_broken.json"
    broken.write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"instances_broken\.json: " + message):
        convert_coco(broken, images_dir, tmp_path / "out")


def test_not_json_and_a_wrong_folder(converted, tmp_path):
    _, instances, images_dir, _ = converted
    broken = tmp_path / "instances_bad.json"
    broken.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"instances_bad\.json:2:12: not JSON"):
        convert_coco(broken, images_dir, tmp_path / "out")
    with pytest.raises(MissingFileError, match="none of the 6 images"):
        convert_coco(instances, tmp_path / "images", tmp_path / "out")
