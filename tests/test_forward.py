"""Inference parity with the C Darknet: every layer of the mini nets, stats of the full-size nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reference import (FULL_NETS, MINI_NETS, assert_layer_close, full_network, images_for, is_classifier,
                       mini_network, network_input, read_json)


@pytest.fixture(scope="module")
def weights_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("weights")


@pytest.mark.parametrize("name", MINI_NETS)
def test_mini_net_every_layer_matches_darknet(reference, name):
    net = mini_network(reference, name)
    expected = np.load(reference / "forward" / name / "dog" / "layers.npz")
    with torch.no_grad():
        outputs = net.forward_layers(network_input(reference, "dog", MINI_NETS[name]))
    compared = 0
    for index, output in enumerate(outputs):
        key = f"layer_{index:03d}"
        if key in expected:
            assert_layer_close(output[0].numpy().reshape(expected[key].shape), expected[key], f"{name} {key}")
            compared += 1
    assert compared == len(outputs) - (0 if is_classifier(name) else 1)


@pytest.mark.parametrize("name", MINI_NETS)
def test_mini_net_output_matches_darknet_on_every_image(reference, name):
    net = mini_network(reference, name)
    for image in images_for(name):
        folder = reference / "forward" / name / image
        with torch.no_grad():
            output = net(network_input(reference, image, MINI_NETS[name]))[0].numpy()
        if is_classifier(name):
            np.testing.assert_allclose(output.ravel(), np.load(folder / "softmax.npy"), atol=1e-5, rtol=0)
        else:
            assert_layer_close(output, np.load(folder / "region.npy"), f"{name}/{image} region")


def _assert_stats_close(stats: dict, output: np.ndarray, what: str) -> None:
    """README §9: relative 1e-3 on sum/absmean, abs 1e-3 on first16."""
    flat = output.astype(np.float64).ravel()
    assert list(output.shape) == stats["shape"] or output.size == np.prod(stats["shape"]), what
    scale = max(abs(stats["sum"]), stats["absmean"] * flat.size)
    assert abs(flat.sum() - stats["sum"]) <= 1e-3 * scale, f"{what}: sum {flat.sum()} vs {stats['sum']}"
    assert abs(np.abs(flat).mean() - stats["absmean"]) <= 1e-3 * stats["absmean"], f"{what}: absmean"
    np.testing.assert_allclose(flat[:16], stats["first16"], atol=1e-3, rtol=0, err_msg=f"{what}: first16")


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL_NETS)
def test_full_size_net_matches_darknet(reference, weights_cache, name):
    net = full_network(reference, name, weights_cache)
    for image in images_for(name):
        folder = reference / "forward" / name / image
        with torch.no_grad():
            outputs = net.forward_layers(network_input(reference, image, FULL_NETS[name]))
        for stats in read_json(folder / "layers_stats.json"):
            _assert_stats_close(stats, outputs[stats["index"]][0].numpy(), f"{name}/{image} layer {stats['index']}")
        final = outputs[-1][0].numpy()
        if is_classifier(name):
            np.testing.assert_allclose(final.ravel(), np.load(folder / "softmax.npy"), atol=1e-5, rtol=0)
        elif (folder / "region.npy").exists():
            _assert_region_close(final, np.load(folder / "region.npy"), f"{name}/{image}")
        else:
            _assert_region_subset_close(final, np.load(folder / "region_subset.npz"), f"{name}/{image}")


def _assert_region_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    """README §9: abs 1e-3 on probabilities (entries 0, 1, 4, 5..), rel 1e-3 on raw tw/th."""
    probabilities = np.r_[0, 1, 4:expected.shape[1]]
    np.testing.assert_allclose(actual[:, probabilities], expected[:, probabilities], atol=1e-3, rtol=0,
                               err_msg=what)
    raw = slice(2, 4)
    assert np.abs(actual[:, raw] - expected[:, raw]).max() <= 1e-3 * np.abs(expected[:, raw]).max(), what


def _assert_region_subset_close(actual: np.ndarray, subset, what: str) -> None:
    np.testing.assert_allclose(actual[:, [0, 1, 4]], subset["coords_obj"][:, [0, 1, 4]], atol=1e-3, rtol=0,
                               err_msg=what)
    raw = subset["coords_obj"][:, 2:4]
    assert np.abs(actual[:, 2:4] - raw).max() <= 1e-3 * np.abs(raw).max(), what
    anchor, y, x = subset["cells"].T
    np.testing.assert_allclose(actual[anchor, 5:, y, x], subset["class_vectors"], atol=1e-3, rtol=0,
                               err_msg=what)
