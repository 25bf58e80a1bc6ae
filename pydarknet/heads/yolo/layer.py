"""YOLOv3's `[yolo]` layer (and AlexeyAB's YOLOv4/v7 keys): activations in Darknet's memory layout `[B][n][entry][h][w]`."""
from __future__ import annotations

import torch
from torch import Tensor

from ...cfg import Section
from ...layers.base import DarknetLayer
from ...options import YoloOptions
from ...registry import BuildContext, Shape, register
from ..region.layer import default_anchors

__all__ = ["YoloLayer", "build_yolo"]


class YoloLayer(DarknetLayer):
    """The `[yolo]` activations, DARKNET(AlexeyAB yolo_layer.c:forward_yolo_layer), CPU build.

    `new_coords=0`: logistic on x, y, objectness and classes, w and h raw; `new_coords=1` (YOLOv7): no activation
    here (the conv before it has `activation=logistic`). Then x, y <- x·scale_x_y − (scale_x_y − 1)/2.
    Shapes: (B, n·(5+classes), H, W) -> (B, n, 5+classes, H, W), n = len(mask).
    `anchors` holds ALL `num` anchors, (num, 2) in pixels of the net input; `mask` picks this layer's.
    """

    outputs_detections = True

    def __init__(self, classes: int, mask: list[int], anchors: list[float], options: YoloOptions | None = None):
        super().__init__()
        self.classes, self.mask = classes, mask
        self.options = options if options is not None else YoloOptions(classes=classes, num=len(anchors) // 2,
                                                                       mask=list(mask), anchors=list(anchors))
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(-1, 2), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        x = x.reshape(b, len(self.mask), 5 + self.classes, h, w)
        xy, wh, rest = x[:, :, :2], x[:, :, 2:4], x[:, :, 4:]
        if not self.options.new_coords:
            xy, rest = torch.sigmoid(xy), torch.sigmoid(rest)
        scale = self.options.scale_x_y
        if scale != 1:   # x·1 + (−0) is x: the CPU build's no-op (its GPU build skips it)
            # DARKNET(AlexeyAB yolo_layer.c:forward_yolo_layer): scal_add_cpu(scale, -0.5*(scale-1)) on x, y
            xy = xy * scale + (-0.5 * (scale - 1))
        return torch.cat((xy, wh, rest), dim=2)

    def extra_repr(self) -> str:
        o = self.options
        return f"classes={self.classes}, mask={self.mask}, scale_x_y={o.scale_x_y}, new_coords={o.new_coords}"

    def summary_line(self, net, index: int, before: Shape) -> str:
        return "yolo"   # DARKNET(yolo_layer.c:make_yolo_layer)


@register("yolo")
def build_yolo(s: Section, ctx: BuildContext) -> tuple[YoloLayer, Shape]:
    shape = ctx.input_shape
    options = YoloOptions.from_section(s)
    mask = options.used_mask
    expected = len(mask) * (5 + options.classes)
    if shape.c != expected:
        raise s.error(f"input has {shape.c} channels, but len(mask)*(5+classes) = {expected}")
    ctx.reserve(s, 2 * options.num, f"num={options.num} anchors", "num")
    # DARKNET(yolo_layer.c:make_yolo_layer): anchors default to .5; extra numbers are ignored
    anchors = default_anchors(options.anchors, options.num)
    return YoloLayer(options.classes, mask, anchors, options), shape
