"""WordTree against Darknet's 9k.tree, the mini/full yolo9000 references and hand-made trees."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.tree import TreeError, WordTree, read_map

N_9K = 9418
NUM = 3                     # anchors of (mini-)yolo9000
HIER_THRESH = 0.5           # DARKNET(detector.c:test_detector): hier_thresh of the references
IMAGES = ("dog", "horses", "person")

# A hand-made tree: roots A B; A -> C D; C -> E F.  Groups: [A B] [C D] [E F].
TOY_NAMES = ["A", "B", "C", "D", "E", "F"]
TOY_PARENTS = [-1, -1, 0, 0, 2, 2]


def region_tolerance(got: np.ndarray, want: np.ndarray) -> None:
    """README §9: |a-b| <= 1e-4*max|b| + 1e-4*|b| over the whole layer."""
    bound = 1e-4 * np.abs(want).max() + 1e-4 * np.abs(want)
    excess = np.abs(got - want) - bound
    assert excess.max() <= 0, f"worst excess {excess.max():.3g} at {np.unravel_index(excess.argmax(), want.shape)}"


def hier_top(reference: Path, net: str, image: str) -> np.ndarray:
    """(num, H*W) top node per anchor and cell (cell = y*W + x)."""
    return np.array(json.loads((reference / "forward" / net / image / "hier_top.json").read_text())["top"])


@pytest.fixture(scope="module")
def tree9k(reference: Path) -> WordTree:
    data = reference / "darknet" / "data"
    return WordTree.read(data / "9k.tree", data / "9k.names")


@pytest.fixture(scope="module")
def toy() -> WordTree:
    return WordTree(TOY_NAMES, TOY_PARENTS)


def write(tmp_path: Path, text: str, name: str = "bad.tree") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- structure


def test_read_9k_tree_groups_as_darknet(reference: Path, tree9k: WordTree):
    lines = (reference / "darknet" / "data" / "9k.tree").read_text().split("\n")
    rows = [line.split() for line in lines if line]
    parents = [int(p) for _, p in rows]
    # groups = runs of equal consecutive parents (tree.c:read_tree)
    runs = [(parent, len(list(members))) for parent, members in itertools.groupby(parents)]
    sizes = [size for _, size in runs]
    offsets = list(itertools.accumulate([0] + sizes[:-1]))
    child = [-1] * len(parents)
    for g, (parent, _) in enumerate(runs):
        if parent >= 0:
            child[parent] = g

    assert tree9k.n == N_9K == len(rows)
    assert tree9k.groups == len(runs) == 1846
    assert tree9k.group_size.tolist() == sizes
    assert tree9k.group_offset.tolist() == offsets
    assert tree9k.group.tolist() == [g for g, size in enumerate(sizes) for _ in range(size)]
    assert tree9k.parent.tolist() == parents
    assert tree9k.child.tolist() == child
    has_children = set(parents)
    assert tree9k.leaf.tolist() == [i not in has_children for i in range(N_9K)]
    assert tree9k.name[:2] == [rows[0][0], rows[1][0]] and tree9k.names[0] == "thing"
    assert int(tree9k.leaf.sum()) == 7573 and tree9k.group_size[0] == 4 and tree9k.depth.max() == 16


def test_path_of_bald_eagle(tree9k: WordTree):
    path = tree9k.path(8092)
    assert [tree9k.names[i] for i in path[:4]] == ["bald eagle", "eagle", "bird of prey", "bird"]
    assert all(tree9k.parent[a] == b for a, b in zip(path, path[1:]))
    assert tree9k.parent[path[-1]] == -1 and len(path) == tree9k.depth[8092] + 1


def test_read_map_coco9k(reference: Path, tree9k: WordTree):
    data = reference / "darknet" / "data"
    coco_map = read_map(data / "coco9k.map")
    assert coco_map.dtype == np.int64 and coco_map.tolist() == np.loadtxt(data / "coco9k.map", dtype=int).tolist()
    coco = (data / "coco.names").read_text().splitlines()
    mapped = [tree9k.names[coco_map[k]] for k in (0, 16, 79)]
    assert mapped == [coco[0], coco[16], "toothbrush"] == ["person", "dog", "toothbrush"]
    assert len(read_map(data / "inet9k.map")) == 200


@pytest.mark.parametrize("text, line, message", [
    ("a -1\nb 0\nc 5\n", 3, "earlier line"),                      # parent after the child
    ("a -1\nb 1\n", 2, "earlier line"),                           # its own parent
    ("a 0\n", 1, "earlier line"),
    ("a -1\nb -2\n", 2, "earlier line"),
    ("a -1\nb -1\nc 0\nd 1\ne 0\n", 5, "children of node 0"),       # siblings split in two groups
    ("a -1\nb 0\nc -1\n", 3, "children of the roots"),
    ("a -1\nb x\n", 2, "not an integer"),
    ("a -1\nb 1.5\n", 2, "not an integer"),
    ("a -1\nb 0 extra\n", 2, "expected"),
    ("a -1\nb\n", 2, "expected"),                                  # Darknet would make b a root
    ("a -1\n\nb 0\n", 2, "expected"),
])
def test_malformed_tree_names_file_and_line(tmp_path: Path, text: str, line: int, message: str):
    path = write(tmp_path, text)
    with pytest.raises(TreeError, match=message) as error:
        WordTree.read(path)
    assert f"{path}:{line}:" in str(error.value)


def test_bad_files_are_named(tmp_path: Path):
    with pytest.raises(TreeError, match="empty.tree"):
        WordTree.read(write(tmp_path, "", "empty.tree"))
    names = write(tmp_path, "only one\n", "toy.names")
    with pytest.raises(TreeError, match="toy.names: 1 names for the 2 nodes"):
        WordTree.read(write(tmp_path, "a -1\nb -1\n"), names)
    with pytest.raises(TreeError, match=r"bad\.map:2: map entry 'x'"):
        read_map(write(tmp_path, "1\nx\n3\n", "bad.map"))
    with pytest.raises(TreeError, match="node 4: the children of node 0"):
        WordTree(list("abcde"), [-1, -1, 0, 1, 0])


def test_toy_structure(toy: WordTree):
    assert toy.group.tolist() == [0, 0, 1, 1, 2, 2]
    assert toy.group_offset.tolist() == [0, 2, 4] and toy.group_size.tolist() == [2, 2, 2]
    assert toy.child.tolist() == [1, -1, 2, -1, -1, -1]
    assert toy.leaf.tolist() == [False, True, False, True, True, True]
    assert toy.path(5) == [5, 2, 0]
    with pytest.raises(IndexError, match="node 6"):
        toy.path(6)


# ---------------------------------------------------------------- softmax


def test_tree_softmax_of_mini_yolo9000(reference: Path, tree9k: WordTree):
    case = reference / "forward" / "mini-yolo9000" / "dog"
    layers = np.load(case / "layers.npz")
    raw = layers[sorted(layers.files)[-1]]                           # last conv = region input
    h, w = raw.shape[1:]
    raw = raw.reshape(NUM, 5 + N_9K, h, w)                           # channel = n*(5+classes)+entry
    want = np.load(case / "region.npy")[:, 5:]
    got = tree9k.softmax(torch.from_numpy(raw[:, 5:]).unsqueeze(0), dim=2)[0].numpy()   # (B, A, C, H, W)
    region_tolerance(got, want)
    print(f"tree softmax vs region.npy: max abs {np.abs(got - want).max():.3g}")
    assert np.abs(got - want).max() < 1e-6
    group_sums = np.add.reduceat(got.astype(np.float64), tree9k.group_offset, axis=1)
    np.testing.assert_allclose(group_sums, 1.0, atol=1e-5)


def test_tree_softmax_classifier_layout_and_groups(tree9k: WordTree):
    x = torch.randn(4, N_9K, generator=torch.Generator().manual_seed(0)) * 5     # (B, C)
    got = tree9k.softmax(x, dim=1)
    for g in (0, 1, 500, tree9k.groups - 1, int(tree9k.group_size.argmax())):
        lo, hi = tree9k.group_offset[g], tree9k.group_offset[g] + tree9k.group_size[g]
        torch.testing.assert_close(got[:, lo:hi], torch.softmax(x[:, lo:hi], dim=1), rtol=1e-6, atol=1e-7)
    region = tree9k.softmax(x.T.reshape(1, 1, N_9K, 2, 2), dim=-3)      # the same vectors as cells
    torch.testing.assert_close(region.reshape(N_9K, 4).T, got, rtol=0, atol=0)


def test_tree_softmax_is_stable(toy: WordTree):
    x = torch.tensor([[1000.0, 999.0, -1000.0, -1001.0, 88.0, 89.0]])
    p = toy.softmax(x, dim=1)
    e = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(p.numpy()[0], [e, 1 - e, e, 1 - e, 1 - e, e], rtol=1e-6)


def test_tree_softmax_gradient(toy: WordTree):
    x = torch.randn(2, 3, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: toy.softmax(t, dim=2), (x,))
    assert torch.autograd.gradcheck(lambda t: toy.hierarchy_predictions(toy.softmax(t, dim=2), dim=2), (x,))


def test_wrong_class_dimension_is_rejected(toy: WordTree):
    with pytest.raises(ValueError, match="dimension 0 of shape \\(5, 6\\)"):
        toy.softmax(torch.zeros(5, 6), dim=0)


# ---------------------------------------------------------------- hierarchy


def test_hierarchy_predictions_region_hier_subset(reference: Path, tree9k: WordTree):
    case = reference / "forward" / "mini-yolo9000" / "dog"
    region = torch.from_numpy(np.load(case / "region.npy")[:, 5:])          # (A, C, H, W)
    subset = np.load(case / "region_hier_subset.npz")
    a, y, x = subset["cells"].T
    got = tree9k.hierarchy_predictions(region, dim=1).numpy()[a, :, y, x]
    np.testing.assert_allclose(got, subset["class_vectors"], rtol=1e-6, atol=0)
    print(f"hierarchy_predictions vs region_hier: max abs {np.abs(got - subset['class_vectors']).max():.3g}")


def test_path_probability_is_the_product_along_the_path(reference: Path, tree9k: WordTree):
    region = np.load(reference / "forward" / "mini-yolo9000" / "dog" / "region.npy")[:, 5:]
    p = torch.from_numpy(region)
    absolute = tree9k.hierarchy_predictions(p, dim=1)
    for node in (8092, 0, 863, N_9K - 1):
        want = np.prod(region[:, tree9k.path(node)].astype(np.float64), axis=1)
        got = tree9k.path_probability(p, node, dim=1)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
        torch.testing.assert_close(got, absolute[:, node], rtol=1e-5, atol=0)


def test_toy_hierarchy_and_path_probability(toy: WordTree):
    p = torch.tensor([0.9, 0.1, 0.6, 0.4, 0.5, 0.5])
    np.testing.assert_allclose(toy.hierarchy_predictions(p, 0).numpy(), [0.9, 0.1, 0.54, 0.36, 0.27, 0.27], rtol=1e-6)
    assert toy.path_probability(p, 4, 0).item() == pytest.approx(0.27)


# ---------------------------------------------------------------- top prediction


@pytest.mark.parametrize("p_abs, top, rule", [
    ([0.4, 0.3, 0.3, 0.1, 0.2, 0.1], 0, "stops in group 0: best root"),
    ([0.3, 0.45, 0.2, 0.1, 0.1, 0.1], 1, "stops in group 0: best root"),
    ([0.5, 0.5, 0.4, 0.4, 0.4, 0.4], 0, "equal roots: the first; p*max == thresh does not descend"),
    ([0.9, 0.1, 0.1, 0.8, 0.1, 0.1], 3, "leaf reached"),
    ([0.9, 0.1, 0.5, 0.4, 0.9, 0.9], 0, "stops in group 1: its parent"),
    ([0.9, 0.1, 0.8, 0.1, 0.6, 0.1], 2, "stops in group 2: its parent"),
    ([0.95, 0.0, 0.9, 0.1, 0.7, 0.1], 4, "deep leaf"),
    ([1.0, 0.0, 0.8, 0.8, 0.1, 0.9], 5, "tie C=D: C first, then leaf F"),
    ([1.0, 0.0, 0.0, 0.0, 0.9, 0.9], 0, "all-zero group: its parent"),
    ([float("nan"), 0.6, 0.1, 0.1, 0.9, 0.9], 1, "NaN never wins"),
])
def test_top_prediction_fallbacks(toy: WordTree, p_abs: list[float], top: int, rule: str):
    p = torch.tensor(p_abs)
    assert toy.top_prediction(p, HIER_THRESH, 0).item() == top, rule


def test_top_prediction_layouts(toy: WordTree):
    cases = torch.tensor([[0.4, 0.3, 0.3, 0.1, 0.2, 0.1],
                          [0.9, 0.1, 0.1, 0.8, 0.1, 0.1],
                          [0.9, 0.1, 0.8, 0.1, 0.6, 0.1],
                          [0.95, 0.0, 0.9, 0.1, 0.7, 0.1]])
    want = torch.tensor([0, 3, 2, 4])
    assert toy.top_prediction(cases, HIER_THRESH, 1).tolist() == want.tolist()
    region = cases.T.reshape(1, 6, 2, 2)                               # (A, C, H, W)
    assert toy.top_prediction(region, HIER_THRESH, 1).tolist() == want.reshape(1, 2, 2).tolist()
    assert toy.top_prediction(cases, 0.0, 1).tolist() == [4, 3, 4, 4]
    with pytest.raises(ValueError, match="hier_thresh"):
        toy.top_prediction(cases, -0.1, 1)


@pytest.mark.parametrize("image", IMAGES)
def test_top_prediction_mini_yolo9000(reference: Path, tree9k: WordTree, image: str):
    region = torch.from_numpy(np.load(reference / "forward" / "mini-yolo9000" / image / "region.npy")[:, 5:])
    top = tree9k.top_prediction(tree9k.hierarchy_predictions(region, dim=1), HIER_THRESH, dim=1)
    np.testing.assert_array_equal(top.flatten(1).numpy(), hier_top(reference, "mini-yolo9000", image))


def test_top_prediction_from_raw_conv_output(reference: Path, tree9k: WordTree):
    case = reference / "forward" / "mini-yolo9000" / "dog"
    layers = np.load(case / "layers.npz")
    raw = layers[sorted(layers.files)[-1]]
    raw = torch.from_numpy(raw.reshape(NUM, 5 + N_9K, *raw.shape[1:])[:, 5:])
    top = tree9k.top_prediction(tree9k.hierarchy_predictions(tree9k.softmax(raw, 1), 1), HIER_THRESH, 1)
    np.testing.assert_array_equal(top.flatten(1).numpy(), hier_top(reference, "mini-yolo9000", "dog"))


@pytest.mark.parametrize("image", IMAGES)
def test_top_prediction_yolo9000_subset(reference: Path, tree9k: WordTree, image: str):
    subset = np.load(reference / "forward" / "yolo9000" / image / "region_subset.npz")
    a, y, x = subset["cells"].T
    width = subset["coords_obj"].shape[-1]
    p_abs = tree9k.hierarchy_predictions(torch.from_numpy(subset["class_vectors"]), dim=1)   # (K, C)
    top = tree9k.top_prediction(p_abs, HIER_THRESH, dim=1)
    np.testing.assert_array_equal(top.numpy(), hier_top(reference, "yolo9000", image)[a, y * width + x])


# ---------------------------------------------------------------- devices and sizes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(toy: WordTree, tree9k: WordTree):
    x = torch.randn(2, 3, N_9K, 5, 5)
    p = tree9k.softmax(x, 2)
    torch.testing.assert_close(tree9k.softmax(x.cuda(), 2).cpu(), p, rtol=1e-5, atol=1e-7)
    p_abs = tree9k.hierarchy_predictions(p, 2)
    torch.testing.assert_close(tree9k.hierarchy_predictions(p.cuda(), 2).cpu(), p_abs)
    assert torch.equal(tree9k.top_prediction(p_abs.cuda(), HIER_THRESH, 2).cpu(),
                       tree9k.top_prediction(p_abs, HIER_THRESH, 2))


def test_top_prediction_of_a_yolo9000_sized_output_is_one_node_per_cell(tree9k: WordTree):
    """yolo9000's class slice at 544 (its speed: benchmarks/bench_tree.py)."""
    x = torch.randn(1, NUM, N_9K, 17, 17)
    top = tree9k.top_prediction(tree9k.hierarchy_predictions(tree9k.softmax(x, 2), 2), HIER_THRESH, 2)
    assert top.shape == (1, NUM, 17, 17) and 0 <= top.min() and top.max() < N_9K


def test_exportable_tree_softmax_equals_the_segment_one(tree9k: WordTree):
    """The padded-table form used for ONNX export gives the index_reduce softmax's values."""
    x = torch.randn(2, 3, tree9k.n, 4, 5, generator=torch.Generator().manual_seed(0)) * 4
    torch.testing.assert_close(tree9k._exportable_softmax(x, 2), tree9k.softmax(x, 2), rtol=1e-6, atol=1e-7)
