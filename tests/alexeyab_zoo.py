"""Mini variants of the AlexeyAB cfgs in cfg/ and their random weights (tests/fixtures/alexeyab_zoo/README.md).

`mini_cfg_text` is the reference pack's rule (every `[convolutional] filters=` divided by 8 except the conv feeding a
detection layer; a smaller `[net]` width/height for the big nets); `make_weights` writes pydarknet's initialisation
from a seed, with batch-norm statistics from one float64 training-mode forward of the five photos and the detection
convs' biases lowered so that only a few boxes pass, as in the pack (README §3).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pydarknet.heads.yolo.gaussian import ENTRIES as GAUSSIAN_ENTRIES
from pydarknet.heads.yolo.gaussian import GaussianYoloLayer
from pydarknet.heads.yolo.layer import YoloLayer
from pydarknet.image import load_image, network_input
from pydarknet.layers.conv import ConvolutionalLayer
from pydarknet.network import Darknet
from pydarknet.weights import save_weights

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "alexeyab_zoo"
PHOTOS = ("dog", "eagle", "giraffe", "horses", "person")   # data/<name>.jpg, identical to AlexeyAB's data/
DETECTION_SECTIONS = ("yolo", "Gaussian_yolo")
FILTER_DIVISOR = 8
_SECTION = re.compile(r"^\s*\[([^\]]+)\]")
_FILTERS = re.compile(r"^(\s*filters\s*=\s*)(\d+)(.*)$")
_SIZE = re.compile(r"^(\s*(?:width|height)\s*=\s*)(\d+)(.*)$")


def mini_cfg_text(text: str, size: int | None = None) -> str:
    """`text` with every [convolutional] `filters=` divided by 8 except where the next section is a detection layer,
    and, when `size` is given, [net] width and height set to it; every other line unchanged."""
    lines = text.split("\n")
    kinds = [(i, m.group(1)) for i, line in enumerate(lines) if (m := _SECTION.match(line))]
    for number, (start, kind) in enumerate(kinds):
        end = kinds[number + 1][0] if number + 1 < len(kinds) else len(lines)
        following = kinds[number + 1][1] if number + 1 < len(kinds) else None
        for i in range(start + 1, end):
            if kind in ("convolutional", "conv") and following not in DETECTION_SECTIONS:
                lines[i] = _FILTERS.sub(lambda m: f"{m.group(1)}{int(m.group(2)) // FILTER_DIVISOR}{m.group(3)}",
                                        lines[i])
            elif kind in ("net", "network") and size is not None:
                lines[i] = _SIZE.sub(lambda m: f"{m.group(1)}{size}{m.group(3)}", lines[i])
    return "\n".join(lines)


def photo_batch(width: int, height: int) -> torch.Tensor:
    """The five photos resized (AlexeyAB's `detector test` without letter_box) to the net: (5, 3, height, width)."""
    images = [network_input(load_image(REPO / "data" / f"{name}.jpg"), width, height, letterbox=False)
              for name in PHOTOS]
    return torch.from_numpy(np.stack(images))


def make_weights(cfg: Path, out: Path, seed: int, obj_bias: float, cls_bias: float, gain: float = 1.0) -> Path:
    """Random weights for `cfg` written to `out` (AlexeyAB's revision-5 header).

    Convs: pydarknet's initialisation from `seed`; a conv feeding a detection layer gets std gain/sqrt(fan_in)
    (a gain below 1 keeps the photo with the strongest features from passing everywhere) and biases `obj_bias` on
    every anchor's objectness, `cls_bias` on its classes, 0 elsewhere. Batch norm: rolling mean and (unbiased)
    variance of one float64 training-mode forward of the five photos, rounded to float32, so the nets neither
    explode nor vanish; float64 makes the file the same on any machine (its sha256 is checked).
    """
    net = Darknet.from_cfg(cfg, seed=seed)
    layers = list(net.layers)
    with torch.no_grad():
        for layer, after in zip(layers, layers[1:]):
            if isinstance(layer, ConvolutionalLayer) and isinstance(after, (YoloLayer, GaussianYoloLayer)):
                _lower_detection_biases(layer, after, obj_bias, cls_bias, gain)
        batch_norms = [module for module in net.modules() if isinstance(module, nn.BatchNorm2d)]
        for bn in batch_norms:
            bn.reset_running_stats()
            bn.momentum = 1.0   # the running statistics become this one batch's
        net.double().train()
        net(photo_batch(net.width, net.height).double())
        net.float().eval()
    net.weights_version = (0, 2, 5)
    save_weights(net, out)
    return out


def _lower_detection_biases(conv: ConvolutionalLayer, head: nn.Module, obj_bias: float, cls_bias: float,
                            gain: float) -> None:
    conv.op.weight.mul_(gain * 0.5 ** 0.5)   # He's sqrt(2/fan_in) -> gain/sqrt(fan_in)
    entries = (GAUSSIAN_ENTRIES if isinstance(head, GaussianYoloLayer) else 5) + head.classes
    biases = torch.zeros(len(head.mask), entries)
    biases[:, entries - head.classes - 1] = obj_bias
    biases[:, entries - head.classes:] = cls_bias
    conv.biases().copy_(biases.reshape(-1))
