"""`[softmax]`: a plain softmax over groups of the flattened input, or a WordTree group softmax."""
from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from ..cfg import Section, resolve_path
from ..registry import BuildContext, Shape, register
from .base import DarknetLayer

if TYPE_CHECKING:
    from ..network import Darknet


class SoftmaxLayer(DarknetLayer):
    """Shapes: (B, C, H, W) -> (B, C*H*W, 1, 1); Darknet gives this layer no C, H, W of its own."""

    def __init__(self, groups: int, temperature: float, tree=None):
        super().__init__()
        self.groups, self.temperature, self.tree = groups, temperature, tree

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if self.tree is not None:
            out = self.tree.softmax(flat / self.temperature if self.temperature != 1 else flat, dim=1)
        else:
            groups = flat.unflatten(1, (self.groups, -1))
            if self.temperature != 1:
                # DARKNET(blas.c:softmax): exp(x/t - max/t); DIVERGES: (x - max)/t, which a tiny t cannot overflow
                groups = (groups - groups.amax(dim=2, keepdim=True).detach()) / self.temperature
            out = groups.softmax(dim=2).flatten(1)
        return out.view(x.shape[0], -1, 1, 1)

    def summary_line(self, net: Darknet, index: int, before: Shape) -> str:
        return f"softmax                                        {before.size:4d}"


@register("softmax", "soft")
def build_softmax(s: Section, ctx: BuildContext) -> tuple[SoftmaxLayer, Shape]:
    inputs = ctx.input_shape.size
    groups = s.get_int("groups", 1, minimum=1)
    if inputs % groups:
        raise s.error(f"groups={groups} does not divide the {inputs} inputs", "groups")
    tree = None
    if s.has("tree"):
        from ..tree import WordTree
        tree = WordTree.read(resolve_path(s.get_str("tree"), ctx.cfg_path))
        if tree.n != inputs:
            raise s.error(f"tree {s.get_str('tree')} has {tree.n} nodes but the layer has {inputs} inputs", "tree")
    s.get_float("spatial", 0)
    s.get_int("noloss", 0)
    return SoftmaxLayer(groups, s.get_float("temperature", 1, nonzero=True), tree), Shape(inputs, 1, 1)
