"""WordTree: the YOLO9000 label hierarchy (`9k.tree`) and its group softmax.

A tree file has one line per node, ``<wnid> <parent index>``, parents before their
children and the children of one parent on consecutive lines. Consecutive lines with the
same parent form a *group*; group 0 holds the roots. Every probability operation below
works on a tensor whose class dimension ``dim`` has size ``n`` (class entry j = node j),
whatever the other dimensions are: ``(B, C)`` for a classifier, ``(B, A, C, H, W)`` for
the class slice of a region output.

>>> tree = WordTree(["animal", "plant", "dog", "cat"], [-1, -1, 0, 0])
>>> tree.group.tolist(), tree.group_offset.tolist(), tree.child.tolist()
([0, 0, 1, 1], [0, 2], [1, -1, -1, -1])
>>> p = tree.softmax(torch.zeros(1, 4), dim=1)   # (B, C)
>>> tree.hierarchy_predictions(p, dim=1).tolist()
[[0.5, 0.5, 0.25, 0.25]]
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .cfg import read_text_file
from .errors import DataError


class TreeError(DataError):
    """A malformed tree, names or map file; the message names the file and line."""


@dataclass(frozen=True)
class _DeviceIndex:
    """The tree's index arrays as torch tensors on one device."""
    group: Tensor                             # (n,) group of each node
    child: Tensor                             # (n,) child group of each node, -1 for leaves
    first_parent: Tensor                      # (groups,) parent of each group's first node
    levels: tuple[tuple[Tensor, Tensor], ...]  # per depth >= 1: (nodes, their parents)
    buckets: tuple[_GroupBucket, ...]          # the groups, padded into a few (size, groups) tables
    slot: Tensor                               # (n,) column of each node's group in the buckets, concatenated


@dataclass(frozen=True)
class _GroupBucket:
    """Groups of similar size as a padded ``(size, groups)`` table of nodes, flattened size-major.

    A group shorter than ``size`` repeats its first node: harmless for a max, masked out of a sum.
    Every group is longer than ``size // 2``, so padding only ever sits in the second half.
    """
    size: int
    nodes: Tensor           # (size * groups,) node at [s, g]
    members: Tensor | None  # (size // 2, groups) second half: 1 for a member, 0 for padding; None without any


def _group_buckets(group_offset: np.ndarray, group_size: np.ndarray) -> tuple[list[tuple[int, np.ndarray]], np.ndarray]:
    """Groups bucketed by size rounded up to a power of two (padding < 2x): [(size, group ids)], and
    the (G,) column of every group in the bucket tables laid side by side."""
    bucket_size = 1 << np.ceil(np.log2(group_size)).astype(np.int64)
    buckets = [(int(size), np.flatnonzero(bucket_size == size)) for size in np.unique(bucket_size)]
    column = np.empty(len(group_size), dtype=np.int64)
    column[np.concatenate([groups for _, groups in buckets])] = np.arange(len(group_size))
    return buckets, column


def _index_reduce(out: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str) -> Tensor:
    """``out[..., index[k], ...] = reduce(src[..., k, ...])`` along ``dim``; every slot of ``out``
    must be indexed (the groups cover all nodes), its initial values are ignored."""
    with warnings.catch_warnings():
        # the fastest segment reduction on CPU (10x scatter_reduce) but flagged beta by torch
        warnings.filterwarnings("ignore", message="index_reduce\\(\\) is in beta")
        return out.index_reduce_(dim, index, src, reduce, include_self=False)


