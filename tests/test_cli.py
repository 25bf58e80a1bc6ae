"""The Darknet-shaped CLI against Darknet's own printed output.

Inputs: lossless PNGs of the pack's decodes, and the pack's JPEGs themselves (decoded by the
stb_image-exact decoder; OpenCV's decode of them changes the printed lines of every case below).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from conftest import FIXTURES
from pydarknet.cli import classifier as cli_classifier
from pydarknet.cli import detector as cli_detector
from pydarknet.cli import main
from pydarknet.cli.detector import AnnotatedNames
from pydarknet.network import load_network
from pydarknet.weights import save_weights
from reference import decompressed_weights, read_json

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def pngs(reference, tmp_path_factory) -> dict[str, Path]:
    """Darknet's stb_image decode of each image, saved losslessly (OpenCV's JPEG decoder differs)."""
    folder = tmp_path_factory.mktemp("png")
    paths = {}
    for image in ("dog", "horses", "person", "eagle"):
        decoded = np.load(reference / "inputs" / f"{image}_decoded_uint8_hwc.npy")
        paths[image] = folder / f"{image}.png"
        cv2.imwrite(str(paths[image]), decoded[:, :, ::-1])
    return paths


@pytest.fixture(scope="module")
def jpegs(reference) -> dict[str, Path]:
    return {image: reference / "darknet" / "data" / f"{image}.jpg" for image in ("dog", "horses", "person", "eagle")}


def _invoke(args: list[str], cwd: Path):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def _printed_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "Predicted in" not in line]


@pytest.mark.parametrize("thresh", ["0.10", "0.25", "0.50"])
@pytest.mark.parametrize("image", ["dog", "horses", "person"])
def test_detector_test_prints_darknet_lines(reference, pngs, tmp_path, image, thresh):
    net = "mini-yolov2-voc"
    expected = read_json(reference / "forward" / net / image / f"dets_t{thresh}.json")
    result = _invoke(["detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
                      reference / "mini" / f"{net}.weights", pngs[image], "-thresh", thresh,
                      "-out", tmp_path / "pred", "--json", tmp_path / "dets.json"], tmp_path)
    assert result.exit_code == 0
    assert _printed_lines(result.stdout) == expected["printed"]
    assert cv2.imread(str(tmp_path / "pred.jpg")).shape == (expected["image_h"], expected["image_w"], 3)
    written = json.loads((tmp_path / "dets.json").read_text())["detections"]
    assert len(written) == len(expected["detections"])
    for ours, theirs in zip(sorted(written, key=lambda d: d["bbox"]), sorted(expected["detections"],
                                                                             key=lambda d: d["bbox"])):
        # abs 1e-4 (README §9) plus rel 1e-4: w, h = exp(raw)*anchor carry the raw output's relative error
        np.testing.assert_allclose(ours["bbox"], theirs["bbox"], atol=1e-4, rtol=1e-4)
        assert ours["best_name"] == theirs["best_name"]


@pytest.mark.parametrize("net, data", [("yolov2-voc", "voc.data"), ("yolov2-tiny-voc", "voc.data"),
                                       ("yolo9000", "combine9k.data")])
def test_full_size_cli_output_is_darknets(reference, pngs, tmp_path, net, data):
    weights = decompressed_weights(reference, net, tmp_path)
    result = _invoke(["detector", "test", REPO / "cfg" / data, REPO / "cfg" / f"{net}.cfg", weights, pngs["dog"],
                      "-thresh", ".25", "-out", tmp_path / "pred"], tmp_path)
    expected = (reference / "forward" / net / "dog" / "cli_stdout.txt").read_text().splitlines()[1:]
    assert _printed_lines(result.stdout) == expected


@pytest.mark.parametrize("thresh", ["0.10", "0.25"])
@pytest.mark.parametrize("image", ["dog", "horses", "person"])
def test_detector_test_on_the_jpegs_prints_darknet_lines(reference, jpegs, tmp_path, image, thresh):
    net = "mini-yolov2-voc"
    result = _invoke(["detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
                      reference / "mini" / f"{net}.weights", jpegs[image], "-thresh", thresh,
                      "-out", tmp_path / "pred"], tmp_path)
    assert result.exit_code == 0
    assert _printed_lines(result.stdout) == read_json(reference / "forward" / net / image / f"dets_t{thresh}.json")["printed"]


@pytest.mark.slow
@pytest.mark.parametrize("net, data", [("yolov2-voc", "voc.data"), ("yolov2-tiny-voc", "voc.data"),
                                       ("yolo9000", "combine9k.data")])
def test_full_size_cli_output_on_the_jpegs_is_darknets(reference, jpegs, tmp_path, net, data):
    weights = decompressed_weights(reference, net, tmp_path)
    for image in ("dog", "horses", "person"):
        result = _invoke(["detector", "test", REPO / "cfg" / data, REPO / "cfg" / f"{net}.cfg", weights, jpegs[image],
                          "-thresh", ".25", "-out", tmp_path / "pred"], tmp_path)
        expected = (reference / "forward" / net / image / "cli_stdout.txt").read_text().splitlines()[1:]
        assert _printed_lines(result.stdout) == expected, image


def test_classifier_predict_on_the_jpegs_prints_darknet_top5(reference, jpegs, tmp_path):
    net = "mini-darknet19"
    for image in ("dog", "eagle"):
        result = _invoke(["classifier", "predict", REPO / "cfg" / "imagenet1k.data", reference / "mini" / f"{net}.cfg",
                          reference / "mini" / f"{net}.weights", jpegs[image]], tmp_path)
        expected = (reference / "forward" / net / image / "printed.txt").read_text().splitlines()
        assert _printed_lines(result.stdout) == expected, image


@pytest.mark.parametrize("net", ["mini-darknet19", "darknet19"])
def test_classifier_predict_prints_darknet_top5(reference, pngs, tmp_path, net):
    folder = "mini" if net.startswith("mini") else None
    weights = reference / "mini" / f"{net}.weights" if folder else decompressed_weights(reference, net, tmp_path)
    cfg = reference / "mini" / f"{net}.cfg" if folder else REPO / "cfg" / f"{net}.cfg"
    for image in ("dog", "eagle"):
        result = _invoke(["classifier", "predict", REPO / "cfg" / "imagenet1k.data", cfg, weights, pngs[image]],
                         tmp_path)
        expected = (reference / "forward" / net / image / "printed.txt").read_text().splitlines()
        assert _printed_lines(result.stdout) == expected


def test_partial_writes_darknet_prefix_with_seen_0(reference, tmp_path):
    result = _invoke(["partial", reference / "mini" / "mini-darknet19.cfg",
                      reference / "mini" / "mini-darknet19.weights", tmp_path / "c23.weights", "23"], tmp_path)
    assert result.exit_code == 0
    # the pack's conv.23 is save_weights_upto of the loaded net (seen 5000000064); `darknet partial` clears seen
    prefix = (reference / "mini" / "mini-darknet19.conv.23.weights").read_bytes()
    assert int.from_bytes(prefix[12:20], "little") == 5000000064
    assert (tmp_path / "c23.weights").read_bytes() == prefix[:12] + bytes(8) + prefix[20:]


def test_image_paths_from_stdin(reference, pngs, tmp_path):
    net = "mini-yolov2-tiny-voc"
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(reference / "mini" / f"{net}.cfg"), str(reference / "mini" / f"{net}.weights"),
                                       "-thresh", ".25", "-out", str(tmp_path / "p")],
                                input=f"{pngs['dog']}\n{pngs['horses']}\n")
    assert result.exit_code == 0
    assert result.output.count("Enter Image Path:") == 3
    expected = (read_json(reference / "forward" / net / "dog" / "dets_t0.25.json")["printed"]
                + read_json(reference / "forward" / net / "horses" / "dets_t0.25.json")["printed"])
    lines = [line.replace("Enter Image Path: ", "") for line in _printed_lines(result.stdout)]
    assert [line for line in lines if line.strip()] == expected
    # one annotated image per listed image, none written over another (Darknet reuses p.jpg)
    assert sorted(p.name for p in tmp_path.glob("p*.jpg")) == ["p_dog.jpg", "p_horses.jpg"]


def test_annotated_names_never_repeat(tmp_path):
    names = AnnotatedNames(str(tmp_path / "run"), one_image=False)
    assert [names.next(p).name for p in ("a/dog.png", "b/dog.jpg", "cat.jpg", "c/dog.png")] == \
        ["run_dog.jpg", "run_dog_2.jpg", "run_cat.jpg", "run_dog_3.jpg"]
    assert AnnotatedNames(str(tmp_path), one_image=False).next("x/dog.png") == tmp_path / "dog.jpg"
    assert AnnotatedNames(None, one_image=True).next("x/dog.png") == Path("predictions.jpg")


def test_layer_table_and_weights_line_on_stderr_and_q_hides_them(reference, pngs, tmp_path):
    net = "mini-yolov2-tiny-voc"
    args = ["detector", "test", str(REPO / "cfg" / "voc.data"), str(reference / "mini" / f"{net}.cfg"),
            str(reference / "mini" / f"{net}.weights"), str(pngs["dog"]), "-out", str(tmp_path / "p")]
    loud, quiet = CliRunner().invoke(main, args), CliRunner().invoke(main, ["-q", *args])
    assert loud.exit_code == quiet.exit_code == 0
    table = (FIXTURES / "layer_tables" / f"{net}.txt").read_text().splitlines()
    assert loud.stderr.splitlines()[:len(table) + 1] == \
        [*table, f"Loading weights from {reference / 'mini' / f'{net}.weights'}...Done!"]
    assert quiet.stderr == "" and _printed_lines(quiet.stdout) == _printed_lines(loud.stdout)


def test_detect_finds_the_shipped_files_from_any_directory(reference, tmp_path, monkeypatch):
    """`detect` reads cfg/coco.data and data/dog.jpg by name, as from a Darknet checkout."""
    net = "mini-yolov2-tiny-voc"
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["detect", str(reference / "mini" / f"{net}.cfg"),
                                       str(reference / "mini" / f"{net}.weights"), "data/dog.jpg", "-thresh", ".1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("data/dog.jpg: Predicted in ") and (tmp_path / "predictions.jpg").exists()


@pytest.mark.parametrize("options, device", [([], None), (["-nogpu"], "cpu"), (["-i", "1"], "cuda:1"),
                                             (["-gpus", "2"], "cuda:2"), (["--device", "cpu"], "cpu")])
def test_darknet_device_options(monkeypatch, options, device):
    chosen = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)   # -i N and -gpus N name a GPU there is
    monkeypatch.setattr(cli_detector, "_run_detection", lambda *args: chosen.setdefault("device", args[7]))
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(REPO / "cfg" / "yolov2-voc.cfg"), __file__, *options])
    assert result.exit_code == 0, result.output
    assert chosen["device"] == device


@pytest.mark.parametrize("options, message", [(["-gpus", "0,1"], "several GPUs"), (["-i", "0", "-nogpu"], "give one")])
def test_contradicting_device_options_are_usage_errors(options, message):
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(REPO / "cfg" / "yolov2-voc.cfg"), __file__, *options])
    assert result.exit_code == 2 and message in result.output


def _colour_classifier(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A classifier (identity 1x1 conv, avgpool, softmax) whose best class is the dominant colour channel."""
    cfg = tmp_path / "colour.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n\n[convolutional]\nfilters=3\nsize=1\n"
                   "activation=linear\n\n[avgpool]\n\n[softmax]\n")
    net = load_network(cfg, None, "cpu")
    with torch.no_grad():
        net.layers[0].op.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        net.layers[0].op.bias.zero_()
    weights = tmp_path / "colour.weights"
    save_weights(net, weights)
    (tmp_path / "colour.names").write_text("red\ngreen\nblue\n")
    return cfg, weights, tmp_path / "colour.names"


