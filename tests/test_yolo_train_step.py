"""One training step of a [yolo] net vs AlexeyAB's CPU build (reference-yolo README §7-§9, `train/<case>/`), what the
default (GPU-semantics) step does differently, and steps of [yolo] and YOLOv1 [detection] nets that learn.

The pack comes from AlexeyAB's CPU build, so its gradients are compared under `training_build="alexeyab-cpu"`.
Rounding ties (tests/fixtures/yolo_train/README.md): where a leaky pre-activation or the two largest inputs of a
maxpool window are within float rounding of each other, C and torch may pick different slopes / cells, and every
gradient below moves by a few %. Those cells are forced to the C program's choice, as `force_leaky_slopes` does for
the pjreddie pack.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pydarknet import DarknetSGD, load_weights, train_step
from pydarknet.cfg import parse_cfg_text
from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.engine.cpu_build import overwritten_reads
from pydarknet.engine.detector import DetectorTask, alexeyab_only_keys, training_dialect
from pydarknet.engine.step import TrainingForward
from pydarknet.layers.pool import MaxPoolLayer
from pydarknet.network import Darknet
from reference import force_leaky_slopes

CASES = ["mini-yolov4-tiny_seen20000", "mini-yolov3-tiny_seen20000"]
TIES = Path(__file__).parent / "fixtures" / "yolo_train"
YOLOV1_CFG = Path(__file__).parent / "fixtures" / "yolov1" / "mini-yolov1.cfg"


def case_net(reference_yolo: Path, case: str, cfg_text: str | None = None) -> Darknet:
    name = case.removesuffix("_seen20000")
    cfg = reference_yolo / "mini" / f"{name}.train.cfg"
    net = Darknet(parse_cfg_text(cfg_text or cfg.read_text(), str(cfg)), cfg_path=cfg)
    load_weights(net, reference_yolo / "mini" / f"{name}.weights")
    return net


def case_batch(reference_yolo: Path, case: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(images (2, 3, 416, 416): dog and horses, truths (2, 200, 6), train_meta)."""
    directory = reference_yolo / "train" / case
    meta = json.loads((directory / "train_meta.json").read_text())
    images = torch.from_numpy(np.stack([np.load(reference_yolo / path) for path in meta["input"]]))
    return images, torch.from_numpy(np.load(directory / "truth.npy")), meta


def force_maxpool_choices(net: Darknet, ties) -> list:
    """Darknet's cell in the maxpool windows listed in `ties` (layer, index (image, channel, out_y, out_x), choice:
    the cell's row-major position in the window); elsewhere the window's first maximum, as both programs."""
    handles = []
    for index in np.unique(ties["layer"]):
        layer = net.layers[int(index)]
        assert isinstance(layer, MaxPoolLayer) and layer.padding // 2 == 0
        pick = ties["layer"] == index
        where = tuple(torch.from_numpy(ties["index"][pick].astype(np.int64)).T)
        choice = torch.from_numpy(ties["choice"][pick].astype(np.int64))

        def hook(module, inputs, _output, where=where, choice=choice):
            padded = F.pad(inputs[0], (0, module.padding, 0, module.padding), value=float("-inf"))
            windows = padded.unfold(2, module.size, module.stride_y).unfold(3, module.size, module.stride)
            windows = windows.reshape(*windows.shape[:4], -1)                  # (B, C, H', W', size*size)
            cell = windows.detach().argmax(dim=-1)
            cell[where] = choice
            return windows.gather(-1, cell.unsqueeze(-1)).squeeze(-1)
        handles.append(layer.register_forward_hook(hook))
    return handles


def rel_err(actual: torch.Tensor | np.ndarray, expected: np.ndarray) -> float:
    """max|a-b| / max|b|."""
    return float(np.abs(np.asarray(actual, dtype=np.float64) - expected).max() / np.abs(expected).max())


