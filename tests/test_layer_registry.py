"""Every registered section name builds a layer that owns its table line, its weights and its trained tensors.

Parametrised over `pydarknet.registry.registered()` (as timm's tests run over `list_models()`), so a newly
registered layer type is tested without anyone remembering to: it needs an entry in `EXAMPLES`, a
`summary_line`, `darknet_tensors` that round-trip through a `.weights` file, and `trained_tensors` that
name every parameter it has and that one optimizer step changes.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

import pydarknet.network  # noqa: F401  (imports every layer module, so every builder is registered)
from pydarknet.cfg import parse_cfg_text
from pydarknet.engine.sgd import DarknetSGD
from pydarknet.layers.base import DarknetLayer
from pydarknet.network import Darknet
from pydarknet.registry import builder_for, registered
from pydarknet.summary import HEADER, layer_table
from pydarknet.weights import load_weights, save_weights

NET = "[net]\nwidth=8\nheight=8\nchannels=4\nbatch=2\nlearning_rate=0.1\n\n"
# canonical section name -> (the layers it needs before it, its own options); the layer under test is the last
EXAMPLES = {
    "convolutional": ("", "batch_normalize=1\nfilters=4\nsize=3\npad=1\nactivation=leaky"),
    "connected": ("", "output=5\nactivation=leaky"),
    "maxpool": ("", "size=2\nstride=2"),
    "avgpool": ("", ""),
    "softmax": ("", "groups=2"),
    "cost": ("[softmax]\n", "type=sse"),
    "route": ("[convolutional]\nfilters=2\nsize=1\n", "layers=-1,0"),
    "reorg": ("", "stride=2"),
    "shortcut": ("[convolutional]\nfilters=4\nsize=1\n", "from=-1\nactivation=leaky"),
    "upsample": ("", "stride=2"),
    "dropout": ("", "probability=0.5"),
    "local": ("", "filters=3\nsize=3\nstride=1\npad=1\nactivation=leaky"),
    # side*side*((1+coords)*num + classes) = 2*2*((1+4)*1 + 2) values in
    "detection": ("[connected]\noutput=28\nactivation=linear\n", "classes=2\ncoords=4\nside=2\nnum=1\nsqrt=1"),
    # num*(coords+1+classes) = 2*(4+1+2) channels in
    "region": ("[convolutional]\nfilters=14\nsize=1\nactivation=linear\n",
               "anchors=1,1,2,2\nclasses=2\nnum=2\nsoftmax=1"),
    # len(mask)*(5+classes) = 2*(5+2) channels in
    "yolo": ("[convolutional]\nfilters=14\nsize=1\nactivation=linear\n",
             "mask=0,1\nanchors=1,1,2,2,3,3\nclasses=2\nnum=3"),
    # AlexeyAB's sections
    "scale_channels": ("[convolutional]\nfilters=4\nsize=1\n[avgpool]\n", "from=-2\nactivation=logistic"),
    "sam": ("[convolutional]\nfilters=4\nsize=1\n[convolutional]\nfilters=4\nsize=1\nactivation=logistic\n",
            "from=-2"),
    "implicit": ("", "filters=6\natoms=2"),
    "batchnorm": ("", ""),
    "activation": ("", "activation=mish"),
    "empty": ("", ""),
    "crop": ("", "crop_height=6\ncrop_width=5\nflip=1"),
    "local_avgpool": ("", "size=3\nstride=2"),
    "reorg3d": ("", "stride=2"),
    # len(mask)*(9+classes) = 2*(9+2) channels in
    "Gaussian_yolo": ("[convolutional]\nfilters=22\nsize=1\nactivation=linear\n",
                      "mask=0,1\nanchors=1,1,2,2,3,3\nclasses=2\nnum=3"),
}
DARKNET_NAMES = {"weights", "biases", "scales"}


def _builder(name: str):
    return builder_for(parse_cfg_text(f"[{name}]\n")[0])


def example_cfg(name: str) -> str:
    """A tiny valid cfg whose last section is `[name]` (an alias is written as the alias)."""
    canonical = next((known for known in EXAMPLES if _builder(known) is _builder(name)), None)
    if canonical is None:
        pytest.fail(f"[{name}] is registered but has no example: add one to EXAMPLES in {__file__}")
    before, options = EXAMPLES[canonical]
    return f"{NET}{before}\n[{name}]\n{options}\n"


def build(name: str, seed: int) -> Darknet:
    net = Darknet(parse_cfg_text(example_cfg(name)))
    net.reset_parameters(seed)
    return net


def _holds(tensors, tensor: Tensor) -> bool:
    return any(t is tensor for t in tensors)


def images(net: Darknet, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((net.options.batch, net.channels, net.height, net.width), generator=generator)


SECTIONS = registered()


def test_the_registry_is_populated():
    assert {"convolutional", "maxpool", "region", "yolo"} <= set(SECTIONS)


@pytest.mark.parametrize("name", SECTIONS)
def test_layer_table_has_a_line_per_layer(name):
    net = build(name, seed=1)
    table = layer_table(net)
    assert table[0] == HEADER
    assert len(table) == 1 + len(net.layers)
    for index, line in enumerate(table[1:]):
        assert line.startswith(f"{index:5d} ") and line[6:].strip(), line


@pytest.mark.parametrize("name", SECTIONS)
def test_weights_round_trip(name, tmp_path):
    net = build(name, seed=1)
    with torch.no_grad():   # values unlike a fresh net's (whose biases and BN statistics are 0 and 1)
        generator = torch.Generator().manual_seed(2)
        for layer in net.layers:
            for tensor in layer.darknet_tensors():
                tensor.copy_(0.5 + torch.rand(tensor.shape, generator=generator))
    path = tmp_path / f"{name}.weights"
    save_weights(net, path)
    loaded = build(name, seed=3)
    load_weights(loaded, path)
    for index, (saved_layer, loaded_layer) in enumerate(zip(net.layers, loaded.layers)):
        saved, read = saved_layer.darknet_tensors(), loaded_layer.darknet_tensors()
        assert len(saved) == len(read), index
        for position, (a, b) in enumerate(zip(saved, read)):
            assert torch.equal(a, b), f"layer {index} tensor {position}"


@pytest.mark.parametrize("name", SECTIONS)
def test_trained_tensors_are_the_parameters_and_one_step_changes_them(name):
    net = build(name, seed=1)
    layer = net.layers[-1]
    trained = layer.trained_tensors()
    kind = type(layer).__name__
    assert set(trained) <= DARKNET_NAMES
    # every parameter is trained (a weighted type that forgot trained_tensors would silently not train) ...
    untrained = [key for key, p in layer.named_parameters() if not _holds(trained.values(), p)]
    assert not untrained, f"{kind}.trained_tensors() leaves out its parameters {untrained}: they would never train"
    assert all(_holds(layer.parameters(), t) for t in trained.values()), f"{kind}: trains a tensor it does not own"
    # ... and saved (a trained tensor missing from darknet_tensors would not reach the .weights file)
    unsaved = [key for key, t in trained.items() if not _holds(layer.darknet_tensors(), t)]
    assert not unsaved, f"{kind}.darknet_tensors() leaves out the trained {unsaved}: they would not be saved"
    if not trained:
        return
    before = {key: tensor.detach().clone() for key, tensor in trained.items()}
    optimizer = DarknetSGD(net)
    net.train()
    output = net(images(net))
    weighting = torch.randn(output.shape, generator=torch.Generator().manual_seed(4))
    (output.float() * weighting).sum().backward()   # random weights: a plain sum cancels under batch norm
    optimizer.step()
    for key, tensor in trained.items():
        assert not torch.equal(tensor.detach(), before[key]), f"{key} did not change"


def test_a_layer_without_summary_line_fails_the_table():
    class Unlisted(DarknetLayer):
        def forward(self, x: Tensor) -> Tensor:
            return x

    net = build("maxpool", seed=1)
    net.layers[0] = Unlisted()
    with pytest.raises(NotImplementedError, match="Unlisted has no summary_line"):
        layer_table(net)