def test_classifier_label_prints_the_centre_crops_label(tmp_path):
    cfg, weights, names = _colour_classifier(tmp_path)
    # 16 x 48 images: red middle third, the rest blue (or green); only the centre 16 x 16 crop is red
    paths = []
    for i, outer in enumerate(([0, 0, 255], [0, 255, 0])):
        image = np.full((16, 48, 3), outer, np.uint8)
        image[:, 16:32] = (255, 0, 0)
        paths.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(paths[-1]), image[:, :, ::-1])
    stretched = tmp_path / "2.png"   # a uniform green image is green whatever the crop
    cv2.imwrite(str(stretched), np.full((30, 20, 3), (0, 255, 0), np.uint8))
    (tmp_path / "test.list").write_text("".join(f"{p}\n" for p in [*paths, stretched]))
    data = tmp_path / "colour.data"
    data.write_text(f"classes=3\ntest={tmp_path / 'test.list'}\nnames={names}\n")
    result = CliRunner().invoke(main, ["-q", "classifier", "label", str(data), str(cfg), str(weights)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["red", "red", "green"]


def test_classify_is_predict_with_imagenet1k_data(monkeypatch, tmp_path):
    cfg, weights, _ = _colour_classifier(tmp_path)
    calls = []
    monkeypatch.setattr(cli_classifier, "_run_prediction", lambda *args: calls.append(args))
    result = CliRunner().invoke(main, ["classify", str(cfg), str(weights), "data/dog.jpg"])
    assert result.exit_code == 0, result.output
    (data, *_, top, device, _decoder, inference), = calls
    assert Path(data).resolve() == (REPO / "cfg" / "imagenet1k.data").resolve() and top == 5 and device is None
    assert inference == {"precision": "fp32", "backend": "torch", "darknet_build": "gpu", "calibration": None}


def test_missing_image_is_a_clear_error(reference, tmp_path):
    net = "mini-yolov2-tiny-voc"
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(reference / "mini" / f"{net}.cfg"), str(reference / "mini" / f"{net}.weights"),
                                       str(tmp_path / "nope.jpg")])
    # one line naming the file, exit code 1, no traceback (the CLI reports DarknetError / OSError itself)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1 and "nope.jpg" in error_lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("module", ["pydarknet", "pydarknet.cli"])
