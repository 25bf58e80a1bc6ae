"""The [yolo] loss (`pydarknet.yolo_loss`) against AlexeyAB's and pjreddie's C programs, and its quirks.

The pack steps (../shared/reference-yolo/train) and the recorded cases (fixtures/yolo_loss, see its README)
feed the C forward's activated outputs to the loss, so the loss is compared alone.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet import Darknet, YoloLoss, yolo_loss
from pydarknet.boxes import box_giou, box_iou, dx_box_iou
from pydarknet.dialect import ALEXEYAB, PJREDDIE

CASES = Path(__file__).resolve().parent / "fixtures" / "yolo_loss"
PACK_NETS = ("mini-yolov3-tiny", "mini-yolov4-tiny")
DELTA_RTOL = 1e-4      # README §9: yolo_delta within 1e-4 of the layer's largest |delta|
COST_RTOL = 1e-4       # README §9: costs
LOSSES = re.compile(r"(class_loss|iou_loss|total_loss) = (-?\d+\.\d+)")


def assert_deltas_close(got: torch.Tensor, expected: np.ndarray) -> None:
    got = got.cpu().numpy().reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=0, atol=DELTA_RTOL * np.abs(expected).max())


def assert_line_matches(got: str, expected: str) -> None:
    """The line as C prints it; the printed losses (float sums of the delta's squares, where a 1e-7 change of
    one delta moves the last digit) within 1e-4 of the line's total_loss."""
    assert LOSSES.sub(r"\1 = #", got) == LOSSES.sub(r"\1 = #", expected)
    got_losses, expected_losses = (dict(LOSSES.findall(line)) for line in (got, expected))
    tolerance = 1e-4 * float(expected_losses.get("total_loss", 0))
    for key, value in expected_losses.items():
        assert float(got_losses[key]) == pytest.approx(float(value), abs=tolerance), key


def yolo_net(cfg: Path) -> Darknet:
    return Darknet.from_cfg(cfg)


def pack_step(reference_yolo: Path, name: str) -> tuple[Darknet, Path, dict[int, torch.Tensor], torch.Tensor]:
    """A pack training step of `name`: its net, its folder, the C forward's [yolo] outputs (B, A, 85, H, W) by
    layer index, and the truths."""
    step = reference_yolo / "train" / f"{name}_seen20000"
    net = yolo_net(reference_yolo / "mini" / f"{name}.train.cfg")
    outputs = np.load(step / "yolo_output.npz")
    fed = {}
    for key in outputs.files:                                                   # yolo_016_output -> 16
        index = int(key.split("_")[1])
        fed[index] = torch.from_numpy(outputs[key]).reshape(2, -1, 85, net.shapes[index].h, net.shapes[index].w)
    return net, step, fed, torch.from_numpy(np.load(step / "truth.npy"))


@pytest.mark.parametrize("name", PACK_NETS)
def test_pack_step_deltas_costs_and_lines(reference_yolo, name):
    net, step, fed, truth = pack_step(reference_yolo, name)
    meta = json.loads((step / "train_meta.json").read_text())
    deltas = np.load(step / "yolo_delta.npz")
    keys = {int(key.split("_")[1]): key.removesuffix("_delta") for key in deltas.files}     # yolo_016 -> 16
    loss = yolo_loss(net, fed, truth, meta["seen_during_forward"])

    assert isinstance(loss, YoloLoss) and sorted(loss.deltas) == sorted(keys)
    for index, key in keys.items():
        assert_deltas_close(loss.deltas[index], deltas[f"{key}_delta"])
        assert loss.costs[index] == pytest.approx(meta["layer_cost"][key], rel=COST_RTOL)
    assert loss.cost == pytest.approx(meta["get_network_cost"], rel=COST_RTOL)
    assert loss.lines == meta["printed"]
    assert loss.stats_line() == "\n".join(meta["printed"])


@pytest.mark.parametrize("case", sorted(path.stem for path in CASES.glob("*.npz")))
def test_recorded_c_case(case):
    recorded = np.load(CASES / f"{case}.npz")
    net = yolo_net(CASES / f"{case}.cfg")
    layers = sorted(int(key.removeprefix("output_")) for key in recorded.files if key.startswith("output_"))
    outputs = {index: torch.from_numpy(recorded[f"output_{index}"]) for index in layers}
    dialect = PJREDDIE if case.startswith("pj_") else ALEXEYAB
    loss = yolo_loss(net, outputs, torch.from_numpy(recorded["truth"]), 0, dialect)

    for index in layers:
        assert_deltas_close(loss.deltas[index], recorded[f"delta_{index}"])
        assert loss.costs[index] == pytest.approx(float(recorded[f"cost_{index}"][0]), rel=COST_RTOL)
    assert len(loss.lines) == len(recorded["lines"])
    for got, expected in zip(loss.lines, recorded["lines"]):
        assert_line_matches(got, str(expected))


