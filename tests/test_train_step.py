"""One Darknet SGD step (README §6, §8, §9) vs `train/<case>/`, and the update rule on its own."""
from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet import DarknetSGD, load_weights, train_step
from pydarknet.cfg import parse_cfg_text
from pydarknet.network import Darknet
from reference import force_leaky_slopes

# bf16 keeps 8 significant bits: autocast rounds a conv's inputs and weights to within u = 2^-8 each, so
# their products, and a sum of squared deltas, move by about 2u = 2^-7 (one bf16 epsilon) relative
BF16_COST_REL = 2 ** -7
CASES = ["mini-yolov2-voc_seen0", "mini-yolov2-voc_seen20000", "mini-yolo9000_seen0", "mini-yolo9000_seen20000"]


def load_train_net(reference: Path, meta: dict, cfg_text: str | None = None) -> Darknet:
    cfg = reference / meta["train_cfg"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the 9000 train cfg repeats batch/subdivisions with equal values
        net = Darknet(parse_cfg_text(cfg_text or cfg.read_text(), str(cfg)), cfg_path=cfg)
    load_weights(net, reference / meta["initial_weights"])
    return net


def case_inputs(directory: Path, meta: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (2, 3, H, W), truths (2, 30, 5)); seen20000 cases reuse seen0's input.npy."""
    input_path = directory / meta.get("files_identical_to", {}).get("input.npy", "input.npy")
    return torch.from_numpy(np.load(input_path)), torch.from_numpy(np.load(directory / "truth.npy"))


def record_deltas(net: Darknet, indices: list[int]) -> dict[int, torch.Tensor]:
    """Darknet's `l.delta` after backward (negative gradient): w.r.t. the raw conv output (before BN)
    for conv layers, w.r.t. the layer output otherwise. A view gives each layer its own tensor, so a
    one-input route does not share its gradient with the layer it copies."""
    deltas: dict[int, torch.Tensor] = {}

    def hook(index):
        def record(_module, _inputs, output):
            output = output.view_as(output)
            output.register_hook(lambda grad: deltas.__setitem__(index, -grad))
            return output
        return record
    for index in indices:
        layer = net.layers[index]
        (layer.op if hasattr(layer, "op") else layer).register_forward_hook(hook(index))
    return deltas


@pytest.fixture(scope="module", params=CASES)
def stepped(request, reference):
    """(StepResult, net after the step, train_meta, case dir, recorded layer deltas)."""
    directory = reference / "train" / request.param
    meta = json.loads((directory / "train_meta.json").read_text())
    net = load_train_net(reference, meta)
    force_leaky_slopes(net, np.load(directory / "leaky_ties.npz"))
    deltas = record_deltas(net, [int(k[6:]) for k in np.load(directory / "layer_deltas.npz").files]) \
        if (directory / "layer_deltas.npz").exists() else {}
    images, truths = case_inputs(directory, meta)
    result = train_step(net, images, truths, DarknetSGD(net), seen=meta["seen_before"])
    return result, net, meta, directory, deltas


def rel_err(actual: torch.Tensor | np.ndarray, expected: np.ndarray) -> float:
    """max|a-b| / max|b|."""
    return float(np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max())


def test_region_output_in_training_mode(stepped):
    result, _, meta, directory, _ = stepped
    name = meta.get("files_identical_to", {}).get("region_output.npy", "region_output.npy")
    assert rel_err(result.output, np.load(directory / name)) <= 1e-4


def test_region_delta_cost_and_stats(stepped):
    result, _, meta, directory, _ = stepped
    assert rel_err(result.loss.delta, np.load(directory / "region_delta.npz")["delta"]) <= 1e-4
    assert result.loss.cost == pytest.approx(meta["cost"], rel=1e-4)
    for key, value in meta["stats"].items():
        assert result.loss.stats[key] == pytest.approx(value, rel=1e-4, abs=2e-6), key


def test_seen_counts_the_batch_before_the_forward(stepped):
    result, net, meta, _, _ = stepped
    assert result.seen == net.seen == meta["seen_during_forward"] == meta["seen_before"] + 2


def test_learning_rate_of_the_update(stepped):
    result, _, meta, _, _ = stepped
    # seen0: burn-in at batch 1 of 1000 (1e-15, warm-up branch of the region loss); seen20000: constant
    assert result.learning_rate == pytest.approx(meta["learning_rate_used"], rel=1e-7)


def test_batch_norm_batch_statistics(stepped):
    result, _, _, directory, _ = stepped
    grads = np.load(directory / "grads.npz")
    for key in (k for k in grads.files if k.startswith("bn_")):
        index, stat = int(key.split("_")[1]), key.rsplit("_", 1)[1]
        ours = (result.batch_mean if stat == "mean" else result.batch_variance)[index]
        assert rel_err(ours, grads[key]) <= 1e-5, key


def test_update_arrays_are_darknet_gradients(stepped):
    result, _, _, directory, _ = stepped
    grads = np.load(directory / "grads.npz")
    tolerance = {"weights": 3e-3, "biases": 1e-4, "scales": 1e-4}
    keys = [k for k in grads.files if k.startswith("grad_")]
    assert {(int(k.split("_")[1]), k.split("_")[2]) for k in keys} == \
        {(i, name) for i, named in result.updates.items() for name in named}
    for key in keys:
        _, index, name = key.split("_")
        assert rel_err(result.updates[int(index)][name], grads[key]) <= tolerance[name], key


def test_layer_deltas(stepped):
    _, _, _, directory, deltas = stepped
    if not deltas:
        pytest.skip("layer_deltas.npz exists for mini-yolov2-voc_seen20000 only")
    expected = np.load(directory / "layer_deltas.npz")
    for key in expected.files:
        assert rel_err(deltas[int(key[6:])], expected[key]) <= 1e-4, key


def after_weights(reference: Path, directory: Path, meta: dict, tmp_path: Path) -> Path:
    """`after.weights`, or for seen0 the file rebuilt from `after_weights_patch.npz` (README §6)."""
    if (directory / "after.weights").exists():
        return directory / "after.weights"
    patch = np.load(directory / "after_weights_patch.npz")
    body = np.fromfile(reference / meta["initial_weights"], np.float32, offset=20)
    body[patch["index"]] = patch["value"]
    header = meta["after_weights_header"]
    path = tmp_path / "after.weights"
    path.write_bytes(struct.pack("<3iQ", header["major"], header["minor"], header["revision"], header["seen"])
                     + body.tobytes())
    return path


def test_weights_after_the_update(stepped, reference, tmp_path):
    _, net, meta, directory, _ = stepped
    expected = load_train_net(reference, meta)
    load_weights(expected, after_weights(reference, directory, meta, tmp_path))
    assert expected.seen == net.seen
    ours = net.state_dict()
    for key, value in expected.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        if key.endswith(("running_mean", "running_var")):
            assert rel_err(ours[key], value.numpy()) <= 1e-5, key
        else:
            assert float((ours[key] - value).abs().max()) <= 2e-4, key


def test_subdivisions_accumulate_until_the_update(reference):
    """batch=2 subdivisions=2: the first image only accumulates, the second triggers the update."""
    directory = reference / "train" / "mini-yolov2-voc_seen20000"
    meta = json.loads((directory / "train_meta.json").read_text())
    cfg_text = (reference / meta["train_cfg"]).read_text().replace("subdivisions=1", "subdivisions=2", 1)
    net = load_train_net(reference, meta, cfg_text)
    optimizer = DarknetSGD(net)
    images, truths = case_inputs(directory, meta)
    weights = net.layers[30].op.weight.detach().clone()
    first = train_step(net, images[:1], truths[:1], optimizer, seen=20000)
    assert (first.seen, first.learning_rate) == (20001, None)
    assert torch.equal(net.layers[30].op.weight, weights)
    second = train_step(net, images[1:], truths[1:], optimizer)
    assert (second.seen, second.learning_rate) == (20002, pytest.approx(1e-3))
    summed = second.updates[30]["weights"]
    # the second image's own gradient is the sum minus the first's, so the update uses both
    decayed = summed - 5e-4 * 2 * weights
    assert torch.allclose(net.layers[30].op.weight, weights + 1e-3 / 2 * decayed, rtol=0, atol=1e-7)
    assert torch.allclose(optimizer.updates()[30]["weights"], 0.9 * decayed, rtol=0, atol=1e-6)
    assert not torch.equal(summed, first.updates[30]["weights"])


TINY_CFG = """
[net]
batch=4
subdivisions=2
width=4
height=4
channels=1
momentum=0.5
decay=0.1
clip={clip}

[convolutional]
batch_normalize=1
filters=2
size=1
activation=leaky
learning_rate=0.5

[convolutional]
filters=1
size=1
activation=linear
stopbackward=1
"""


@pytest.mark.parametrize("clip", [0, 0.3])
def test_update_rule_over_two_updates(clip):
    """README §6 rule per tensor: decay on weights only, the layer's learning_rate scale, momentum carry, clip."""
    net = Darknet(parse_cfg_text(TINY_CFG.format(clip=clip)))
    net.reset_parameters(seed=0)
    optimizer = DarknetSGD(net)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    before = [p.detach().clone() for p in params]
    grads = [[torch.randn_like(p) for p in params] for _ in range(2)]
    momentum, decay, batch = 0.5, 0.1, 4   # batch = (4 // 2) * 2 images per update
    expected = [b.clone() for b in before]
    carried = [torch.zeros_like(b) for b in before]
    for rate, step_grads in zip((0.2, 0.1), grads):
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        optimizer.set_rate(rate)
        optimizer.step()
        for k, group in enumerate(optimizer.param_groups):
            scale = 0.5 if group["layer"] == 0 else 1.0
            update = carried[k] - step_grads[k]
            if group["name"] == "weights":
                update -= decay * batch * expected[k]
            expected[k] = expected[k] + rate * scale / batch * update
            if clip and group["name"] == "weights":
                expected[k] = expected[k].clamp(-clip, clip)
            carried[k] = momentum * update
    for k, p in enumerate(params):
        assert torch.allclose(p, expected[k], rtol=0, atol=1e-6)
        assert torch.allclose(optimizer.update_array(p), carried[k], rtol=0, atol=1e-6)


STOPPED_CFG = """
[net]
batch=2
subdivisions=1
width=4
height=4
channels=1

[convolutional]
batch_normalize=1
filters=2
size=1
activation=leaky
stopbackward=1

[convolutional]
filters=6
size=1
activation=linear

[region]
classes=1
num=1
softmax=1
"""


def test_stopbackward_freezes_the_layers_below():
    """DARKNET(network.c:backward_network): no gradient for the stopbackward layer and those below."""
    net = Darknet(parse_cfg_text(STOPPED_CFG))
    net.reset_parameters(seed=0)
    truths = torch.zeros(2, 30, 5)
    truths[:, 0] = torch.tensor([0.4, 0.6, 0.3, 0.2, 0.0])
    weights = net.layers[1].op.weight.detach().clone()
    result = train_step(net, torch.rand(2, 1, 4, 4), truths, DarknetSGD(net), apply=False)
    assert result.learning_rate is None and torch.equal(net.layers[1].op.weight, weights)
    assert all(float(u.abs().max()) == 0 for u in result.updates[0].values())
    assert all(float(u.abs().max()) > 0 for u in result.updates[1].values())


def test_bf16_autocast_runs_on_the_cpu_too(reference):
    """`amp=True` (`detector train --amp`) is bfloat16 autocast on the CPU as on CUDA: not Darknet's floats
    (the mini net's random weights move its region output by 0.2 of the max), but the same loss to
    `BF16_COST_REL`: under 0.3% in hardware (AVX512-BF16/AMX), 0.38% where it is emulated (AVX2 only)."""
    directory = reference / "train" / "mini-yolov2-voc_seen0"
    meta = json.loads((directory / "train_meta.json").read_text())
    images, truths = case_inputs(directory, meta)
    results = {amp: train_step(net, images, truths, DarknetSGD(net), seen=meta["seen_before"], amp=amp)
               for amp, net in ((False, load_train_net(reference, meta)), (True, load_train_net(reference, meta)))}
    assert results[True].output.dtype == torch.float32
    assert rel_err(results[True].output, results[False].output.numpy()) > 0.01   # autocast did run in bf16
    assert results[True].loss.cost == pytest.approx(meta["cost"], rel=BF16_COST_REL)
    assert results[False].loss.cost == pytest.approx(meta["cost"], rel=1e-4)