def cpu_build_step(reference_yolo: Path, case: str):
    net = case_net(reference_yolo, case)
    force_leaky_slopes(net, np.load(TIES / f"{case}.leaky_ties.npz"))
    force_maxpool_choices(net, np.load(TIES / f"{case}.maxpool_ties.npz"))
    images, truths, meta = case_batch(reference_yolo, case)
    result = train_step(net, images, truths, DarknetSGD(net), task=DetectorTask(net, ALEXEYAB),
                        seen=meta["seen_before"], training_build="alexeyab-cpu")
    return result, net, meta, reference_yolo / "train" / case


@pytest.fixture(scope="module", params=CASES)
def cpu_stepped(request, reference_yolo):
    """(StepResult, net after the step, train_meta, case dir) of the CPU-build step."""
    return cpu_build_step(reference_yolo, request.param)


@pytest.fixture(scope="module", params=CASES)
def gpu_stepped(request, reference_yolo):
    """(StepResult, net after the step, its BN rolling statistics before it, train_meta, case dir): the default step."""
    net = case_net(reference_yolo, request.param)
    before = {i: (layer.bn.running_mean.clone(), layer.bn.running_var.clone()) for i, layer in enumerate(net.layers)
              if getattr(layer, "bn", None) is not None}
    images, truths, meta = case_batch(reference_yolo, request.param)
    result = train_step(net, images, truths, DarknetSGD(net), task=DetectorTask(net, ALEXEYAB),
                        seen=meta["seen_before"], apply=False)
    return result, net, before, meta, reference_yolo / "train" / request.param


# ------------------------------------------------------------------------------ AlexeyAB's CPU build (README §9)

def test_cpu_build_yolo_outputs_and_deltas(cpu_stepped):
    result, _, _, directory = cpu_stepped
    outputs, deltas = np.load(directory / "yolo_output.npz"), np.load(directory / "yolo_delta.npz")
    assert sorted(result.output) == sorted(result.loss.deltas) == sorted(int(k[5:8]) for k in outputs.files)
    for index, output in result.output.items():
        expected = outputs[f"yolo_{index:03d}_output"]                  # (B, A, 5+C, H*W)
        assert rel_err(output.reshape(expected.shape), expected) <= 1e-4, index
        expected = deltas[f"yolo_{index:03d}_delta"]
        assert rel_err(result.loss.deltas[index].reshape(expected.shape), expected) <= 1e-4, index


def test_cpu_build_costs_and_seen(cpu_stepped):
    result, net, meta, _ = cpu_stepped
    for name, cost in meta["layer_cost"].items():
        assert result.loss.costs[int(name[5:])] == pytest.approx(cost, rel=1e-4)
    assert result.loss.cost == pytest.approx(meta["get_network_cost"], rel=1e-4)
    assert result.seen == net.seen == meta["seen_during_forward"]
    assert result.learning_rate == pytest.approx(meta["learning_rate_used"], rel=1e-7)


def test_cpu_build_batch_norm_statistics(cpu_stepped):
    """Unbiased batch variance, rolling .9/.1 (README §7)."""
    result, net, _, directory = cpu_stepped
    stats = np.load(directory / "bn_stats.npz")
    assert sorted(result.batch_mean) == sorted(int(k[3:6]) for k in stats.files if k.endswith("batch_mean"))
    for index in result.batch_mean:
        for key, actual in (("batch_mean", result.batch_mean[index]), ("batch_variance", result.batch_variance[index]),
                            ("rolling_mean_after", net.layers[index].bn.running_mean),
                            ("rolling_variance_after", net.layers[index].bn.running_var)):
            assert rel_err(actual.detach(), stats[f"bn_{index:03d}_{key}"]) <= 1e-5, (index, key)