# ---- the quirks, on hand-made outputs -----------------------------------------------------------------------

ONE_LAYER_CFG = """[net]
batch=1
width=64
height=64
channels=3

[convolutional]
filters=7
size=1
stride=32
activation=linear

[yolo]
mask=0
anchors=32,32
classes=2
num=1
ignore_thresh=.5
"""
YOLO = 1          # the [yolo] layer's index in ONE_LAYER_CFG (a 2x2 grid, one anchor of half the input)


@pytest.fixture
def one_layer_net(tmp_path) -> Darknet:
    cfg = tmp_path / "one.cfg"
    cfg.write_text(ONE_LAYER_CFG)
    return yolo_net(cfg)


def hand_output(obj: float = 0.6, probs: tuple[float, float] = (0.2, 0.2)) -> torch.Tensor:
    """(1, 1, 7, 2, 2): every cell's box its own anchor's size (tw = th = 0) centred in the cell; cell (row 0,
    col 1) moved left onto the truth of `truth_rows` (centre .275, IoU .9 with it)."""
    out = torch.zeros(1, 1, 7, 2, 2)
    out[0, 0, :2] = 0.5
    out[0, 0, 0, 0, 1] = -0.45
    out[0, 0, 4] = obj
    out[0, 0, 5], out[0, 0, 6] = probs
    return out


def truth_rows(*classes: int) -> torch.Tensor:
    """One truth per class, all at (.25, .25) of size .5 (cell row 0, col 0), then the end row."""
    rows = [[0.25, 0.25, 0.5, 0.5, float(c)] for c in classes] + [[0.0] * 5]
    return torch.tensor([rows])


def test_alexeyab_ignore_rule_needs_some_class_prob_above_a_quarter(one_layer_net):
    # DARKNET(AlexeyAB yolo_layer.c:compare_yolo_class): any class, not the truth's; pjreddie has no such rule
    no_class = yolo_loss(one_layer_net, {YOLO: hand_output(probs=(0.2, 0.2))}, truth_rows(0), 0)
    other_class = yolo_loss(one_layer_net, {YOLO: hand_output(probs=(0.2, 0.3))}, truth_rows(0), 0)
    pjreddie = yolo_loss(one_layer_net, {YOLO: hand_output(probs=(0.2, 0.2))}, truth_rows(0), 0, PJREDDIE)
    assert float(no_class.deltas[YOLO][0, 0, 4, 0, 1]) == pytest.approx(-0.6)
    assert float(other_class.deltas[YOLO][0, 0, 4, 0, 1]) == 0
    assert float(pjreddie.deltas[YOLO][0, 0, 4, 0, 1]) == 0
    assert float(no_class.deltas[YOLO][0, 0, 4, 1, 1]) == pytest.approx(-0.6)   # far from the truth


def test_alexeyab_box_deltas_accumulate_where_pjreddie_keeps_the_last(one_layer_net):
    output = {YOLO: hand_output()}
    once, twice = (yolo_loss(one_layer_net, output, truth_rows(*classes), 0) for classes in ((0,), (0, 1)))
    pj_once, pj_twice = (yolo_loss(one_layer_net, output, truth_rows(*classes), 0, PJREDDIE)
                         for classes in ((0,), (0, 1)))
    # mse targets at cell (0, 0): x, y offsets .5 (equal to the output), w, h log(.5·64/32) = 0; scale 2 - .25
    expected = 1.75 * (torch.tensor([0.5, 0.5, 0.0, 0.0]) - torch.tensor([0.5, 0.5, 0.0, 0.0]))
    assert torch.equal(pj_once.deltas[YOLO][0, 0, :4, 0, 0], expected)
    assert torch.equal(once.deltas[YOLO][0, 0, :4, 0, 0], 0.75 * expected)        # iou_normalizer .75
    moved = hand_output()
    moved[0, 0, 2, 0, 0] = 0.1                                                     # tw off its target 0
    ab, pj = (yolo_loss(one_layer_net, {YOLO: moved}, truth_rows(0, 1), 0, d) for d in (ALEXEYAB, PJREDDIE))
    assert float(ab.deltas[YOLO][0, 0, 2, 0, 0]) == pytest.approx(2 * 0.75 * 1.75 * -0.1)
    assert float(pj.deltas[YOLO][0, 0, 2, 0, 0]) == pytest.approx(1.75 * -0.1)
    # DARKNET(yolo_layer.c:delta_yolo_class): the first truth writes every class, the second its own entry
    for loss in (twice, pj_twice):
        assert loss.deltas[YOLO][0, 0, 5:, 0, 0].tolist() == pytest.approx([1 - 0.2, 1 - 0.2])


