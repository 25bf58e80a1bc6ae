"""ONNX export: every net of the reference pack, run by onnxruntime, against the PyTorch net."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import (
    FULL_NETS,
    MINI_NETS,
    full_network,
    images_for,
    is_classifier,
    mini_network,
    network_input,
)

from pydarknet.heads.region.detections import get_region_detections
from pydarknet.errors import CfgError
from pydarknet.export import DECODED_OUTPUTS, DecodedRegion, export_network, export_onnx
from pydarknet.tree import WordTree

onnxruntime = pytest.importorskip("onnxruntime")

EXPORT_REL = 1e-4   # of the largest |value| of each output


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


def pack_batch(reference, name: str, size: int) -> torch.Tensor:
    """Darknet's own inputs of two pack images as one batch (the exported batch size is dynamic)."""
    return torch.cat([network_input(reference, image, size) for image in images_for(name)[:2]])


def run_onnx(path, x: torch.Tensor) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    return session.run(None, {"image": x.numpy()})


def assert_outputs_close(got: list[np.ndarray], want: tuple[torch.Tensor, ...], what: str) -> None:
    assert len(got) == len(want), what
    for index, (g, w) in enumerate(zip(got, want)):
        w = w.numpy()
        assert g.shape == w.shape and g.dtype == np.float32, f"{what} output {index}: {g.shape} {g.dtype}"
        error = np.abs(g - w).max()
        assert error <= EXPORT_REL * np.abs(w).max(), f"{what} output {index}: max |diff| {error:.3g}"


def check_export(net, x: torch.Tensor, tmp_path, what: str) -> None:
    """Plain export always, decoded export for detectors; both against the unfused PyTorch net."""
    decodes = [False] if net.region is None else [False, True]
    for decode in decodes:
        path = tmp_path / f"{'decoded' if decode else 'plain'}.onnx"
        export_network(net, path, decode=decode)
        with torch.inference_mode():
            want = DecodedRegion(net)(x) if decode else (net(x),)
        assert_outputs_close(run_onnx(path, x), want, f"{what} decode={decode}")


@pytest.mark.parametrize("name", MINI_NETS)
def test_mini_net_exports_to_onnx(reference, tmp_path, name):
    check_export(mini_network(reference, name), pack_batch(reference, name, MINI_NETS[name]), tmp_path, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_NETS)
def test_full_size_net_exports_to_onnx(reference, weights_cache, tmp_path, name):
    net = full_network(reference, name, weights_cache)
    check_export(net, network_input(reference, images_for(name)[0], FULL_NETS[name]), tmp_path, name)


def test_export_onnx_from_files_names_its_outputs(reference, tmp_path):
    onnx = pytest.importorskip("onnx")
    mini = reference / "mini"
    export_onnx(mini / "mini-yolov2-tiny-voc.cfg", mini / "mini-yolov2-tiny-voc.weights", tmp_path / "d.onnx",
                decode=True, opset=17)
    model = onnx.load(tmp_path / "d.onnx")
    assert [o.name for o in model.graph.output] == list(DECODED_OUTPUTS)
    assert model.opset_import[0].version == 17
    export_onnx(mini / "mini-darknet19.cfg", mini / "mini-darknet19.weights", tmp_path / "c.onnx")
    assert [o.name for o in onnx.load(tmp_path / "c.onnx").graph.output] == ["output"]
    with pytest.raises(CfgError, match="mini-darknet19.cfg: decoding needs a \\[region\\] layer"):
        export_onnx(mini / "mini-darknet19.cfg", mini / "mini-darknet19.weights", tmp_path / "x.onnx", decode=True)


@pytest.mark.parametrize("name", [n for n in MINI_NETS if not is_classifier(n)])
def test_decode_matches_get_region_detections(reference, name):
    """Boxes and probabilities as the detections pipeline decodes them for an image the size of the input, thresh 0."""
    net = mini_network(reference, name)
    x = network_input(reference, "dog", MINI_NETS[name])
    with torch.inference_mode():
        region = net(x)
        boxes, objectness, probs = (t[0].numpy() for t in DecodedRegion(net)(x))
    layer = net.region
    dets = get_region_detections(region[0], layer.options.anchors, net.width, net.height, net.width, net.height,
                                 thresh=0.0, tree=layer.tree)
    np.testing.assert_allclose(boxes, np.stack([d.bbox for d in dets]), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(objectness, [d.objectness for d in dets])   # all > 0 after the logistic
    if layer.tree is None:
        np.testing.assert_array_equal(probs, np.stack([d.probs for d in dets]))
    else:
        # the tree's detections keep one class; the decode gives the hierarchy it was chosen from
        expected = layer.tree.hierarchy_predictions(region[0, :, 5:], dim=1)           # (A, C, H, W)
        np.testing.assert_array_equal(probs, expected.permute(0, 2, 3, 1).reshape(probs.shape).numpy())


def test_hierarchy_probabilities_equal_hierarchy_predictions(reference):
    data = reference / "darknet" / "data"
    tree = WordTree.read(data / "9k.tree")
    p = torch.rand(2, 3, tree.n, 2, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tree._exportable_hierarchy_predictions(p, dim=2), tree.hierarchy_predictions(p, dim=2))
    toy = WordTree(list("ABCDEF"), [-1, -1, 0, 0, 2, 2])
    got = toy._exportable_hierarchy_predictions(torch.tensor([0.9, 0.1, 0.6, 0.4, 0.5, 0.5]), dim=0)
    np.testing.assert_allclose(got.numpy(), [0.9, 0.1, 0.54, 0.36, 0.27, 0.27], rtol=1e-6)


def test_export_command_writes_a_model_onnxruntime_runs(reference, tmp_path):
    from click.testing import CliRunner

    from pydarknet.cli import main

    out = tmp_path / "tiny.onnx"
    mini = reference / "mini"
    result = CliRunner().invoke(main, ["export", "onnx", str(mini / "mini-yolov2-tiny-voc.cfg"),
                                       str(mini / "mini-yolov2-tiny-voc.weights"), str(out), "--decode"])
    assert result.exit_code == 0, result.output
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(DECODED_OUTPUTS)   # boxes and probabilities
