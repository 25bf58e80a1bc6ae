"""The top-level Python API: `pydarknet.detect` is the function, and its objects are Darknet's report."""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import numpy as np
import pytest

import pydarknet
from pydarknet.data.files import read_names
from reference import mini_network, read_json

REPO = Path(__file__).resolve().parent.parent


def test_detect_is_the_function_after_every_module_is_imported():
    for module in pkgutil.walk_packages(pydarknet.__path__, "pydarknet."):
        if not module.name.endswith("__main__"):      # running those starts the CLI
            importlib.import_module(module.name)
    from pydarknet import detect
    assert callable(detect) and detect.__module__ == "pydarknet.predict"
    assert callable(pydarknet.detect)


def test_return_types_are_exported():
    from pydarknet import DetectedObject, Detection, Prediction
    assert {"DetectedObject", "Detection", "Prediction", "detect", "detect_boxes"} <= set(pydarknet.__all__)
    assert DetectedObject.__name__ == "DetectedObject" and Detection and Prediction


# what README's "Python API" lists as `import pydarknet` offering
PUBLIC_FUNCTIONS = ("load_network", "load_inference_network", "read_cfg", "load_weights", "save_weights", "train_step",
                    "DarknetSGD", "detect", "classify")


@pytest.mark.parametrize("name", pydarknet.__all__)
def test_every_exported_name_resolves(name):
    value = getattr(pydarknet, name)
    assert value is not None and getattr(value, "__name__", name) == name


def test_the_readme_api_names_are_exported():
    assert set(PUBLIC_FUNCTIONS) <= set(pydarknet.__all__)
    readme = (REPO / "README.md").read_text()
    assert all(f"`{name}(" in readme for name in PUBLIC_FUNCTIONS)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'pydarknet' has no attribute 'no_such_name'"):
        pydarknet.no_such_name


@pytest.fixture(scope="module")
def dog(reference) -> np.ndarray:
    """Darknet's own decode of dog.jpg (OpenCV's JPEG decoder differs by a few levels)."""
    return np.load(reference / "inputs" / "dog_decoded_uint8_hwc.npy")


@pytest.mark.parametrize("thresh", ["0.10", "0.25", "0.50"])
def test_detect_returns_the_objects_darknet_prints(reference, dog, thresh):
    expected = read_json(reference / "forward" / "mini-yolov2-voc" / "dog" / f"dets_t{thresh}.json")
    names = read_names(REPO / "data" / "voc.names")
    objects = pydarknet.detect(mini_network(reference, "mini-yolov2-voc"), dog, float(thresh), names=names)
    assert [obj.line() for obj in objects] == expected["printed"]
    # one object per (box, class) above thresh, boxes in Darknet's array order, classes by index
    pairs = [(det, int(k)) for det in expected["detections"] for k in sorted(det["probs"], key=int)]
    assert len(objects) == len(pairs)
    height, width = dog.shape[:2]
    for obj, (det, k) in zip(objects, pairs):
        assert (obj.class_id, obj.name) == (k, names[k])
        assert obj.prob == pytest.approx(det["probs"][str(k)], abs=1e-4)
        np.testing.assert_allclose(obj.box_rel, det["bbox"], atol=1e-4, rtol=1e-4)
        x, y, w, h = obj.box_rel
        # image.c:draw_detections: truncation toward zero, then the outer sides clamped
        assert obj.box_px == (max(int((x - w / 2) * width), 0), max(int((y - h / 2) * height), 0),
                              min(int((x + w / 2) * width), width - 1), min(int((y + h / 2) * height), height - 1))


def test_detect_without_names_names_classes_by_index(reference, dog):
    objects = pydarknet.detect(mini_network(reference, "mini-yolov2-voc"), dog, 0.5)
    assert objects and all(obj.name == str(obj.class_id) for obj in objects)