def test_pjreddie_prints_minus_nan_without_truths(one_layer_net):
    loss = yolo_loss(one_layer_net, {YOLO: hand_output()}, torch.zeros(1, 1, 5), 0, PJREDDIE)
    assert loss.lines == [f"Region {YOLO} Avg IOU: -nan, Class: -nan, Obj: -nan, No Obj: 0.600000, .5R: -nan, "
                          ".75R: -nan,  count: 0"]
    assert loss.costs[YOLO] == pytest.approx(4 * 0.6 * 0.6, rel=1e-6)


def test_a_layer_that_is_not_yolo_is_refused(one_layer_net):
    with pytest.raises(ValueError, match="layer 0 is a"):
        yolo_loss(one_layer_net, {0: hand_output()}, truth_rows(0), 0)


def centre_distance_and_diagonal(a_cxcywh: torch.Tensor, b_cxcywh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) the squared centre distance S and squared diagonal C of the box enclosing both."""
    lows = torch.minimum(a_cxcywh[:, :2] - a_cxcywh[:, 2:] / 2, b_cxcywh[:, :2] - b_cxcywh[:, 2:] / 2)
    highs = torch.maximum(a_cxcywh[:, :2] + a_cxcywh[:, 2:] / 2, b_cxcywh[:, :2] + b_cxcywh[:, 2:] / 2)
    return ((a_cxcywh[:, :2] - b_cxcywh[:, :2]) ** 2).sum(1), ((highs - lows) ** 2).sum(1)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou"])
def test_iou_gradient_is_the_derivative_darknet_computes(kind):
    """box.c:dx_box_iou: d/dx, d/dy of the IoU (GIoU); for w and h twice that ("we do not divide by 2").
    DIoU adds d(-S/C) (the penalty as S/C, not box_diou's (S/C)^0.6), with the sign of its dC/dx, dC/dy part
    flipped as the C code has it."""
    generator = torch.Generator().manual_seed(0)
    truth = torch.rand(64, 4, generator=generator, dtype=torch.float64) * 0.4 + 0.3
    pred = (truth + (torch.rand(64, 4, generator=generator, dtype=torch.float64) - 0.5) * 0.1).requires_grad_()
    overlap = {"iou": box_iou, "giou": box_giou, "diou": box_iou}[kind]
    (d_overlap,) = torch.autograd.grad(overlap(pred, truth).sum(), pred)
    expected = torch.cat((d_overlap[:, :2], 2 * d_overlap[:, 2:]), dim=1)
    if kind == "diou":
        distance, diagonal = centre_distance_and_diagonal(pred, truth)
        (d_distance,) = torch.autograd.grad(distance.sum(), pred, retain_graph=True)
        (d_diagonal,) = torch.autograd.grad(diagonal.sum(), pred)
        flipped = torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64)
        ratio = (distance / diagonal ** 2).detach()[:, None]
        expected = expected - d_distance / diagonal.detach()[:, None] + flipped * ratio * d_diagonal
    torch.testing.assert_close(dx_box_iou(pred.detach(), truth, kind), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["iou", "giou", "diou", "ciou"])
def test_dx_box_iou_reads_a_zero_size_as_one(kind):
    """yolo_layer.c:delta_yolo_box ("avoid nan in dx_box_iou"): a zero width or height of the prediction is 1."""
    truth = torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.5, 0.5, 0.4, 0.3]])
    zero_sizes = torch.tensor([[0.45, 0.55, 0.0, 0.2], [0.45, 0.55, 0.3, 0.0]])
    unit_sizes = torch.tensor([[0.45, 0.55, 1.0, 0.2], [0.45, 0.55, 0.3, 1.0]])
    gradient = dx_box_iou(zero_sizes, truth, kind)
    assert torch.isfinite(gradient).all()
    torch.testing.assert_close(gradient, dx_box_iou(unit_sizes, truth, kind), rtol=0, atol=0)


def test_dx_box_iou_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown IoU kind 'mse'"):
        dx_box_iou(torch.zeros(1, 4), torch.zeros(1, 4), "mse")


@pytest.mark.gpu
@pytest.mark.parametrize("name", PACK_NETS)
def test_cuda_loss_equals_the_cpu_loss(reference_yolo, name):
    net, _, fed, truth = pack_step(reference_yolo, name)
    cpu = yolo_loss(net, fed, truth, 0)
    cuda = yolo_loss(net.to("cuda"), {i: out.cuda() for i, out in fed.items()}, truth.cuda(), 0)
    for index in fed:
        assert_deltas_close(cuda.deltas[index], cpu.deltas[index].numpy())
        assert cuda.costs[index] == pytest.approx(cpu.costs[index], rel=1e-5)
    for got, expected in zip(cuda.lines, cpu.lines):
        assert_line_matches(got, expected)
