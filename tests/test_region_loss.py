"""Region loss vs Darknet's training references (README §6-§9) and a cell-by-cell oracle of its rules."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.options import RegionOptions
from pydarknet.heads.region.loss import region_input_gradient, region_loss
from pydarknet.tree import WordTree, read_map

CASES = ["mini-yolov2-voc_seen0", "mini-yolov2-voc_seen20000", "mini-yolo9000_seen0", "mini-yolo9000_seen20000"]
LAST_CONV = {"mini-yolov2-voc": 30, "mini-yolo9000": 23}


def region_options(cfg: Path) -> RegionOptions:
    """RegionOptions from the key=value lines of the cfg's [region] section (tree/map resolved)."""
    section = cfg.read_text().split("[region]", 1)[1].split("\n[", 1)[0]
    opts = RegionOptions()
    for line in section.splitlines():
        key, _, value = (part.strip() for part in line.split("#")[0].partition("="))
        if not value:
            continue
        if key == "anchors":
            opts.anchors = [float(a) for a in value.split(",")]
        elif key in ("tree", "map"):
            setattr(opts, key, str((cfg.parent / value).resolve()))
        else:
            setattr(opts, key, type(getattr(opts, key))(float(value)))
    return opts


@pytest.fixture(scope="module")
def nine_k_tree(reference):
    return WordTree.read(reference / "darknet/data/9k.tree")


@pytest.fixture(scope="module", params=CASES)
def case(request, reference, nine_k_tree):
    """(region output, RegionLoss, meta, reference delta, case dir) of one training reference."""
    directory = reference / "train" / request.param
    meta = json.loads((directory / "train_meta.json").read_text())
    opts = region_options(reference / meta["train_cfg"])
    output_file = meta.get("files_identical_to", {}).get("region_output.npy", "region_output.npy")
    output = torch.from_numpy(np.load(directory / output_file))
    tree = nine_k_tree if opts.tree else None
    class_map = read_map(opts.map) if opts.map else None
    loss = region_loss(output, torch.from_numpy(np.load(directory / "truth.npy")), opts,
                       meta["seen_during_forward"], tree, class_map)
    return output, loss, meta, np.load(directory / "region_delta.npz")["delta"], directory


def test_delta_matches_reference(case):
    _, loss, _, expected, _ = case
    assert np.abs(loss.delta.numpy() - expected).max() <= 1e-4 * np.abs(expected).max()


def test_cost_matches_reference(case):
    _, loss, meta, _, _ = case
    assert loss.cost == pytest.approx(meta["cost"], rel=1e-4)


