"""The same code on CUDA: forward parity, a training step, and CPU/GPU agreement (skipped without CUDA)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pydarknet import DarknetSGD, load_weights, train_step
from pydarknet.network import Darknet
from reference import MINI_NETS, assert_layer_close, images_for, is_classifier, mini_network, network_input

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def exact_float32():
    """README §9: no TF32 for parity comparisons."""
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


@pytest.mark.parametrize("name", MINI_NETS)
def test_mini_net_on_cuda_matches_darknet(reference, name):
    net = mini_network(reference, name).cuda()
    for image in images_for(name):
        folder = reference / "forward" / name / image
        with torch.no_grad():
            output = net(network_input(reference, image, MINI_NETS[name]).cuda())[0].cpu().numpy()
        if is_classifier(name):
            np.testing.assert_allclose(output.ravel(), np.load(folder / "softmax.npy"), atol=1e-5, rtol=0)
        else:
            assert_layer_close(output, np.load(folder / "region.npy"), f"{name}/{image} on CUDA")


@pytest.mark.parametrize("case", ["mini-yolov2-voc_seen20000", "mini-yolo9000_seen20000"])
def test_training_step_on_cuda_agrees_with_cpu(reference, case):
    name, seen = case.rsplit("_seen", 1)
    folder = reference / "train" / case
    images = torch.from_numpy(np.load(reference / "train" / f"{name}_seen0" / "input.npy"))
    truths = torch.from_numpy(np.load(folder / "truth.npy"))
    results = {}
    for device in ("cpu", "cuda"):
        net = Darknet.from_cfg(reference / "mini" / f"{name}.train.cfg")
        load_weights(net, reference / "mini" / f"{name}.weights")
        net.to(device)
        step = train_step(net, images.to(device), truths.to(device), DarknetSGD(net), seen=int(seen))
        results[device] = (step.loss.cost, step.loss.delta.cpu(), net.layers[0].op.weight.detach().cpu())
    assert results["cuda"][0] == pytest.approx(results["cpu"][0], rel=1e-4)
    delta_cpu = results["cpu"][1]
    assert (results["cuda"][1] - delta_cpu).abs().max() <= 1e-4 * delta_cpu.abs().max()
    torch.testing.assert_close(results["cuda"][2], results["cpu"][2], atol=2e-4, rtol=0)
