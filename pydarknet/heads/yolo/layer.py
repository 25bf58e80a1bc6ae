"""YOLOv3's `[yolo]` layer: activations in Darknet's memory layout `[B][n][entry][h][w]`."""
from __future__ import annotations

import torch
from torch import Tensor

from ...cfg import Section
from ...layers.base import DarknetLayer
from ...registry import BuildContext, Shape, register
from ..region.layer import default_anchors

__all__ = ["YoloLayer", "build_yolo"]


class YoloLayer(DarknetLayer):
    """YOLOv3's `[yolo]` activations (DARKNET(yolo_layer.c:forward_yolo_layer)): logistic on x, y,
    objectness and classes, w and h raw. Shapes: (B, n*(5+classes), H, W) -> (B, n, 5+classes, H, W)."""

    def __init__(self, classes: int, mask: list[int], anchors: list[float]):
        super().__init__()
        self.classes, self.mask = classes, mask
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(-1, 2), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        x = x.reshape(b, len(self.mask), 5 + self.classes, h, w)
        return torch.cat((torch.sigmoid(x[:, :, :2]), x[:, :, 2:4], torch.sigmoid(x[:, :, 4:])), dim=2)

    outputs_detections = True

    def summary_line(self, net, index: int, before: Shape) -> str:
        return "yolo"   # DARKNET(yolo_layer.c:make_yolo_layer)


@register("yolo")
def build_yolo(s: Section, ctx: BuildContext) -> tuple[YoloLayer, Shape]:
    shape = ctx.input_shape
    classes = s.get_int("classes", 20, minimum=0)
    total = s.get_int("num", 1, minimum=1)
    mask = s.get_ints("mask", None, minimum=0, maximum=total - 1)
    used = len(mask) if mask is not None else total   # DARKNET(parser.c:parse_yolo): no mask = every anchor
    expected = used * (5 + classes)
    if shape.c != expected:
        raise s.error(f"input has {shape.c} channels, but len(mask)*(5+classes) = {expected}")
    anchors = s.get_floats("anchors", [])
    if anchors and len(anchors) < 2 * total:
        raise s.error(f"anchors lists {len(anchors)} numbers, need 2*num = {2 * total}", "anchors")
    ctx.reserve(s, 2 * total, f"num={total} anchors", "num")
    for key in ("jitter", "ignore_thresh", "truth_thresh"):
        s.get_float(key, 0)
    for key in ("random", "max"):
        s.get_int(key, 0)
    s.get_str("map", "")
    return YoloLayer(classes, mask if mask is not None else list(range(total)), default_anchors(anchors, total)), shape