def test_stats_match_reference(case):
    _, loss, meta, _, directory = case
    for key, value in meta["stats"].items():
        assert loss.stats[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
    assert loss.stats_line() == meta["stats_line"]
    assert loss.stats_line() in (directory / "stdout.txt").read_text().splitlines()


def test_input_gradient_matches_last_conv_bias_gradient(case):
    output, loss, meta, _, directory = case
    net = meta["train_cfg"].split("/")[-1].split(".")[0]
    bias_updates = np.load(directory / "grads.npz")[f"grad_{LAST_CONV[net]:03d}_biases"]
    # the last conv is linear without BN: its bias update is the sum of its delta over batch and cells
    ours = -region_input_gradient(output, loss.delta).sum(dim=(0, 3, 4)).flatten().numpy()
    assert np.abs(ours - bias_updates).max() <= 1e-4 * np.abs(bias_updates).max()


def test_input_gradient_matches_last_conv_delta(reference):
    directory = reference / "train/mini-yolov2-voc_seen20000"
    meta = json.loads((directory / "train_meta.json").read_text())
    output = torch.from_numpy(np.load(reference / "train/mini-yolov2-voc_seen0/region_output.npy"))
    delta = torch.from_numpy(np.load(directory / "region_delta.npz")["delta"])
    expected = np.load(directory / "layer_deltas.npz")[f"delta_{LAST_CONV['mini-yolov2-voc']:03d}"]
    ours = -region_input_gradient(output, delta).reshape(expected.shape).numpy()
    assert meta["region_layer_index"] == LAST_CONV["mini-yolov2-voc"] + 1
    assert np.abs(ours - expected).max() <= 1e-6 * np.abs(expected).max()


# ----------------------------------------------------------------------------------------------
# Synthetic cases against an oracle that applies README §7/§8's rules one cell and truth at a time.

TOY_TREE = WordTree([f"n{i}" for i in range(9)], [-1, -1, 0, 0, 0, 1, 1, 2, 2])   # groups {0,1} {2,3,4} {5,6} {7,8}
TOY_MAP = np.array([7, 5, 3, 8])
LABEL = 999999.0


def oracle_delta(out: np.ndarray, truth: np.ndarray, opts: RegionOptions, seen: int,
                 tree: WordTree | None, class_map: np.ndarray | None) -> np.ndarray:
    """Darknet's region delta, built with plain loops in float64 from the documented rules."""
    nb, na, _, nh, nw = out.shape
    classes = out.shape[2] - 5
    parent = tree.parent if tree else np.full(classes, -1)
    group = tree.group if tree else np.zeros(classes, dtype=int)
    anchors = np.asarray(opts.anchors, dtype=np.float64).reshape(-1, 2)
    delta = np.zeros(out.shape, dtype=np.float64)

    def pred_box(b, n, j, i):
        x = out[b, n, :, j, i].astype(np.float64)
        return np.array([(i + x[0]) / nw, (j + x[1]) / nh,
                         math.exp(x[2]) * anchors[n, 0] / nw, math.exp(x[3]) * anchors[n, 1] / nh])

    def iou(p, q):
        iw = min(p[0] + p[2] / 2, q[0] + q[2] / 2) - max(p[0] - p[2] / 2, q[0] - q[2] / 2)
        ih = min(p[1] + p[3] / 2, q[1] + q[3] / 2) - max(p[1] - p[3] / 2, q[1] - q[3] / 2)
        inter = 0.0 if iw < 0 or ih < 0 else iw * ih
        return inter / (p[2] * p[3] + q[2] * q[3] - inter)

    def pull_box(b, n, j, i, box, scale):
        goal = [box[0] * nw - i, box[1] * nh - j, math.log(box[2] * nw / anchors[n, 0]),
                math.log(box[3] * nh / anchors[n, 1])]
        delta[b, n, :4, j, i] = scale * (np.array(goal) - out[b, n, :4, j, i])

    def path(c):
        while c >= 0:
            yield c
            c = parent[c]

    def pull_class(b, n, j, i, c):
        for node in path(c):
            members = np.flatnonzero(group == group[node])
            delta[b, n, 5 + members, j, i] = opts.class_scale * (0 - out[b, n, 5 + members, j, i])
            delta[b, n, 5 + node, j, i] = opts.class_scale * (1 - out[b, n, 5 + node, j, i])

    cells = [(n, j, i) for n in range(na) for j in range(nh) for i in range(nw)]
    for b in range(nb):
        rows = []
        for row in truth[b, :30]:
            if row[0] == 0:
                break
            rows.append(row)
        labels = [r for r in rows if r[0] > 1e5 and r[1] > 1e5] if tree else []
        if labels:
            delta[b, :, 4] = opts.noobject_scale * (0 - out[b, :, 4])
            c = int(labels[0][4])
            score = [out[b, n, 4, j, i] * np.prod([out[b, n, 5 + k, j, i] for k in path(c)]) for n, j, i in cells]
            n, j, i = cells[int(np.argmax(score))]
            pull_class(b, n, j, i, c)
            delta[b, n, 4, j, i] = 0
            continue
        for n, j, i in cells:
            best = max([iou(pred_box(b, n, j, i), r[:4]) for r in rows], default=0)
            delta[b, n, 4, j, i] = 0 if best > opts.thresh else opts.noobject_scale * (0 - out[b, n, 4, j, i])
            if seen < 12800:
                prior = [(i + .5) / nw, (j + .5) / nh, anchors[n, 0] / nw, anchors[n, 1] / nh]
                pull_box(b, n, j, i, prior, .01)
        for r in rows:
            i, j = int(r[0] * nw), int(r[1] * nh)
            shapes = anchors / [nw, nh] if opts.bias_match else [pred_box(b, n, j, i)[2:] for n in range(na)]
            n = int(np.argmax([iou([0, 0, *s], [0, 0, *r[2:4]]) for s in shapes]))
            overlap = iou(pred_box(b, n, j, i), r[:4])
            pull_box(b, n, j, i, r[:4], opts.coord_scale * (2 - r[2] * r[3]))
            goal = overlap if opts.rescore else 1
            delta[b, n, 4, j, i] = opts.object_scale * (goal - out[b, n, 4, j, i])
            c = int(r[4])
            pull_class(b, n, j, i, class_map[c] if class_map is not None else c)
    return delta


def toy_output(classes: int, tree: WordTree | None, seed: int) -> torch.Tensor:
    """(2, 3, 5+classes, 5, 5) activated region output with random raw values."""
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn(2, 3, 5 + classes, 5, 5, generator=gen)
    probs = tree.softmax(raw[:, :, 5:], dim=2) if tree else raw[:, :, 5:].softmax(dim=2)
    return torch.cat((torch.sigmoid(raw[:, :, :2]), raw[:, :, 2:4], torch.sigmoid(raw[:, :, 4:5]), probs), dim=2)


def toy_options(classes: int, **overrides) -> RegionOptions:
    opts = RegionOptions(anchors=[0.6, 0.8, 1.5, 2.0, 3.5, 3.0], classes=classes, num=3, softmax=1, rescore=1,
                         object_scale=5, thresh=.6, bias_match=1)
    for key, value in overrides.items():
        setattr(opts, key, value)
    return opts


def toy_truth(output: torch.Tensor, anchors: list[float]) -> torch.Tensor:
    """(2, 32, 5) truths: two sharing a cell and anchor, one equal to a prediction (IoU 1 > thresh),
    a row after an x == 0 row, and rows beyond the 30 Darknet scans."""
    truth = torch.zeros(2, 32, 5)
    truth[0, :4] = torch.tensor([[.31, .52, .20, .30, 1], [.33, .55, .21, .28, 3], [.75, .2, .5, .6, 2],
                                 [.1, .9, .1, .1, 0]])
    n, j, i = 1, 3, 2
    x = output[0, n, :4, j, i]
    truth[0, 4] = torch.stack(((i + x[0]) / 5, (j + x[1]) / 5, torch.exp(x[2]) * anchors[2] / 5,
                               torch.exp(x[3]) * anchors[3] / 5, torch.tensor(2.)))
    truth[0, 6] = torch.tensor([.5, .5, .3, .3, 1])                    # after the x == 0 row: ignored
    truth[1, :2] = torch.tensor([[.62, .41, .35, .25, 0], [.61, .43, .3, .2, 2]])
    truth[1, 30:] = torch.tensor([[.5, .5, .4, .4, 1], [.2, .2, .2, .2, 1]])   # beyond row 30: ignored
    truth[1, 2:30] = torch.tensor([.9, .9, .05, .05, 3])
    return truth


@pytest.mark.parametrize("seen", [2, 12799, 12800])
@pytest.mark.parametrize("bias_match, rescore", [(1, 1), (0, 0)])
def test_softmax_matches_oracle(seen, bias_match, rescore):
    opts = toy_options(4, bias_match=bias_match, rescore=rescore)
    output = toy_output(4, None, seed=1)
    truth = toy_truth(output, opts.anchors)
    loss = region_loss(output, truth, opts, seen)
    expected = oracle_delta(output.numpy(), truth.numpy(), opts, seen, None, None)
    np.testing.assert_allclose(loss.delta.numpy(), expected, atol=1e-5)
    assert loss.cost == pytest.approx(float((expected ** 2).sum()), rel=1e-5)
    assert loss.count == 5 + 30


def test_prior_warmup_only_before_12800_seen():
    opts = toy_options(4)
    output = toy_output(4, None, seed=1)
    truth = toy_truth(output, opts.anchors)
    early, late = region_loss(output, truth, opts, 12799), region_loss(output, truth, opts, 12800)
    # a cell no truth falls in: pulled toward its own centre and the anchor size (tx = ty = .5, tw = th = 0)
    expected = 0.01 * (torch.tensor([.5, .5, 0, 0]) - output[0, 2, :4, 0, 4])
    torch.testing.assert_close(early.delta[0, 2, :4, 0, 4], expected)
    assert torch.all(late.delta[0, 2, :4, 0, 4] == 0)


def test_later_truth_overwrites_same_cell_and_anchor():
    opts = toy_options(4)
    output = toy_output(4, None, seed=1)
    truth = toy_truth(output, opts.anchors)
    swapped = truth.clone()
    swapped[0, [0, 1]] = truth[0, [1, 0]]
    first, second = region_loss(output, truth, opts, 20000), region_loss(output, swapped, opts, 20000)
    # truths 0 and 1 share cell (x=1, y=2); the anchor their shapes match best is 1
    assert not torch.allclose(first.delta[0, 1, :, 2, 1], second.delta[0, 1, :, 2, 1])
    assert first.target[0, 1, 5 + 3, 2, 1] == 1 and second.target[0, 1, 5 + 1, 2, 1] == 1
    assert first.target[0, 1, 0, 2, 1] == pytest.approx(.33 * 5 - 1, abs=1e-6)
    assert second.target[0, 1, 0, 2, 1] == pytest.approx(.31 * 5 - 1, abs=1e-6)


def test_rows_beyond_thirty_are_ignored():
    opts = toy_options(4)
    output = toy_output(4, None, seed=1)
    truth = toy_truth(output, opts.anchors)
    full, cut = region_loss(output, truth, opts, 2), region_loss(output, truth[:, :30], opts, 2)
    assert torch.equal(full.delta, cut.delta)
    moved = truth.clone()
    moved[1, 2:4] = truth[1, 30:]
    assert not torch.equal(region_loss(output, moved, opts, 2).delta, full.delta)


def test_noobject_zeroed_when_prediction_fits_a_truth():
    opts = toy_options(4)
    output = toy_output(4, None, seed=1)
    loss = region_loss(output, toy_truth(output, opts.anchors), opts, 20000)
    # the prediction at anchor 1, cell (x=2, y=3) equals truth 4, which its shape assigns to another anchor
    assert loss.scale[0, 1, 4, 3, 2] == 0 and loss.delta[0, 1, 4, 3, 2] == 0
    assert loss.scale[0, 2, 4, 3, 2] == opts.noobject_scale


def tree_truth(output: torch.Tensor, anchors: list[float]) -> torch.Tensor:
    """Image 0 as toy_truth (COCO-like ids through TOY_MAP); image 1: a box row, then two label rows."""
    truth = toy_truth(output, anchors)
    truth[1] = 0
    truth[1, :3] = torch.tensor([[.5, .5, .2, .2, 1], [LABEL, LABEL, LABEL, LABEL, 8], [LABEL, LABEL, LABEL, LABEL, 3]])
    return truth


@pytest.mark.parametrize("seen", [2, 20000])
def test_tree_matches_oracle(seen):
    opts = toy_options(9)
    output = toy_output(9, TOY_TREE, seed=2)
    truth = tree_truth(output, opts.anchors)
    loss = region_loss(output, truth, opts, seen, TOY_TREE, TOY_MAP)
    expected = oracle_delta(output.numpy(), truth.numpy(), opts, seen, TOY_TREE, TOY_MAP)
    np.testing.assert_allclose(loss.delta.numpy(), expected, atol=1e-5)


def test_tree_overwrite_keeps_groups_off_the_later_path():
    opts = toy_options(9)
    output = toy_output(9, TOY_TREE, seed=2)
    loss = region_loss(output, tree_truth(output, opts.anchors), opts, 20000, TOY_TREE, TOY_MAP)
    # cell (x=1, y=2), anchor 1: class 1 -> node 5 (path 5, 1) then class 3 -> node 8 (path 8, 2, 0)
    target, scale = loss.target[0, 1, 5:, 2, 1], loss.scale[0, 1, 5:, 2, 1]
    assert target.tolist() == [1, 0, 1, 0, 0, 1, 0, 0, 1]
    assert scale.tolist() == [1.0] * 9


def test_classification_only_label_trains_best_cell_only():
    opts = toy_options(9)
    output = toy_output(9, TOY_TREE, seed=2)
    loss = region_loss(output, tree_truth(output, opts.anchors), opts, 2, TOY_TREE, TOY_MAP)
    score = output[1, :, 4] * TOY_TREE.path_probability(output[1, :, 5:], 8, dim=1)   # (A, H, W)
    n, j, i = np.unravel_index(int(score.argmax()), score.shape)
    written = loss.scale[1] != 0
    assert written[:, :4].sum() == 0                                     # no box or prior deltas
    assert written[:, 4].sum() == 3 * 25 - 1 and not written[n, 4, j, i]
    # path 8 -> 2 -> 0: groups {7,8}, {2,3,4}, {0,1}; the second label row (node 3) is not used
    assert written[n, 5:, j, i].tolist() == [True] * 5 + [False] * 2 + [True] * 2
    assert loss.target[1, n, 5:, j, i].tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 1]
    assert written[:, 5:].sum() == 7
    assert loss.count == 5