def test_every_way_of_starting_the_program_lists_every_command(module):
    """`python -m pydarknet.cli` is what the torchrun relaunch runs: it must see every verb."""
    result = subprocess.run([sys.executable, "-m", module, "detector", "--help"], capture_output=True, text=True,
                            cwd=REPO, check=True)
    listed = {line.split()[0] for line in result.stdout.split("Commands:")[1].splitlines() if line.strip()}
    assert {"test", "train", "valid", "recall", "map", "demo"} <= listed
    top = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    assert all(name in top for name in ("classifier", "data", "detect", "detector", "partial"))


def test_detect_is_the_api_function_before_and_after_importing_every_submodule():
    code = ("import importlib, pkgutil, pydarknet\n"
            "first = pydarknet.detect\n"
            "for module in pkgutil.walk_packages(pydarknet.__path__, 'pydarknet.'):\n"
            "    if not module.name.endswith('__main__'):\n"
            "        importlib.import_module(module.name)\n"
            "from pydarknet import detect\n"
            "assert callable(first) and detect is first and pydarknet.detect is first, pydarknet.detect\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_decoder_opencv_is_an_explicit_choice(reference, jpegs, tmp_path):
    """`--decoder opencv` (libjpeg) is there for speed; only the default stb decoder gives Darknet's lines."""
    net = "mini-yolov2-voc"
    args = ["detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
            reference / "mini" / f"{net}.weights", jpegs["dog"], "-thresh", "0.10", "-out", tmp_path / "pred"]
    expected = read_json(reference / "forward" / net / "dog" / "dets_t0.10.json")["printed"]
    assert _printed_lines(_invoke(args + ["--decoder", "stb"], tmp_path).stdout) == expected
    assert _printed_lines(_invoke(args + ["--decoder", "opencv"], tmp_path).stdout) != expected


@pytest.mark.parametrize("options", [["-backend", "onnxruntime"], ["-backend", "openvino"],
                                     ["--precision", "fp32", "--backend", "torch"]])
def test_fp32_inference_options_keep_darknets_lines(reference, jpegs, tmp_path, options):
    if options[1] != "fp32":
        pytest.importorskip(options[1])
    net = "mini-yolov2-voc"
    result = _invoke(["detector", "test", REPO / "cfg" / "voc.data", reference / "mini" / f"{net}.cfg",
                      reference / "mini" / f"{net}.weights", jpegs["horses"], "-thresh", "0.10",
                      "-out", tmp_path / "pred", *options], tmp_path)
    assert result.exit_code == 0, result.output
    assert _printed_lines(result.stdout) == read_json(reference / "forward" / net / "horses" / "dets_t0.10.json")["printed"]


def test_bf16_option_runs_the_bf16_inference_net(reference, jpegs, tmp_path):
    """`-precision bf16` prints what the bf16 `InferenceNetwork` of a one-image run finds (the random mini weights
    move some probabilities by up to 0.17 in bf16, so these are not Darknet's lines)."""
    from pydarknet import load_network
    from pydarknet.data.files import read_names
    from pydarknet.dialect import PJREDDIE
    from pydarknet.inference import InferenceNetwork
    from pydarknet.predict import detect_boxes

    net = "mini-yolov2-voc"
    cfg, weights = reference / "mini" / f"{net}.cfg", reference / "mini" / f"{net}.weights"
    result = _invoke(["detector", "test", REPO / "cfg" / "voc.data", cfg, weights, jpegs["dog"], "-thresh", "0.10",
                      "-out", tmp_path / "pred", "-precision", "bf16"], tmp_path)
    assert result.exit_code == 0, result.output
    picture = cv2.imread(str(jpegs["dog"]))
    net = InferenceNetwork(load_network(cfg, weights), precision="bf16", single_forward=True)
    dets = detect_boxes(net, str(jpegs["dog"]), 0.10)
    want = PJREDDIE.printed_lines(dets, read_names(REPO / "data" / "voc.names"), 0.10, picture.shape[1],
                                  picture.shape[0])
    assert want and _printed_lines(result.stdout) == want


def test_inference_options_a_net_cannot_run_are_one_line_usage_errors(reference, tmp_path):
    pytest.importorskip("onnxruntime")
    net = "mini-yolov2-voc"
    result = CliRunner().invoke(main, ["detector", "test", str(REPO / "cfg" / "voc.data"),
                                       str(reference / "mini" / f"{net}.cfg"), str(reference / "mini" / f"{net}.weights"),
                                       "data/dog.jpg", "-backend", "onnxruntime", "-precision", "bf16"])
    assert result.exit_code == 2
    assert "the onnxruntime backend runs fp32 or int8 on the cpu (asked: bf16 on cpu)" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("preset, expected", [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_the_cli_makes_openmp_threads_sleep_unless_told_otherwise(preset, expected):
    import os

    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | ({"OMP_WAIT_POLICY": preset} if preset else {})
    code = "import os, pydarknet.cli; print(os.environ['OMP_WAIT_POLICY'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, cwd=REPO)
    assert done.stdout.strip() == expected


class _Opened(Exception):
    """Raised by the stand-in open_network once it has recorded what it was asked for."""


@pytest.mark.parametrize("command", [
    ["detector", "test", "cfg/voc.data", "CFG", "W", "data/dog.jpg"], ["detect", "CFG", "W", "data/dog.jpg"],
    ["detector", "valid", "DATA", "CFG", "W"], ["detector", "recall", "DATA", "CFG", "W"],
    ["detector", "map", "DATA", "CFG", "W"], ["detector", "demo", "cfg/voc.data", "CFG", "W", "VIDEO"],
    ["classifier", "predict", "cfg/imagenet1k.data", "CFG", "W", "data/dog.jpg"],
    ["classifier", "valid", "DATA", "CFG", "W"], ["classify", "CFG", "W", "data/dog.jpg"],
])
def test_every_inference_command_passes_precision_and_backend_on(command, tmp_path, monkeypatch):
    from pydarknet.cli import evaluate as cli_evaluate

    asked = {}

    def opened(cfg, weights, device, trained=True, **inference):
        asked.update(inference)
        raise _Opened
    for module in (cli_detector, cli_evaluate, cli_classifier):
        monkeypatch.setattr(module, "open_network", opened)
    files = {"CFG": tmp_path / "net.cfg", "W": tmp_path / "net.weights", "VIDEO": tmp_path / "video.mp4",
             "DATA": tmp_path / "valid.data", "LIST": tmp_path / "valid.txt"}
    for path in files.values():
        path.write_text("")
    # what the checks before the weights read (dataset check, classes=, cfg head): a 20-class [region] net, a
    # labelled image
    files["CFG"].write_text((REPO / "cfg" / "yolov2-tiny-voc.cfg").read_text())
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "images" / "dog.jpg").write_bytes((REPO / "data" / "dog.jpg").read_bytes())
    (tmp_path / "labels" / "dog.txt").write_text("11 0.3 0.6 0.25 0.5\n")
    files["LIST"].write_text(f"{tmp_path / 'images' / 'dog.jpg'}\n")
    files["DATA"].write_text(f"classes=20\nvalid={files['LIST']}\nnames={REPO / 'data' / 'voc.names'}\n")
    args = [str(files.get(arg, arg)) for arg in command] + ["-precision", "bf16", "-backend", "openvino",
                                                            "-darknet_build", "cpu", "-calibration", str(files["LIST"])]
    result = CliRunner().invoke(main, args)
    assert isinstance(result.exception, _Opened), result.output
    one_image = {"single_forward": True} if command[0] == "detect" or command[:2] == ["detector", "test"] else {}
    assert asked == {"precision": "bf16", "backend": "openvino", "darknet_build": "cpu",
                     "calibration": str(files["LIST"]), **one_image}
