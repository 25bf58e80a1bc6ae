"""The YOLOv2 `[region]` layer: activations in Darknet's memory layout `[B][n][entry][h][w]`."""
from __future__ import annotations

import torch
from torch import Tensor

from ..cfg import Section, resolve_path
from ..options import RegionOptions
from ..registry import BuildContext, Shape, register
from .base import DarknetLayer

__all__ = ["RegionLayer", "RegionOptions", "YoloLayer"]


class RegionLayer(DarknetLayer):
    """Activations of the YOLOv2 region layer, as DARKNET(region_layer.c:forward_region_layer_gpu).

    Shapes: raw conv output (B, num*(coords+1+classes), H, W) -> (B, num, coords+1+classes, H, W),
    which is Darknet's memory layout `[b][n][entry][y][x]`. Entries 0, 1 (x, y) and 4 (objectness)
    get the logistic, 2, 3 (w, h) stay raw, the classes get a softmax over the classes, a WordTree
    group softmax (`tree=`), or the logistic when neither is asked for.
    """

    def __init__(self, options: RegionOptions, tree=None, class_map: Tensor | None = None):
        super().__init__()
        self.options = options
        self.tree = tree
        self.register_buffer("anchors", torch.tensor(options.anchors, dtype=torch.float32).view(-1, 2),
                             persistent=False)
        self.register_buffer("class_map", class_map, persistent=False)

    @property
    def num(self) -> int:
        return self.options.num

    def forward(self, x: Tensor) -> Tensor:
        o = self.options
        b, _, h, w = x.shape
        x = x.reshape(b, o.num, o.coords + 1 + o.classes, h, w)  # reshape: the input may be channels_last
        xy = torch.sigmoid(x[:, :, :2])
        wh = x[:, :, 2:4]
        # DARKNET(region_layer.c:forward_region_layer_gpu): coords beyond 4 and objectness get the logistic
        extra_and_obj = torch.sigmoid(x[:, :, 4:o.coords + 1])
        classes = x[:, :, o.coords + 1:]
        if self.tree is not None:
            classes = self.tree.softmax(classes, dim=2)
        elif o.softmax:
            classes = classes.softmax(dim=2)
        else:
            classes = torch.sigmoid(classes)
        return torch.cat((xy, wh, extra_and_obj, classes), dim=2)


def _default_anchors(anchors: list[float], num: int) -> list[float]:
    # DARKNET(region_layer.c:make_region_layer): anchors default to .5; extra numbers are ignored
    return anchors[:2 * num] if anchors else [0.5] * (2 * num)


@register("region")
def build_region(s: Section, ctx: BuildContext) -> tuple[RegionLayer, Shape]:
    shape = ctx.input_shape
    options = RegionOptions.from_section(s)
    expected = options.num * (options.coords + 1 + options.classes)
    if shape.c != expected:
        raise s.error(f"input has {shape.c} channels, but num*(coords+1+classes) = {expected}: "
                      f"the conv layer before [region] needs filters={expected}")
    options.anchors = _default_anchors(options.anchors, options.num)
    tree = class_map = None
    if s.has("tree"):
        from ..tree import WordTree
        options.tree = str(resolve_path(s.get_str("tree"), ctx.cfg_path))
        tree = WordTree.read(options.tree)
        if tree.n != options.classes:
            raise s.error(f"tree {options.tree} has {tree.n} nodes, classes={options.classes}", "tree")
    if s.has("map"):
        from ..tree import read_map
        options.map = str(resolve_path(s.get_str("map"), ctx.cfg_path))
        class_map = torch.as_tensor(read_map(options.map), dtype=torch.long)
    return RegionLayer(options, tree, class_map), shape


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
    return YoloLayer(classes, mask if mask is not None else list(range(total)), _default_anchors(anchors, total)), shape
