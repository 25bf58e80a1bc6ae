"""The YOLOv2 `[region]` layer: activations in Darknet's memory layout `[B][n][entry][h][w]`."""
from __future__ import annotations

import torch
from torch import Tensor

from ...cfg import Section, resolve_path
from ...options import RegionOptions
from ...registry import BuildContext, Shape, register
from ...layers.base import DarknetLayer
from .cpu_build import forward_region_cpu_build

__all__ = ["RegionLayer", "RegionOptions", "build_region", "default_anchors"]


class RegionLayer(DarknetLayer):
    """Activations of the YOLOv2 region layer, as DARKNET(region_layer.c:forward_region_layer_gpu).

    Shapes: raw conv output (B, num*(coords+1+classes), H, W) -> (B, num, coords+1+classes, H, W),
    which is Darknet's memory layout `[b][n][entry][y][x]`. Entries 0, 1 (x, y) and 4 (objectness)
    get the logistic, 2, 3 (w, h) stay raw, the classes get a softmax over the classes, a WordTree
    group softmax (`tree=`), or the logistic when neither is asked for.

    `darknet_build` "cpu" (set through `Darknet.darknet_build`): the forward of a stock CPU build,
    `cpu_build.forward_region_cpu_build` (its WordTree softmax is wrong, and reproduced).
    """

    darknet_build = "gpu"

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
        if self.darknet_build == "cpu":
            return forward_region_cpu_build(x, o, self.tree)
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

    outputs_detections = True

    def summary_line(self, net, index: int, before: Shape) -> str:
        return "detection"   # DARKNET(region_layer.c:make_region_layer)


def default_anchors(anchors: list[float], num: int) -> list[float]:
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
    options.anchors = default_anchors(options.anchors, options.num)
    tree = class_map = None
    if s.has("tree"):
        from ...tree import WordTree
        options.tree = str(resolve_path(s.get_str("tree"), ctx.cfg_path))
        tree = WordTree.read(options.tree)
        if tree.n != options.classes:
            raise s.error(f"tree {options.tree} has {tree.n} nodes, classes={options.classes}", "tree")
    if s.has("map"):
        from ...tree import read_map
        options.map = str(resolve_path(s.get_str("map"), ctx.cfg_path))
        class_map = torch.as_tensor(read_map(options.map), dtype=torch.long)
    return RegionLayer(options, tree, class_map), shape
