"""Inference fusion: batch norm folded into the convs must not change what the net computes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from reference import (
    MINI_NETS,
    assert_layer_close,
    is_classifier,
    mini_network,
    network_input,
)
from torch import nn

from pydarknet import load_weights, save_weights
from pydarknet.fuse import (
    FusedConvolutionalLayer,
    FusedNetworkError,
    fold_batch_norm,
    fuse_for_inference,
)
from pydarknet.layers.conv import BN_EPS, BN_MOMENTUM

# Folding changes the rounding of one conv: w*s summed instead of (sum of w)*s. Measured on the mini
# nets, each layer fed the same input: <= 1.8e-6 of its max |value|.
SAME_INPUT_REL = 1e-5


@pytest.fixture(scope="module", params=list(MINI_NETS))
def mini(request, reference):
    name = request.param
    net = mini_network(reference, name)
    with torch.inference_mode():
        layers = net.forward_layers(network_input(reference, "dog", MINI_NETS[name]))
    return name, net, layers


def _random_batch_norm(bn: nn.Module, generator: torch.Generator) -> nn.Module:
    """Non-trivial rolling statistics and affine parameters, in eval mode."""
    with torch.no_grad():
        for tensor in (bn.weight, bn.bias, bn.running_mean):
            tensor.copy_(torch.randn(tensor.shape, generator=generator))
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=generator) + 0.01)
    return bn.eval()


@pytest.mark.parametrize("op, bn, shape", [
    (nn.Conv2d(4, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6, BN_EPS, BN_MOMENTUM), (2, 4, 9, 7)),
    (nn.Conv2d(4, 6, 1, bias=True), nn.BatchNorm2d(6, BN_EPS, BN_MOMENTUM), (2, 4, 5, 5)),
    (nn.Linear(10, 3, bias=False), nn.BatchNorm1d(3, BN_EPS, BN_MOMENTUM), (4, 10)),
])
def test_fold_batch_norm_computes_bn_of_op(op, bn, shape):
    generator = torch.Generator().manual_seed(0)
    bn = _random_batch_norm(bn, generator)
    x = torch.randn(shape, generator=generator)
    with torch.no_grad():
        expected = bn(op(x))
        folded = fold_batch_norm(op, bn)(x)
    torch.testing.assert_close(folded, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())
    assert op.bias is None or op.bias.shape == (bn.num_features,)   # the original op is left as it was


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_mini_net_matches_darknet_every_layer(reference, mini, channels_last):
    """README §9 tolerances against the C Darknet, for every layer and the final output."""
    name, net, _ = mini
    fused = fuse_for_inference(net, channels_last=channels_last)
    expected = np.load(reference / "forward" / name / "dog" / "layers.npz")
    with torch.inference_mode():
        outputs = fused.forward_layers(network_input(reference, "dog", MINI_NETS[name]))
    for index, output in enumerate(outputs):
        key = f"layer_{index:03d}"
        if key in expected:
            assert_layer_close(output[0].numpy().reshape(expected[key].shape), expected[key], f"fused {name} {key}")
    final = outputs[-1][0].numpy()
    if is_classifier(name):
        np.testing.assert_allclose(final.ravel(), np.load(reference / "forward" / name / "dog" / "softmax.npy"),
                                   atol=1e-5, rtol=0)
    else:
        assert_layer_close(final, np.load(reference / "forward" / name / "dog" / "region.npy"), f"fused {name} region")


@pytest.mark.parametrize("channels_last", [True, False])
def test_fused_layer_equals_unfused_layer_on_the_same_input(reference, mini, channels_last):
    """Each fused layer, fed the unfused net's input to it, agrees within 1e-5 of the layer's max.

    End to end the nets differ a little more (up to 1.4e-5 of the max in mini-yolov2-voc's last
    layers), since any rounding difference grows through ~20 layers; the same growth separates a
    PyTorch float32 model from Darknet (reference README §10).
    """
    name, net, unfused_outputs = mini
    fused = fuse_for_inference(net, channels_last=channels_last)
    x = network_input(reference, "dog", MINI_NETS[name])
    with torch.inference_mode():
        for index, layer in enumerate(fused.layers):
            inputs = [x if source < 0 else unfused_outputs[source] for source in net.info[index].sources]
            if channels_last:
                inputs = [t.contiguous(memory_format=torch.channels_last) for t in inputs]
            actual, expected = layer(*inputs), unfused_outputs[index]
            scale = expected.abs().max().item()
            assert (actual - expected).abs().max().item() <= SAME_INPUT_REL * scale, f"{name} layer {index}"


def test_fusing_leaves_the_original_net_alone(mini):
    name, net, _ = mini
    fused = fuse_for_inference(net)
    assert net.training is False and fused.training is False
    batch_norms = [layer for layer in net.layers if getattr(layer, "bn", None) is not None]
    assert batch_norms, name
    assert all(getattr(layer, "bn", None) is None for layer in fused.layers)
    assert any(isinstance(layer, FusedConvolutionalLayer) for layer in fused.layers)
    assert not any(p.requires_grad for p in fused.parameters())
    assert all(p.requires_grad for p in net.parameters())
    assert all(p.is_contiguous() for p in net.parameters())   # channels_last went to the copy only


def test_fused_net_refuses_weights_io_and_training(mini, tmp_path):
    _, net, _ = mini
    fused = fuse_for_inference(net)
    with pytest.raises(FusedNetworkError, match="fused for inference"):
        save_weights(fused, tmp_path / "fused.weights")
    assert not (tmp_path / "fused.weights").exists()
    save_weights(net, tmp_path / "unfused.weights")
    with pytest.raises(FusedNetworkError, match="fused for inference"):
        load_weights(fused, tmp_path / "unfused.weights")
    with pytest.raises(FusedNetworkError, match="cannot be trained"):
        fused.train()
    fused.eval()   # eval stays allowed


def test_channels_last_fused_net_returns_a_contiguous_region(reference):
    net = fuse_for_inference(mini_network(reference, "mini-yolov2-voc"))
    with torch.inference_mode():
        output = net(network_input(reference, "dog", MINI_NETS["mini-yolov2-voc"]))
    assert output.shape == (1, 5, 25, 13, 13) and output.is_contiguous()
    assert net.region is not None


def test_in_place_fusion_folds_the_net_itself_to_the_same_floats(reference):
    x = network_input(reference, "dog", MINI_NETS["mini-yolov2-voc"])
    copied = fuse_for_inference(mini_network(reference, "mini-yolov2-voc"))
    net = mini_network(reference, "mini-yolov2-voc")
    assert fuse_for_inference(net, in_place=True) is net
    assert all(getattr(layer, "bn", None) is None for layer in net.layers)
    with torch.inference_mode():
        assert torch.equal(net(x), copied(x))