def _parse_int(text: str, where: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise TreeError(f"{where}: {what} {text!r} is not an integer") from None


def _structure_error(parent: np.ndarray) -> tuple[int, str] | None:
    """The first node (in index order) that breaks the tree rules, with the reason.

    parent: (n,) int64. The rules: ``-1 <= parent[i] < i`` and each parent's children on
    consecutive indices (one group per parent). Darknet checks none of this.
    """
    n = len(parent)
    bad = np.flatnonzero((parent < -1) | (parent >= np.arange(n)))
    if len(bad):
        i = int(bad[0])
        return i, f"parent index {parent[i]} must be -1 or the index of an earlier line (< {i})"
    starts = np.flatnonzero(np.r_[True, parent[1:] != parent[:-1]])
    _, first = np.unique(parent[starts], return_index=True)
    repeated = np.setdiff1d(np.arange(len(starts)), first)
    if len(repeated):
        i = int(starts[repeated.min()])
        owner = "the roots" if parent[i] < 0 else f"node {parent[i]}"
        return i, f"the children of {owner} are not on consecutive lines (a second group starts here)"
    return None


class WordTree:
    """A Darknet WordTree (tree.c:read_tree) with vectorised probability operations.

    Numpy attributes, ``n`` nodes and ``groups`` (G) groups:
    ``parent`` (n,) int64, -1 for roots; ``group`` (n,); ``group_offset``, ``group_size``
    (G,) describe each group's contiguous node range; ``child`` (n,) the group holding a
    node's children or -1; ``leaf`` (n,) bool; ``depth`` (n,) 0 for roots;
    ``name`` the wnids; ``names`` the readable names when given.
    """

    def __init__(self, name: list[str], parent: np.ndarray | list[int], names: list[str] | None = None,
                 source: str | Path | None = None):
        """Build from wnids and parent indices; raise TreeError if the parents are malformed.

        ``source`` (the tree file) makes errors name ``file:line`` (line = node + 1).
        """
        self.parent = np.asarray(parent, dtype=np.int64)
        self.n = len(self.parent)
        if self.n == 0 or len(name) != self.n:
            raise TreeError(f"{source or 'tree'}: {len(name)} wnids and {self.n} parents (need one each per node)")
        error = _structure_error(self.parent)
        if error is not None:
            where = f"node {error[0]}" if source is None else f"{source}:{error[0] + 1}"
            raise TreeError(f"{where}: {error[1]}")
        if names is not None and len(names) != self.n:
            raise TreeError(f"{len(names)} readable names for the {self.n} nodes of {source or 'the tree'}")
        self.name = list(name)
        self.names = names
        # DARKNET(tree.c:read_tree): a group starts wherever the parent differs from the previous line's
        new_group = np.r_[False, self.parent[1:] != self.parent[:-1]]
        self.group = np.cumsum(new_group)
        self.group_offset = np.r_[0, np.flatnonzero(new_group)]
        self.group_size = np.diff(np.r_[self.group_offset, self.n])
        self.groups = len(self.group_offset)
        has_parent = self.parent >= 0
        self.child = np.full(self.n, -1, dtype=np.int64)
        self.child[self.parent[has_parent]] = self.group[has_parent]
        self.leaf = self.child < 0
        self.depth = self._depths()
        self._index: dict[torch.device, _DeviceIndex] = {}

    @classmethod
    def read(cls, path: str | Path, names_path: str | Path | None = None) -> WordTree:
        """Read a ``.tree`` file (and optionally a names file, one readable name per node).

        Stricter than Darknet, which accepts anything: every line must be exactly
        ``<wnid> <int>`` with a parent on an earlier line and siblings on consecutive lines.
        """
        path = Path(path)
        name, parent = [], []
        for lineno, line in enumerate(read_text_file(path, "tree file", TreeError).splitlines(), 1):
            fields = line.split()
            where = f"{path}:{lineno}"
            if len(fields) != 2:
                # DIVERGES: Darknet's sscanf makes a line without a parent a root (parent -1)
                raise TreeError(f"{where}: expected '<wnid> <parent index>', got {line!r}")
            name.append(fields[0])
            parent.append(_parse_int(fields[1], where, "parent index"))
        names = None
        if names_path is not None:
            names = read_text_file(names_path, "names file", TreeError).splitlines()
            if len(names) != len(name):
                raise TreeError(f"{names_path}: {len(names)} names for the {len(name)} nodes of {path}")
        return cls(name, parent, names, source=path)

    def _depths(self) -> np.ndarray:
        """(n,) number of ancestors of each node, by pointer jumping one level per step."""
        depth = np.zeros(self.n, dtype=np.int64)
        ancestor = self.parent.copy()
        while (alive := ancestor >= 0).any():
            depth += alive
            ancestor[alive] = self.parent[ancestor[alive]]
        return depth

    def index(self, device: torch.device | str) -> _DeviceIndex:
        """The index tensors on ``device``, built once per device."""
        device = torch.device(device)
        if device not in self._index:
            as_tensor = lambda a: torch.as_tensor(a, dtype=torch.int64, device=device)  # noqa: E731
            levels = tuple(
                (as_tensor(nodes), as_tensor(self.parent[nodes]))
                for nodes in (np.flatnonzero(self.depth == d) for d in range(1, self.depth.max() + 1))
            )
            buckets, column = _group_buckets(self.group_offset, self.group_size)
            self._index[device] = _DeviceIndex(
                group=as_tensor(self.group),
                child=as_tensor(self.child),
                first_parent=as_tensor(self.parent[self.group_offset]),
                levels=levels,
                buckets=tuple(self._bucket_table(size, groups, device) for size, groups in buckets),
                slot=as_tensor(column[self.group]),
            )
        return self._index[device]

    def _bucket_table(self, size: int, groups: np.ndarray, device: torch.device) -> _GroupBucket:
        member = np.arange(size)[:, None] < self.group_size[groups]                  # (size, groups)
        nodes = self.group_offset[groups] + np.where(member, np.arange(size)[:, None], 0)
        second_half = member[size // 2:] if size > 1 else member[:0]
        members = None if second_half.all() else torch.as_tensor(second_half, dtype=torch.float32, device=device)
        return _GroupBucket(size, torch.as_tensor(nodes.ravel(), dtype=torch.int64, device=device), members)

    def path(self, node: int) -> list[int]:
        """``node`` followed by its ancestors up to the root."""
        self._check_node(node)
        path = [node]
        while self.parent[path[-1]] >= 0:
            path.append(int(self.parent[path[-1]]))
        return path

    def _check_node(self, node: int) -> None:
        if not 0 <= node < self.n:
            raise IndexError(f"node {node} out of range for a tree of {self.n} nodes")

    def _check_dim(self, x: Tensor, dim: int) -> int:
        dim = dim % x.dim()
        if x.shape[dim] != self.n:
            raise ValueError(f"dimension {dim} of shape {tuple(x.shape)} must have the tree's {self.n} classes")
        return dim

    def _group_shape(self, x: Tensor, dim: int) -> list[int]:
        shape = list(x.shape)
        shape[dim] = self.groups
        return shape

    def softmax(self, x: Tensor, dim: int) -> Tensor:
        """Softmax over each group's entries along ``dim`` (size n); same shape as ``x``.

        DARKNET(blas_kernels.cu:softmax_tree): every group is an independent softmax at
        temperature 1 (the region layer passes 1; divide ``x`` first for another one).
        Segment reductions (`index_reduce`, fastest, 3.5x the padded tables on 9k.tree) unless the
        net is being exported to ONNX, which has no `index_reduce`: then `_exportable_softmax`.
        """
        dim = self._check_dim(x, dim)
        if torch.onnx.is_in_onnx_export():
            return self._exportable_softmax(x, dim)
        group = self.index(x.device).group
        # the shift by the group max only avoids overflow; it needs no gradient
        group_max = _index_reduce(x.new_empty(self._group_shape(x, dim)), dim, group, x.detach(), "amax")
        # DIVERGES: the CUDA kernel shifts by the max of int-truncated values; the result differs in rounding only
        e = torch.exp(x - group_max.index_select(dim, group))
        group_sum = x.new_zeros(self._group_shape(x, dim)).index_add(dim, group, e)
        return e / group_sum.index_select(dim, group)

    def _exportable_softmax(self, x: Tensor, dim: int) -> Tensor:
        """`softmax` in ops ONNX has: padded per-size tables of the groups, max and pairwise sums."""
        index = self.index(x.device)

        def per_group(t: Tensor, reduce) -> Tensor:
            """``reduce(table, bucket)`` of every bucket's (size, groups) table of ``t``, back on the n nodes."""
            reduced = [reduce(t.index_select(dim, bucket.nodes).unflatten(dim, (bucket.size, -1)), bucket)
                       for bucket in index.buckets]                                  # (..., groups, ...) each
            return torch.cat(reduced, dim).index_select(dim, index.slot)

        def pairwise_sum(table: Tensor, bucket: _GroupBucket) -> Tensor:
            # halving the (power-of-two) size in elementwise adds: every layout of the classes then adds
            # the same numbers in the same order, which a reduction kernel does not promise
            half = bucket.size // 2
            if half:
                first, second = table.narrow(dim, 0, half), table.narrow(dim, half, half)
                if bucket.members is None:
                    table = first + second
                else:
                    table = torch.addcmul(first, second, bucket.members.view((half, -1) + (1,) * (x.dim() - dim - 1)))
            while half > 1:
                half //= 2
                table = table.narrow(dim, 0, half) + table.narrow(dim, half, half)
            return table.squeeze(dim)

        group_max = per_group(x.detach(), lambda table, _: table.amax(dim))
        e = torch.exp(x - group_max)
        return e / per_group(e, pairwise_sum)

    def hierarchy_predictions(self, p: Tensor, dim: int) -> Tensor:
        """Absolute probabilities from group-conditional ones ``p``; same shape.

        DARKNET(tree.c:hierarchy_predictions): ``p[j] *= p[parent[j]]`` in index order with
        only_leaves=0. Parents precede children, so one depth level at a time gives the same
        float products (``p[j] * P(parent)``) with a vectorised step per level.
        """
        dim = self._check_dim(p, dim)
        if torch.onnx.is_in_onnx_export():   # ONNX has no index_copy
            return self._exportable_hierarchy_predictions(p, dim)
        p = p.clone()
        for nodes, parents in self.index(p.device).levels:
            # in place is safe for autograd: index_select keeps only the shape of its input
            p.index_copy_(dim, nodes, p.index_select(dim, nodes) * p.index_select(dim, parents))
        return p

    def _exportable_hierarchy_predictions(self, p: Tensor, dim: int) -> Tensor:
        """`hierarchy_predictions` in ops ONNX has (gather, multiply, concatenate); the same floats.

        One depth level at a time: the nodes sorted by depth, each level's products gathered from
        the levels before it, then put back in node order.
        """
        by_depth = self.depth.argsort(kind="stable")
        position = by_depth.argsort()                                 # node -> its place in depth order
        sorted_p = p.index_select(dim, torch.as_tensor(by_depth, device=p.device))
        depth_sorted = self.depth[by_depth]
        done = sorted_p.narrow(dim, 0, int((depth_sorted == 0).sum()))
        for level in range(1, int(self.depth.max()) + 1):
            start, count = int((depth_sorted < level).sum()), int((depth_sorted == level).sum())
            parents = torch.as_tensor(position[self.parent[by_depth[start:start + count]]], device=p.device)
            level_p = sorted_p.narrow(dim, start, count) * done.index_select(dim, parents)
            done = torch.cat((done, level_p), dim)
        return done.index_select(dim, torch.as_tensor(position, device=p.device))

    def path_probability(self, p: Tensor, node: int, dim: int) -> Tensor:
        """Product of ``p`` along the path from ``node`` to its root; ``p`` with ``dim`` removed.

        DARKNET(tree.c:get_hierarchy_probability): multiplied from the node upwards.
        """
        dim = self._check_dim(p, dim)
        path = self.path(node)
        prob = p.select(dim, path[0])
        for ancestor in path[1:]:
            prob = prob * p.select(dim, ancestor)
        return prob

    def top_prediction(self, p_abs: Tensor, hier_thresh: float, dim: int) -> Tensor:
        """The predicted node for every position of ``p_abs``: LongTensor, ``dim`` removed.

        DARKNET(tree.c:hierarchy_top_prediction): from group 0, take the group's best
        node and descend into its children while the running product of the chosen
        (already absolute) probabilities stays > hier_thresh; return the leaf reached,
        else the parent of the group where it stopped, or that best root in group 0.
        """
        dim = self._check_dim(p_abs, dim)
        if hier_thresh < 0:
            # DIVERGES: Darknet can loop forever on a negative threshold and all-zero groups
            raise ValueError(f"hier_thresh must be >= 0, got {hier_thresh}")
        index = self.index(p_abs.device)
        best_p, best_i = self._group_argmax(p_abs.detach(), dim)   # p_abs's shape with G at dim
        cells = best_p.select(dim, 0)
        group = torch.zeros_like(cells, dtype=torch.int64)
        acc = torch.ones_like(cells)
        top = torch.full_like(group, -1)
        for _ in range(int(self.depth.max()) + 1):
            active = top < 0
            if not active.any():
                break
            g = group.unsqueeze(dim)
            p_max, i_max = best_p.gather(dim, g).squeeze(dim), best_i.gather(dim, g).squeeze(dim)
            descend = acc * p_max > hier_thresh
            at_leaf = descend & (index.child[i_max] < 0)
            stopped = torch.where(group == 0, i_max, index.first_parent[group])
            top = torch.where(active & at_leaf, i_max, top)
            top = torch.where(active & ~descend, stopped, top)
            acc = torch.where(descend, acc * p_max, acc)
            group = torch.where(descend & ~at_leaf, index.child[i_max], group)
        return top

    def _group_argmax(self, p: Tensor, dim: int) -> tuple[Tensor, Tensor]:
        """Each group's maximum and its first node holding it (tree.c's strict ``val > max`` scan).

        p: n classes along ``dim``. Returns values and node indices, both ``p``'s shape with
        G groups along ``dim``.
        """
        group = self.index(p.device).group
        # DARKNET(tree.c:hierarchy_top_prediction): the scan starts from max 0, so values <= 0 and NaN
        # never win; a group without a positive value is never descended into, so any index does there
        p = torch.where(p > 0, p, torch.zeros((), dtype=p.dtype, device=p.device))
        best_p = _index_reduce(p.new_empty(self._group_shape(p, dim)), dim, group, p, "amax")
        nodes_shape = [1] * p.dim()
        nodes_shape[dim] = self.n
        nodes = torch.arange(self.n, device=p.device).view(nodes_shape)
        candidate = torch.where(p == best_p.index_select(dim, group), nodes, self.n)
        best_i = _index_reduce(candidate.new_empty(best_p.shape), dim, group, candidate, "amin")
        return best_p, best_i

    @classmethod
    def flat(cls, classes: int) -> WordTree:
        """A softmax over all classes as a WordTree of roots: one group, paths of length 1."""
        return cls([str(c) for c in range(classes)], [-1] * classes)

    def ancestor_table(self) -> Tensor:
        """(n, D) int64: each node followed by its ancestors (its `path`), padded with -1;
        D = 1 + the deepest depth. The vectorised form of `path` for the region loss."""
        table = np.full((self.n, int(self.depth.max()) + 1), -1, dtype=np.int64)
        node = np.arange(self.n)
        for d in range(table.shape[1]):
            table[:, d] = node
            node = np.where(node >= 0, self.parent[np.maximum(node, 0)], -1)
        return torch.from_numpy(table)

    @staticmethod
    def path_product(probs: Tensor, paths: Tensor, dim: int) -> Tensor:
        """Product of ``probs`` along each path (tree.c:get_hierarchy_probability, node first).

        probs: (..., C, ...) with classes at ``dim``; paths: node indices (rows of `ancestor_table`),
        -1 padded, with D at ``dim`` and size 1 or that of ``probs`` elsewhere. Returns ``probs``
        with ``dim`` reduced to 1.
        """
        on_path = paths >= 0
        picked = probs.gather(dim, paths.clamp(min=0).expand(*probs.shape[:dim], paths.shape[dim],
                                                            *probs.shape[dim + 1:]))
        return torch.where(on_path, picked, torch.ones_like(picked)).prod(dim, keepdim=True)


def read_map(path: str | Path) -> np.ndarray:
    """A class map file (coco9k.map, inet9k.map): (K,) int64, one tree node per line."""
    path = Path(path)
    lines = read_text_file(path, "map file", TreeError).splitlines()
    if not lines:
        raise TreeError(f"{path}: empty map file")
    # DIVERGES: Darknet's atoi turns a malformed line into 0
    return np.array([_parse_int(line.strip(), f"{path}:{i}", "map entry") for i, line in enumerate(lines, 1)],
                    dtype=np.int64)