def test_cpu_build_gradients(cpu_stepped):
    """weight/scale/bias updates after the backward, before the update; BN biases get none (README §7)."""
    result, net, _, directory = cpu_stepped
    grads = np.load(directory / "grads.npz")
    assert sorted(result.updates) == sorted({int(k[5:8]) for k in grads.files})
    for index, named in result.updates.items():
        batch_normalized = net.layers[index].bn is not None
        assert set(named) == ({"weights", "biases", "scales"} if batch_normalized else {"weights", "biases"})
        assert rel_err(named["weights"], grads[f"grad_{index:03d}_weights"]) <= 3e-3, index
        if batch_normalized:
            assert rel_err(named["scales"], grads[f"grad_{index:03d}_scales"]) <= 1e-4, index
            assert not grads[f"grad_{index:03d}_biases"].any() and not named["biases"].any(), index
        else:
            assert rel_err(named["biases"], grads[f"grad_{index:03d}_biases"]) <= 1e-4, index


def test_cpu_build_weights_after_the_update(cpu_stepped, reference_yolo, tmp_path):
    _, net, meta, directory = cpu_stepped
    after = case_net(reference_yolo, directory.name)
    load_weights(after, directory / "after.weights")
    assert struct.unpack("<3iQ", (directory / "after.weights").read_bytes()[:20])[3] == meta["seen_before"] + 2
    for index, layer in enumerate(net.layers):
        for mine, theirs in zip(layer.darknet_tensors(), after.layers[index].darknet_tensors()):
            np.testing.assert_allclose(mine.detach().numpy(), theirs.detach().numpy(), rtol=0, atol=2e-4)


def test_cpu_build_drops_what_a_conv_backward_overwrites(reference_yolo):
    """DARKNET(AlexeyAB col2im.c:col2im_cpu_ext) zeroes the delta of the layer below a conv: the route that re-reads
    that layer's output sends no gradient through it (yolov4-tiny's CSP routes, the routes to the second head)."""
    net = case_net(reference_yolo, CASES[0])
    assert overwritten_reads(net) == {6: {1}, 14: {1}, 22: {1}, 31: {0}}
    assert overwritten_reads(case_net(reference_yolo, CASES[1])) == {17: {0}}


# ------------------------------------------------------------------------------ the default step: GPU semantics

def first_layer_count(net: Darknet) -> int:
    """N = B*H*W of layer 0, whose input (the images) is the same in both builds."""
    shape = net.shapes[0]
    return net.options.mini_batch * shape.h * shape.w


def test_default_step_normalises_with_the_biased_variance(gpu_stepped):
    """DIVERGES (GPU/cuDNN): the batch variance divided by N, where the CPU build divides by N-1. Float sums of
    N = 2*208*208 (2*416*416) terms drift by ~1e-4 in C: 3e-4 here."""
    result, net, _, _, directory = gpu_stepped
    stats = np.load(directory / "bn_stats.npz")
    n = first_layer_count(net)
    assert rel_err(result.batch_mean[0], stats["bn_000_batch_mean"]) <= 3e-4
    assert rel_err(result.batch_variance[0].double() * n / (n - 1), stats["bn_000_batch_variance"]) <= 3e-4
    assert rel_err(result.batch_variance[0], stats["bn_000_batch_variance"]) > 1 / n / 2   # not the unbiased one


def test_default_rolling_update_is_cudnns(gpu_stepped):
    """DIVERGES (cuDNN's exponentialAverageFactor .01): rolling = .99 rolling + .01 batch (the unbiased variance)
    where the CPU build's is .9/.1, as the pack shows."""
    result, net, before, _, directory = gpu_stepped
    stats = np.load(directory / "bn_stats.npz")
    n = first_layer_count(net)
    mean0, variance0 = (t.double() for t in before[0])
    mean, unbiased = result.batch_mean[0].double(), result.batch_variance[0].double() * n / (n - 1)
    np.testing.assert_allclose(net.layers[0].bn.running_mean.double(), 0.99 * mean0 + 0.01 * mean, rtol=1e-6)
    np.testing.assert_allclose(net.layers[0].bn.running_var.double(), 0.99 * variance0 + 0.01 * unbiased, rtol=1e-6)
    pack_mean, pack_variance = (torch.from_numpy(stats[f"bn_000_batch_{k}"]).double() for k in ("mean", "variance"))
    assert rel_err(0.9 * mean0 + 0.1 * pack_mean, stats["bn_000_rolling_mean_after"]) <= 1e-6
    assert rel_err(0.9 * variance0 + 0.1 * pack_variance, stats["bn_000_rolling_variance_after"]) <= 1e-6


