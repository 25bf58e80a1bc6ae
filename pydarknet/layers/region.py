"""The YOLOv2 `[region]` layer: activations in Darknet's memory layout `[B][n][entry][h][w]`."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..cfg import Section, resolve_path
from ..registry import BuildContext, Shape, register
from .base import DarknetLayer


@dataclass
class RegionOptions:
    """Every `[region]` key, named as in the cfg (DARKNET(parser.c:parse_region) defaults)."""
    anchors: list[float] = field(default_factory=list)   # flat w0,h0,w1,h1,... in grid cells
    classes: int = 20
    coords: int = 4
    num: int = 1
    softmax: int = 0
    jitter: float = 0.2
    rescore: int = 0
    object_scale: float = 1.0
    noobject_scale: float = 1.0
    class_scale: float = 1.0
    coord_scale: float = 1.0
    thresh: float = 0.5
    random: int = 0
    bias_match: int = 0
    absolute: int = 0
    max: int = 30            # DARKNET(parser.c:parse_region): `max` truths per image
    log: int = 0
    sqrt: int = 0
    tree: str | None = None  # path of a WordTree file (resolved)
    map: str | None = None   # path of a class map file (resolved)


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


def _anchor_list(s: Section, num: int) -> list[float]:
    anchors = s.get_floats("anchors", [])
    if anchors and len(anchors) < 2 * num:
        raise s.error(f"anchors lists {len(anchors)} numbers, need 2*num = {2 * num}", "anchors")
    # DARKNET(region_layer.c:make_region_layer): anchors default to .5
    return anchors[:2 * num] if anchors else [0.5] * (2 * num)


@register("region")
def build_region(s: Section, ctx: BuildContext) -> tuple[RegionLayer, Shape]:
    shape = ctx.input_shape
    num = s.get_int("num", 1)
    options = RegionOptions(
        classes=s.get_int("classes", 20), coords=s.get_int("coords", 4), num=num,
        softmax=s.get_int("softmax", 0), jitter=s.get_float("jitter", 0.2), rescore=s.get_int("rescore", 0),
        object_scale=s.get_float("object_scale", 1), noobject_scale=s.get_float("noobject_scale", 1),
        class_scale=s.get_float("class_scale", 1), coord_scale=s.get_float("coord_scale", 1),
        thresh=s.get_float("thresh", 0.5), random=s.get_int("random", 0),
        bias_match=s.get_int("bias_match", 0), absolute=s.get_int("absolute", 0), max=s.get_int("max", 30),
        log=s.get_int("log", 0), sqrt=s.get_int("sqrt", 0), anchors=_anchor_list(s, num))
    s.get_float("mask_scale", 1)
    s.get_int("classfix", 0)
    if options.coords < 4:
        raise s.error(f"coords={options.coords}: the region layer needs at least x, y, w, h", "coords")
    if s.get_int("background", 0):
        raise s.error("background=1 region layers are not supported", "background")
    expected = num * (options.coords + 1 + options.classes)
    if shape.c != expected:
        raise s.error(f"input has {shape.c} channels, but num*(coords+1+classes) = {expected}: "
                      f"the conv layer before [region] needs filters={expected}")
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
    classes = s.get_int("classes", 20)
    total = s.get_int("num", 1)
    mask = s.get_ints("mask", list(range(total)))
    anchors = _anchor_list(s, total)
    if any(not 0 <= m < total for m in mask):
        raise s.error(f"mask {mask} refers to anchors outside 0..{total - 1}", "mask")
    for key in ("jitter", "ignore_thresh", "truth_thresh"):
        s.get_float(key, 0)
    for key in ("random", "max"):
        s.get_int(key, 0)
    s.get_str("map", "")
    expected = len(mask) * (5 + classes)
    if shape.c != expected:
        raise s.error(f"input has {shape.c} channels, but len(mask)*(5+classes) = {expected}")
    return YoloLayer(classes, mask, anchors), shape
