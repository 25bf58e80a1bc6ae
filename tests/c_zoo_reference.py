"""The mini nets of the shipped YOLOv3 cfgs recorded against the C programs (tests/fixtures/c_zoo/README.md).

`mini_cfg_text` derives a mini cfg from a shipped one (reference-yolo README §1's rule), `write_mini_weights`
writes its random weights: `Darknet.from_cfg(cfg, seed)`, batch norm statistics measured on the photos and
rounded to a coarse grid (so the file does not depend on the last bits of a convolution), and the convs that
feed a [yolo] scaled and biased (reference-yolo README §3) so that only a few boxes pass .25.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from pydarknet.image import load_image, network_input
from pydarknet.network import Darknet
from pydarknet.weights import save_weights

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "c_zoo"
IMAGES = ("dog", "eagle", "giraffe", "horses", "person")        # data/*.jpg, pjreddie's photos
CALIBRATION = (*IMAGES, "scream")
FILTER_DIVISOR = 8
NET_SIZE = 416
# cfg -> (seed, weight std times sqrt(fan_in), objectness bias, class bias) of the convs feeding a [yolo]
MINI_NETS = {"yolov3": (3, 0.43, -3.0, -2.0), "yolov3-tiny": (33, 1.0, -3.5, -2.5)}


def mini_cfg_text(text: str) -> str:
    """Every `[convolutional]` `filters=` divided by FILTER_DIVISOR, except in the convs directly before a [yolo];
    the [net] at NET_SIZE x NET_SIZE (yolov3.cfg's 608 too)."""
    blocks = re.split(r"(?m)^(?=\[)", text)
    for i, block in enumerate(blocks):
        if block.startswith("[net]"):
            blocks[i] = re.sub(r"(?m)^(width|height)=\d+", rf"\1={NET_SIZE}", block)
        feeds_yolo = i + 1 < len(blocks) and blocks[i + 1].startswith("[yolo]")
        if block.startswith("[convolutional]") and not feeds_yolo:
            blocks[i] = re.sub(r"(?m)^(filters\s*=\s*)(\d+)",
                               lambda m: f"{m.group(1)}{int(m.group(2)) // FILTER_DIVISOR}", block)
    return "".join(blocks)


def mini_cfg(name: str) -> Path:
    return FIXTURES / f"mini-{name}.cfg"


def _round_to_grid(values: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    return torch.round(values.double() / step) * step


def write_mini_weights(name: str, path: str | Path) -> Path:
    seed, gain, objectness_bias, class_bias = MINI_NETS[name]
    net = Darknet.from_cfg(mini_cfg(name), seed=seed)
    photos = [network_input(load_image(REPO / "data" / f"{image}.jpg"), net.width, net.height)
              for image in CALIBRATION]
    batch_norms = [layer.bn for layer in net.layers if getattr(layer, "bn", None) is not None]
    with torch.no_grad():
        for bn in batch_norms:
            bn.momentum = 1.0   # the rolling statistics become this batch's (unbiased variance)
        net.train()(torch.from_numpy(np.stack(photos)))
        for bn in batch_norms:
            # a quarter-octave grid for the variance, an eighth of the deviation for the mean
            variance = torch.exp2(torch.round(4 * torch.log2(bn.running_var.double())) / 4)
            bn.running_mean.copy_(_round_to_grid(bn.running_mean, variance.sqrt() / 8))
            bn.running_var.copy_(variance)
        for index, layer in enumerate(net.layers[:-1]):
            yolo = net.layers[index + 1]
            if type(yolo).__name__ != "YoloLayer":
                continue
            layer.op.weight.mul_(gain / 2 ** 0.5)                # from_cfg's std is sqrt(2/fan_in)
            biases = layer.biases().view(len(yolo.mask), 5 + yolo.classes)
            biases[:, 4] = objectness_bias
            biases[:, 5:] = class_bias
    save_weights(net.eval(), path)
    return Path(path)