def test_default_step_trains_the_batch_norm_biases(gpu_stepped):
    """DIVERGES (cuDNN computes the BN bias gradient; the CPU build never does): every BN layer's bias update is the
    sum of its scale-free delta, non-zero."""
    result, net, _, _, _ = gpu_stepped
    assert all(named["biases"].abs().max() > 0 for named in result.updates.values())
    assert all(net.layers[index].bn is None or "scales" in named for index, named in result.updates.items())


def test_default_step_is_near_the_cpu_build(gpu_stepped):
    """The outputs, deltas and costs move only by the BN normalisation (sqrt(N/(N-1)) per layer, N >= 338): < 2%."""
    result, _, _, meta, directory = gpu_stepped
    outputs, deltas = np.load(directory / "yolo_output.npz"), np.load(directory / "yolo_delta.npz")
    for index, output in result.output.items():
        expected = outputs[f"yolo_{index:03d}_output"]
        assert 1e-5 < rel_err(output.reshape(expected.shape), expected) < 2e-2, index
        expected = deltas[f"yolo_{index:03d}_delta"]
        assert rel_err(result.loss.deltas[index].reshape(expected.shape), expected) < 5e-2, index
    assert result.loss.cost == pytest.approx(meta["get_network_cost"], rel=2e-2)


# ------------------------------------------------------------------------------ nets that learn; the dialect

def small_yolo_net(reference_yolo: Path, case: str, size: int = 160) -> Darknet:
    """The case's net (and weights) at a `size` x `size` input: the [yolo] layers work at any size."""
    cfg = (reference_yolo / "mini" / f"{case.removesuffix('_seen20000')}.train.cfg").read_text()
    return case_net(reference_yolo, case, cfg.replace("width=416", f"width={size}").replace("height=416",
                                                                                             f"height={size}"))


def test_yolo_cost_decreases_over_a_few_steps(reference_yolo):
    net = small_yolo_net(reference_yolo, CASES[0])
    images, truths, _ = case_batch(reference_yolo, CASES[0])
    images = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
    net.options.learning_rate = 0.01
    optimizer = DarknetSGD(net)
    task = DetectorTask(net)
    costs = [train_step(net, images, truths, optimizer, task=task, seen=20000 + 2 * k).loss.cost for k in range(4)]
    assert costs[-1] < 0.8 * costs[0], costs


def test_yolo_net_trains_under_bf16_autocast(reference_yolo):
    """`detector train --amp` on a [yolo] net: the forward under bfloat16 autocast, the loss on float32 outputs;
    its costs stay within bf16's precision of the float32 step's and fall as they do."""
    images, truths, _ = case_batch(reference_yolo, CASES[0])
    images = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
    costs = {}
    for amp in (False, True):
        net = small_yolo_net(reference_yolo, CASES[0])
        net.options.learning_rate = 0.01
        optimizer, task = DarknetSGD(net), DetectorTask(net)
        costs[amp] = [train_step(net, images, truths, optimizer, task=task, seen=20000 + 2 * k, amp=amp).loss.cost
                      for k in range(3)]
    assert costs[True][0] != costs[False][0]   # the forward did run in bfloat16
    assert costs[True][0] == pytest.approx(costs[False][0], rel=0.05)
    assert costs[True][-1] < 0.9 * costs[True][0], costs


