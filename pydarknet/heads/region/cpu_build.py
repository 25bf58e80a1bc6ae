"""The `[region]` forward of a stock CPU build of pjreddie's Darknet (`Darknet.darknet_build = "cpu"`).

DARKNET(region_layer.c:forward_region_layer, the `#ifndef GPU` branch) differs from the GPU forward
(`layer.RegionLayer`) in two places:

- coords beyond 4 (mask entries) are not activated;
- with a WordTree (`tree=`) the group softmax is wrong: for group g (nodes ``o_g .. o_g+size_g-1``) it calls
  ``softmax_cpu(input + 5 + o_g, size_g, batch, inputs, S, 1, S, l.temperature, output + 5 + o_g)`` with
  ``S = num*H*W``, i.e. a softmax over the flat positions ``5 + o_g + g' + k*S`` (k < size_g) for each
  g' < S: an entry-major layout that does not match the region's ``[n][entry][y][x]`` one. Each group so
  overwrites the contiguous block ``[5 + o_g, 5 + o_g + size_g*S)`` of the flat output (later groups win
  where blocks overlap, coordinates and objectnesses of the first anchor included), reading the *raw*
  input; and ``l.temperature`` is 0 (`parse_region` never reads it, `make_region_layer` callocs), so each
  softmax computes ``exp(x/0 - max/0)``: NaN. Everything outside the blocks keeps the raw input (class
  entries) or the logistic (x, y, objectness).

This module reproduces that computation as written (IEEE arithmetic: with temperature 0 every written
value is NaN), so that `detector test -darknet_build cpu` prints what such a build prints.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from ...errors import UnsupportedError
from ...options import RegionOptions
from ...tree import WordTree, _index_reduce

# DARKNET(region_layer.c:make_region_layer): l.temperature stays 0 (calloc); parse_region never sets it
STOCK_CPU_REGION_TEMPERATURE = 0.0


def forward_region_cpu_build(x: Tensor, options: RegionOptions, tree: WordTree | None) -> Tensor:
    """The region output of a stock CPU build: (B, num*(coords+1+classes), H, W) -> (B, num, entries, H, W)."""
    b, _, h, w = x.shape
    o = options
    raw = x.reshape(b, o.num, o.coords + 1 + o.classes, h, w)
    output = raw.clone()
    output[:, :, :2] = torch.sigmoid(raw[:, :, :2])
    # DARKNET(region_layer.c:forward_region_layer): the CPU loop activates x, y and the objectness only
    output[:, :, o.coords] = torch.sigmoid(raw[:, :, o.coords])
    classes = raw[:, :, o.coords + 1:]
    if tree is not None:
        if torch.onnx.is_in_onnx_export():
            raise UnsupportedError("the WordTree region forward of a stock CPU build (darknet_build cpu) has no "
                                   "ONNX form: run it with the torch backend")
        flat = output.view(b, -1)
        positions, values = _tree_softmax_cpu(raw.reshape(b, -1), tree, o.num * h * w, o.coords + 1)
        flat[:, positions] = values
    elif o.softmax:
        output[:, :, o.coords + 1:] = classes.softmax(dim=2)
    else:
        output[:, :, o.coords + 1:] = torch.sigmoid(classes)
    return output


def _tree_softmax_cpu(raw: Tensor, tree: WordTree, stride: int, start: int) -> tuple[Tensor, Tensor]:
    """What DARKNET(region_layer.c:forward_region_layer)'s WordTree loop writes: (P,) flat positions of the
    output and (B, P) their values, each position once with the value of the last group that writes it.

    raw: (B, inputs) the flat region input; stride: num*H*W; start: coords + 1.
    """
    index = _cpu_tree_index(tree, stride, start, raw.shape[1], str(raw.device))
    x = raw.index_select(1, index.read)                                          # (B, E), E = n*stride
    temperature = STOCK_CPU_REGION_TEMPERATURE
    segments = tree.groups * stride
    largest = _index_reduce(x.new_empty(x.shape[0], segments), 1, index.segment, x, "amax")
    # DARKNET(blas.c:softmax): exp(input/temp - largest/temp), summed, then divided
    e = torch.exp(x / temperature - largest.index_select(1, index.segment) / temperature)
    total = x.new_zeros(x.shape[0], segments).index_add_(1, index.segment, e)
    values = e / total.index_select(1, index.segment)
    return index.write, values[:, index.last]


class _CpuTreeIndex:
    """Index tensors of the CPU WordTree loop for one (tree, stride, start, inputs).

    read: (E,) flat input position of every element the groups' softmaxes read, group by group, each group
    ``size*stride`` contiguous positions; segment: (E,) the softmax each belongs to, ``group*stride + g``;
    last: the elements whose position no later group writes; write: (P,) their positions.
    """

    def __init__(self, tree: WordTree, stride: int, start: int, inputs: int, device: str):
        sizes = torch.as_tensor(tree.group_size, dtype=torch.int64)
        offsets = torch.as_tensor(tree.group_offset, dtype=torch.int64)
        group = torch.repeat_interleave(torch.arange(tree.groups), sizes * stride)      # (E,)
        first = torch.repeat_interleave(torch.cumsum(sizes * stride, 0) - sizes * stride, sizes * stride)
        within = torch.arange(len(group)) - first                                         # k*stride + g
        read = start + offsets[group] + within
        if int(read.max()) >= inputs:
            # DARKNET: the loop would read and write past the image's region output (other images', or the heap)
            raise UnsupportedError(f"the stock CPU WordTree loop runs past the region output ({int(read.max())} >= "
                                   f"{inputs} floats): not reproduced")
        self.segment = (group * stride + within % stride).to(device)
        winner = torch.full((inputs,), -1, dtype=torch.int64).scatter_reduce(0, read, group, "amax")
        last = torch.nonzero(winner[read] == group).squeeze(1)
        self.read, self.last, self.write = read.to(device), last.to(device), read[last].to(device)


@lru_cache(maxsize=8)
def _cpu_tree_index(tree: WordTree, stride: int, start: int, inputs: int, device: str) -> _CpuTreeIndex:
    return _CpuTreeIndex(tree, stride, start, inputs, device)
