"""The YOLOv1 `[detection]` layer: its output is its input, in Darknet's flat memory layout.

DARKNET(detection_layer.c:get_detection_detections) reads one image's `side*side*((1+coords)*num + classes)`
values as three blocks, cell i = row*side + col:
    [side*side][classes]    P(class | object) of every cell,
    [side*side][num]        the confidence of each of the cell's `num` boxes,
    [side*side][num][4]     each box's x, y (offsets in the cell), w, h (or their square roots, `sqrt=1`).
`split_output` cuts an output into these blocks.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ...cfg import Section
from ...layers.base import DarknetLayer
from ...options import DetectionOptions
from ...registry import BuildContext, Shape, register

if TYPE_CHECKING:
    from ...network import Darknet

__all__ = ["DetectionLayer", "DetectionOptions", "build_detection", "split_output"]


class DetectionLayer(DarknetLayer):
    """DARKNET(detection_layer.c:forward_detection_layer) at test time: a copy of its input, with, if `softmax`,
    a softmax over the classes of each cell.

    Shapes: (B, outputs, 1, 1) or (B, outputs) -> (B, outputs), Darknet's memory layout (module docstring).
    DARKNET(detection_layer.c:forward_detection_layer_gpu): the GPU build skips the softmax outside training;
    the CPU build's softmax is followed here (YOLOv1's cfgs have softmax=0, where both agree).
    """

    outputs_detections = True

    def __init__(self, options: DetectionOptions):
        super().__init__()
        self.options = options

    @property
    def classes(self) -> int:
        return self.options.classes

    def forward(self, x: Tensor) -> Tensor:
        o = self.options
        flat = x.reshape(x.shape[0], -1)   # reshape: the input may be channels_last
        if not o.softmax:
            return flat
        cells = o.side * o.side
        probs = flat[:, :cells * o.classes].reshape(-1, cells, o.classes).softmax(dim=2)  # [B, S*S, C]
        return torch.cat((probs.flatten(1), flat[:, cells * o.classes:]), dim=1)

    def extra_repr(self) -> str:
        o = self.options
        return f"classes={o.classes}, side={o.side}, num={o.num}, sqrt={o.sqrt}, softmax={o.softmax}"

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return "Detection Layer"   # DARKNET(detection_layer.c:make_detection_layer)


def split_output(output: Tensor, options: DetectionOptions) -> tuple[Tensor, Tensor, Tensor]:
    """(..., outputs) [detection] output -> P(class | object) (..., S*S, C), confidences (..., S*S, num) and raw
    boxes (..., S*S, num, 4), cell i = row*side + col (see the module docstring)."""
    o = options
    cells = o.side * o.side
    if output.shape[-1] != o.outputs:
        raise ValueError(f"[detection] output must have side*side*((1+coords)*num + classes) = {o.outputs} values "
                         f"per image, got shape {tuple(output.shape)}")
    lead = output.shape[:-1]
    probs = output[..., :cells * o.classes].reshape(*lead, cells, o.classes)
    confidences = output[..., cells * o.classes:cells * (o.classes + o.num)].reshape(*lead, cells, o.num)
    boxes = output[..., cells * (o.classes + o.num):].reshape(*lead, cells, o.num, o.coords)
    return probs, confidences, boxes


@register("detection")
def build_detection(s: Section, ctx: BuildContext) -> tuple[DetectionLayer, Shape]:
    shape = ctx.input_shape
    options = DetectionOptions.from_section(s)
    # DARKNET(detection_layer.c:make_detection_layer): assert(side*side*((1 + coords)*n + classes) == inputs)
    if shape.size != options.outputs:
        raise s.error(f"input has {shape.size} values, but side*side*((1+coords)*num+classes) = {options.outputs}: "
                      f"the layer before [detection] needs output={options.outputs}")
    ctx.reserve(s, options.outputs, "its output")
    return DetectionLayer(options), Shape(options.outputs, 1, 1)