def test_yolov1_cost_decreases_over_a_few_steps():
    torch.manual_seed(0)   # the [dropout] layer's draws
    net = Darknet.from_cfg(YOLOV1_CFG)
    net.options.learning_rate = 0.005
    task = DetectorTask(net)
    assert (task.head.kind, task.dialect, task.top) == ("detection", PJREDDIE, len(net.layers) - 1)
    images = torch.rand(1, 3, net.height, net.width, generator=torch.Generator().manual_seed(1))
    truths = torch.tensor([[[0.3, 0.4, 0.2, 0.3, 1], [0.7, 0.6, 0.3, 0.2, 5]]])
    optimizer = DarknetSGD(net)
    results = [train_step(net, images, truths, optimizer, task=task) for _ in range(4)]
    costs = [result.loss.cost for result in results]
    assert costs[-1] < 0.5 * costs[0], costs
    assert results[0].output.shape == (1, task.head.layers[0].options.outputs)
    assert results[0].loss.stats_line().startswith("Detection Avg IOU: ")


def test_several_loss_layers_train_every_layer_below_them(reference_yolo):
    """TrainingForward returns every [yolo] layer's input and output; one backward reaches every trained tensor."""
    net = small_yolo_net(reference_yolo, CASES[0])
    task = DetectorTask(net)
    forward = task.forward_module()
    assert isinstance(forward, TrainingForward) and forward.tops == [30, 37] and task.top == 37
    inputs, outputs = forward(torch.rand(2, 3, 160, 160))
    assert sorted(inputs) == sorted(outputs) == [30, 37]
    assert inputs[30].shape == (2, 255, 5, 5) and outputs[37].shape == (2, 3, 85, 10, 10)
    torch.autograd.backward([inputs[30], inputs[37]], [torch.ones_like(inputs[30]), torch.ones_like(inputs[37])])
    trained = [p for layer in net.layers for p in layer.trained_tensors().values()]
    assert trained and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)


def test_ddp_wraps_a_net_with_several_loss_layers(reference_yolo, tmp_path):
    """DistributedDataParallel (gloo, one process) over the [yolo] TrainingForward: every parameter is reduced at
    each step (a second step fails if one was left out), and the updates equal those of the plain step."""
    import torch.distributed as dist

    images, truths, _ = case_batch(reference_yolo, CASES[0])
    images = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
    plain, wrapped = small_yolo_net(reference_yolo, CASES[0]), small_yolo_net(reference_yolo, CASES[0])
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        task = DetectorTask(wrapped)
        model = torch.nn.parallel.DistributedDataParallel(task.forward_module())
        optimizers = DarknetSGD(plain), DarknetSGD(wrapped)
        for seen in (20000, 20002):
            expected = train_step(plain, images, truths, optimizers[0], seen=seen, apply=False)
            got = train_step(wrapped, images, truths, optimizers[1], task=task, model=model, seen=seen, apply=False)
    finally:
        dist.destroy_process_group()
    for index, named in expected.updates.items():
        for name, update in named.items():
            torch.testing.assert_close(got.updates[index][name], update, rtol=1e-5, atol=1e-6)


def test_alexeyab_only_keys_make_the_dialect(reference_yolo):
    """A cfg with keys only AlexeyAB's Darknet reads trains as AlexeyAB's whatever is asked; others as asked."""
    v4 = case_net(reference_yolo, CASES[0])
    keys = alexeyab_only_keys(v4)
    assert any(key.endswith("[yolo] iou_loss") for key in keys) and any("scale_x_y" in key for key in keys)
    assert keys[0].split(":")[0].endswith("mini-yolov4-tiny.train.cfg")
    assert training_dialect(v4) is training_dialect(v4, PJREDDIE) is ALEXEYAB
    v3 = case_net(reference_yolo, CASES[1])
    assert alexeyab_only_keys(v3) == []
    assert DetectorTask(v3).dialect is PJREDDIE and DetectorTask(v3, ALEXEYAB).dialect is ALEXEYAB


def test_training_build_is_checked(reference_yolo):
    net = small_yolo_net(reference_yolo, CASES[0])
    with pytest.raises(ValueError, match="training_build must be one of gpu, alexeyab-cpu"):
        train_step(net, torch.rand(2, 3, 160, 160), torch.zeros(2, 1, 5), DarknetSGD(net), training_build="cpu")
    assert all(getattr(layer, "training_build", "gpu") == "gpu" for layer in net.layers)


