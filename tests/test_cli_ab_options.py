"""AlexeyAB's `detector test` options (-out X.json, -save_labels, -benchmark, -prefix), `-out DIR/`, -i / -gpus on a
machine without CUDA, and warnings as one `Warning:` line each.

tests/fixtures/ab_test_out/README.md says how AlexeyAB's own files were recorded.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import FIXTURES
from pydarknet.cli import detector as cli_detector
from pydarknet.cli import main
from pydarknet.cli.common import configure_logging, install_warning_lines, skipped_line
from pydarknet.data.dataset import BadSampleWarning

REPO = Path(__file__).resolve().parent.parent
RECORDED = FIXTURES / "ab_test_out"
NET = "mini-yolov2-voc"
# The CPU build's float32 sums run in another order: its probabilities differ by up to 1.2e-5, its box sizes
# (exponentials of those sums) by up to 6e-5 relative, on this random-weights net
PROB_TOLERANCE, BOX_TOLERANCE = 5e-5, 2e-4


@pytest.fixture
def photos(reference, tmp_path, monkeypatch) -> list[str]:
    """dog.jpg and person.jpg and a voc.data in an otherwise empty working directory, as the recording had."""
    monkeypatch.chdir(tmp_path)
    for name in ("dog", "person"):
        shutil.copyfile(REPO / "data" / f"{name}.jpg", tmp_path / f"{name}.jpg")
    (tmp_path / "voc.data").write_text(f"classes=20\nnames={REPO / 'data' / 'voc.names'}\n")
    return ["dog.jpg", "person.jpg"]


def _test(reference, *options, input=None):
    mini = reference / "mini"
    result = CliRunner().invoke(main, [str(a) for a in ["-q", "detector", "test", "voc.data", mini / f"{NET}.cfg",
                                                        mini / f"{NET}.weights", *options]], input=input)
    assert result.exit_code == 0, result.output
    return result


def _assert_same_objects(ours: list[dict], theirs: list[dict]) -> None:
    assert [(o["class_id"], o["name"]) for o in ours] == [(o["class_id"], o["name"]) for o in theirs]
    for mine, its in zip(ours, theirs):
        for key, value in its["relative_coordinates"].items():
            assert mine["relative_coordinates"][key] == pytest.approx(value, rel=BOX_TOLERANCE, abs=2e-6)
        assert mine["confidence"] == pytest.approx(its["confidence"], abs=PROB_TOLERANCE)


def test_ab_out_is_alexeyabs_json_and_save_labels_its_label_files(reference, photos, tmp_path):
    _test(reference, "-ab", "-dont_show", "-thresh", ".2", "-out", "ab.json", "-save_labels",
          input="".join(f"{photo}\n" for photo in photos))
    ours, theirs = (json.loads(path.read_text()) for path in (tmp_path / "ab.json", RECORDED / "ab.json"))
    assert [(image["frame_id"], image["filename"]) for image in ours] == [(1, "dog.jpg"), (2, "person.jpg")]
    for mine, its in zip(ours, theirs, strict=True):
        _assert_same_objects(mine["objects"], its["objects"])
    # the same layout, byte for byte, where the numbers agree: the text around the objects
    assert (tmp_path / "ab.json").read_text()[:40] == (RECORDED / "ab.json").read_text()[:40]
    for name in ("dog", "person"):
        mine, its = (np.loadtxt(folder / f"{name}.txt", ndmin=2) for folder in (tmp_path, RECORDED))
        assert mine.shape == its.shape and (mine[:, 0] == its[:, 0]).all()
        assert np.allclose(mine[:, 1:], its[:, 1:], rtol=BOX_TOLERANCE, atol=1.01e-4)   # %2.4f's last digit
    # DARKNET(AlexeyAB detector.c:test_detector): the drawn image is not named after -out
    assert {p.name for p in tmp_path.glob("*.jpg")} == {"dog.jpg", "person.jpg", "predictions_dog.jpg",
                                                         "predictions_person.jpg"}


def test_out_json_without_ab_writes_alexeyabs_json_of_the_printed_objects(reference, photos, tmp_path):
    result = _test(reference, "dog.jpg", "-thresh", ".2", "-out", "r.json", "--json", "ours.json")
    written = json.loads((tmp_path / "r.json").read_text())
    assert len(written) == 1 and (written[0]["frame_id"], written[0]["filename"]) == (1, "dog.jpg")
    printed = [line for line in result.stdout.splitlines() if "Predicted in" not in line and line]
    assert len(written[0]["objects"]) == len(printed) > 0
    probs = [(int(k), p) for record in json.loads((tmp_path / "ours.json").read_text())["detections"]
             for k, p in record["probs"].items()]
    assert [(o["class_id"], o["confidence"]) for o in written[0]["objects"]] == \
        [(k, pytest.approx(p, abs=1e-6)) for k, p in probs]
    assert (tmp_path / "predictions.jpg").is_file() and not list(tmp_path.glob("r.json*.jpg"))


def test_out_folder_with_one_image_names_the_image_after_the_photo(reference, photos, tmp_path):
    _test(reference, "dog.jpg", "-out", "outdir/")
    assert [p.name for p in (tmp_path / "outdir").iterdir()] == ["dog.jpg"]


def test_benchmark_prefix_and_dont_show_change_nothing(reference, photos, tmp_path):
    plain = _test(reference, "dog.jpg", "-ab", "-out", "a/").stdout
    accepted = _test(reference, "dog.jpg", "-ab", "-out", "b/", "-benchmark", "-prefix", "x", "-dont_show").stdout
    assert [line for line in accepted.splitlines() if "Predicted" not in line] == \
        [line for line in plain.splitlines() if "Predicted" not in line]


@pytest.mark.parametrize("options", [["-i", "0"], ["-gpus", "1"]])
def test_gpu_options_on_a_machine_without_cuda_warn_once_and_use_the_cpu(monkeypatch, options):
    chosen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(cli_detector, "_run_detection", lambda *args: chosen.setdefault("device", args[7]))
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(REPO / "cfg" / "yolov2-voc.cfg"), __file__, *options])
    assert result.exit_code == 0, result.output
    assert chosen["device"] == "cpu"
    assert result.stderr.splitlines() == [f"Warning: {' '.join(options)}: no CUDA GPU on this machine; running on "
                                          f"the CPU, as a CPU build of Darknet"]


def test_warnings_are_one_line_and_bad_samples_are_counted_once(capsys):
    reasons = ["a.txt: no such label file", "b.txt: no such label file", "c.txt: no such label file",
               "Cannot load image 'd.jpg': truncated JPEG (no end-of-image marker)",
               "Cannot load image 'e.jpg': empty file (0 bytes)"]
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging(quiet=False, verbose=False)
        install_warning_lines()   # what the program does (the `pydarknet` script, python -m pydarknet)
        warnings.warn("net.cfg:3: Unused field 'foo'", UserWarning, stacklevel=1)
        for path, reason in zip("abcde", reasons):
            warnings.warn(f"skipping sample {path}.jpg: {reason}", BadSampleWarning, stacklevel=1)
        summary = skipped_line()
    assert capsys.readouterr().err.splitlines() == [
        "Warning: net.cfg:3: Unused field 'foo'",
        "Warning: skipping sample a.jpg: a.txt: no such label file (further samples like it are counted at the end)",
        "Warning: skipping sample d.jpg: Cannot load image 'd.jpg': truncated JPEG (no end-of-image marker) "
        "(further samples like it are counted at the end)"]
    assert summary == "5 bad samples skipped: 3 label not found, 2 unreadable image"
    assert skipped_line() is None   # counted once, at the end of the pass


def test_the_program_prints_a_warning_as_one_line_without_python_source(tmp_path):
    folder = tmp_path / "obj"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.jpg").write_bytes(b"\xff\xd8")
        (folder / f"{i}.txt").write_text(f"0 0.5 0.5 0.{i + 1} 0.2\n")
    (tmp_path / "train.txt").write_text(f"{folder / '0.jpg'}\n{folder / '1.jpg'}\n")
    (tmp_path / "x.data").write_text("classes=1\ntrain=train.txt\ncolour=blue\n")
    done = subprocess.run([sys.executable, "-m", "pydarknet", "-q", "detector", "calc_anchors", "x.data",
                           "-num_of_clusters", "1", "-ab"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "Warning: x.data:3: unknown key 'colour' is ignored\n"


# ---------------------------------------------------------------------------- classifier label / valid


def test_classifier_label_without_a_test_list_names_the_missing_key_before_the_weights(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "two.names").write_text("a\nb\n")
    (tmp_path / "c.data").write_text("classes=2\nnames=two.names\n")
    (tmp_path / "c.cfg").write_text("[net]\nwidth=8\nheight=8\nchannels=3\n\n[avgpool]\n\n[softmax]\n")
    (tmp_path / "never.weights").write_bytes(b"xx")   # loading it would be a weights error
    result = CliRunner().invoke(main, ["classifier", "label", "c.data", "c.cfg", "never.weights"])
    assert result.exit_code == 1
    assert result.stderr == ("Error: c.data: no test= list of images, and Darknet's default data/train.list is not "
                             "there: add test=<a file listing the images>\n")


def test_imagenet_labels_list_is_shipped_beside_its_short_names():
    from pydarknet._resources import shipped_or_given
    from pydarknet.data.files import read_names

    labels = read_names(shipped_or_given("data/imagenet.labels.list"))
    names = read_names(shipped_or_given("data/imagenet.shortnames.list"))
    # DARKNET(data/imagenet.labels.list): the WordNet ids of cfg/imagenet1k.data's classes, in its order
    assert len(labels) == len(names) == 21842 and labels[:2] == ["n02119789", "n02100735"]
    assert names[:2] == ["kit fox", "English setter"]
