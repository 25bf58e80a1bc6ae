"""The YOLOv1 recordings of pjreddie's Darknet (tests/fixtures/yolov1/README.md): the mini net and its weights."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pydarknet.layers.conv import ConnectedLayer
from pydarknet.layers.local import LocalLayer
from pydarknet.network import Darknet
from pydarknet.weights import save_weights

FIXTURES = Path(__file__).parent / "fixtures" / "yolov1"
MINI_CFG = FIXTURES / "mini-yolov1.cfg"
IMAGES = ("dog", "eagle", "giraffe", "horses", "person", "scream")   # pjreddie's data/*.jpg shipped in data/
WEIGHTS_SEED = 1
# DARKNET(batchnorm_layer.c:normalize_cpu) divides by sqrt(var) + 1e-6, pydarknet by sqrt(var + 1e-5) (the GPU
# build's): both agree to first order at var = 25, so variances near it keep the CPU recordings' probabilities
# within a few ulps instead of 4e-5 smaller (which flips a printed percentage now and then)
BN_VARIANCE = 25
CONNECTED_SCALE = 0.3   # outputs ~0.5: tens of boxes above yolo test's .2 per photo, not hundreds


def write_mini_weights(path: str | Path, seed: int = WEIGHTS_SEED) -> Path:
    """Write the recordings' weights for MINI_CFG: numpy's legacy RandomState (stable across versions) fills
    each layer's `darknet_tensors()` in file order, weights uniform with the variance 2/fan_in (the
    [connected] one's scaled by CONNECTED_SCALE), biases, means small,
    variances in [20, 30] and BN scales near their square root."""
    net = Darknet.from_cfg(MINI_CFG, seed=0)
    state = np.random.RandomState(seed)
    with torch.no_grad():
        for layer in net.layers:
            trained = layer.trained_tensors()
            variance = getattr(getattr(layer, "bn", None), "running_var", None)
            for tensor in layer.darknet_tensors():
                if tensor is variance:
                    values = state.uniform(BN_VARIANCE - 5, BN_VARIANCE + 5, tensor.numel())
                elif tensor is trained.get("weights"):
                    # a row of one output: conv (n, c, k, k), connected (n, inputs), local (L, n, c*k*k)
                    fan_in = tensor.shape[-1] if isinstance(layer, LocalLayer) else tensor[0].numel()
                    values = state.uniform(-1, 1, tensor.numel()) * np.sqrt(6.0 / fan_in)
                    if isinstance(layer, ConnectedLayer):
                        values *= CONNECTED_SCALE
                else:
                    values = state.uniform(-0.1, 0.1, tensor.numel())
                    if tensor is trained.get("scales"):
                        values = BN_VARIANCE ** 0.5 * (1 + values)
                tensor.copy_(torch.from_numpy(values.astype(np.float32)).view(tensor.shape))
    save_weights(net, path)
    return Path(path)