def test_cpu_build_refuses_a_batchnorm_section():
    """AlexeyAB's CPU [batchnorm] layer is not emulated: one clear error, not GPU numbers under the CPU switch."""
    from pydarknet.errors import UnsupportedError

    net = Darknet(parse_cfg_text("[net]\nbatch=2\nwidth=4\nheight=4\nchannels=1\n\n[batchnorm]\n\n[softmax]\n"),
                  cfg_path="bn.cfg")
    with pytest.raises(UnsupportedError, match=r"bn.cfg: training_build=alexeyab-cpu .* layer 0 \(\[batchnorm\]\)"):
        train_step(net, torch.rand(2, 1, 4, 4), torch.eye(16)[:2], DarknetSGD(net), training_build="alexeyab-cpu")


def test_gaussian_yolo_net_trains(reference_yolo):
    """mini-yolov3-tiny with [Gaussian_yolo] heads (9 + classes entries per anchor), from a fresh init."""
    cfg = (reference_yolo / "mini" / "mini-yolov3-tiny.train.cfg").read_text()
    cfg = cfg.replace("filters=255", "filters=267").replace("[yolo]", "[Gaussian_yolo]")
    cfg = cfg.replace("width=416", "width=160").replace("height=416", "height=160")
    torch.manual_seed(0)
    net = Darknet(parse_cfg_text(cfg, "gaussian.cfg"), cfg_path="gaussian.cfg")
    net.options.learning_rate, net.options.burn_in = 0.001, 0
    task = DetectorTask(net)
    assert (task.head.kind, task.dialect) == ("Gaussian_yolo", ALEXEYAB)
    images, truths, _ = case_batch(reference_yolo, CASES[1])
    images = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
    optimizer = DarknetSGD(net)
    results = [train_step(net, images, truths, optimizer, task=task) for _ in range(4)]
    assert sorted(results[0].output) == [16, 23] and results[0].output[16].shape == (2, 3, 89, 5, 5)
    costs = [result.loss.cost for result in results]
    assert costs[-1] < 0.8 * costs[0], costs


def test_without_batch_norm_the_builds_differ_only_below_an_overwritten_read(reference_yolo):
    """With no batch norm the two builds share the forward, the [yolo] deltas and the costs bit for bit; the
    gradients differ only at and below layer 13, whose delta from route 17 AlexeyAB's CPU build drops (conv 14
    overwrites it)."""
    cfg = (reference_yolo / "mini" / "mini-yolov3-tiny.train.cfg").read_text().replace("batch_normalize=1\n", "")
    cfg = cfg.replace("width=416", "width=160").replace("height=416", "height=160")
    torch.manual_seed(0)
    gpu = Darknet(parse_cfg_text(cfg, "nobn.cfg"), cfg_path="nobn.cfg")
    cpu = Darknet(parse_cfg_text(cfg, "nobn.cfg"), cfg_path="nobn.cfg")
    cpu.load_state_dict(gpu.state_dict())
    images, truths, _ = case_batch(reference_yolo, CASES[1])
    images = F.interpolate(images, size=(160, 160), mode="bilinear", align_corners=False)
    steps = {build: train_step(net, images, truths, DarknetSGD(net), task=DetectorTask(net, ALEXEYAB), seen=20000,
                               apply=False, training_build=build) for build, net in (("gpu", gpu), ("alexeyab-cpu", cpu))}
    ours, theirs = steps["gpu"], steps["alexeyab-cpu"]
    assert ours.loss.costs == theirs.loss.costs
    for index in ours.output:
        assert torch.equal(ours.output[index], theirs.output[index])
        assert torch.equal(ours.loss.deltas[index], theirs.loss.deltas[index])
    for index, named in ours.updates.items():
        same = all(torch.equal(update, theirs.updates[index][name]) for name, update in named.items())
        assert same == (index > 13), index