def test_classification_only_stats():
    opts = toy_options(9)
    output = toy_output(9, TOY_TREE, seed=2)
    truth = tree_truth(output, opts.anchors)
    truth[0] = 0
    loss = region_loss(output, truth, opts, 2, TOY_TREE, TOY_MAP)
    path_prob = TOY_TREE.path_probability(output[1, :, 5:], 8, dim=1)          # (A, H, W)
    best = int((output[1, :, 4] * path_prob).argmax())
    assert loss.count == 0 and math.isnan(loss.avg_iou)
    assert loss.avg_class == pytest.approx(float(path_prob.flatten()[best]), rel=1e-6)   # objectness not included
    # DARKNET: No Obj averages over every cell of the batch; the label-only image adds nothing
    assert loss.avg_no_obj == pytest.approx(float(output[0, :, 4].sum()) / (2 * 3 * 25), rel=1e-6)
    assert "nan" in loss.stats_line()


def test_input_gradient_scales_logistic_entries_only():
    output = toy_output(4, None, seed=3)
    delta = torch.randn(output.shape, generator=torch.Generator().manual_seed(4))
    gradient = region_input_gradient(output, delta)
    y = output[:, :, [0, 1, 4]]
    torch.testing.assert_close(gradient[:, :, [0, 1, 4]], -delta[:, :, [0, 1, 4]] * y * (1 - y))
    torch.testing.assert_close(gradient[:, :, [2, 3]], -delta[:, :, [2, 3]])
    torch.testing.assert_close(gradient[:, :, 5:], -delta[:, :, 5:])


def test_loss_gradient_is_minus_delta():
    opts = toy_options(4)
    output = toy_output(4, None, seed=1).requires_grad_()
    loss = region_loss(output, toy_truth(output.detach(), opts.anchors), opts, 2)
    loss.loss(output).backward()
    torch.testing.assert_close(output.grad, -loss.delta)


@pytest.mark.parametrize("overrides, message", [({"coords": 5}, "coords=5"), ({"softmax": 0}, "logistic")])
def test_unsupported_options_raise(overrides, message):
    output = toy_output(4, None, seed=1)
    with pytest.raises(NotImplementedError, match=message):
        region_loss(output, torch.zeros(2, 30, 5), toy_options(4, **overrides), 2)
