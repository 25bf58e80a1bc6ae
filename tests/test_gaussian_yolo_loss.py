"""[Gaussian_yolo] loss vs AlexeyAB's forward_gaussian_yolo_layer (cases recorded from the C program, see
fixtures/gaussian_loss/README.md), and its rules checked on hand-made outputs."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.heads.darknet_sums import squared_magnitude
from pydarknet.heads.yolo.gaussian_loss import gaussian_yolo_loss
from pydarknet.network import Darknet

FIXTURES = Path(__file__).parent / "fixtures" / "gaussian_loss"
CASES = ["mse", "giou_max_delta", "ciou_iou_thresh_smooth", "diou_counters_left_top", "iou_right_bottom"]
LAYERS = (3, 6)


def load(name: str, tmp_path: Path) -> tuple[Darknet, dict]:
    data = dict(np.load(FIXTURES / f"{name}.npz"))
    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(str(data["cfg"]))
    return Darknet.from_cfg(cfg), data


def run(net: Darknet, data: dict, truth: np.ndarray | None = None):
    outputs = {i: torch.from_numpy(data[f"output_{i}"]) for i in LAYERS}
    return gaussian_yolo_loss(net, outputs, torch.from_numpy(data["truth"] if truth is None else truth), 0)


@pytest.mark.parametrize("name", CASES)
def test_matches_darknet(name, tmp_path):
    net, data = load(name, tmp_path)
    loss = run(net, data)
    for index in LAYERS:
        expected = data[f"delta_{index}"]
        assert np.abs(loss.deltas[index].numpy() - expected).max() <= 1e-4 * np.abs(expected).max()
        assert loss.costs[index] == pytest.approx(float(data[f"cost_{index}"]), rel=1e-4)
    assert loss.lines == [str(line) for line in data["lines"]]
    assert loss.cost == pytest.approx(np.mean([float(data[f"cost_{i}"]) for i in LAYERS]), rel=1e-4)
    assert loss.stats_line() == "\n".join(loss.lines)


def test_layer_outputs_are_the_c_outputs(tmp_path):
    """The recorded outputs are what GaussianYoloLayer.forward gives for some raw input (scale_x_y=1.05 case)."""
    net, data = load("giou_max_delta", tmp_path)
    output = torch.from_numpy(data["output_3"])
    raw = output.clone()
    sigmoid_entries = [1, 3, 5, 7] + list(range(8, output.shape[2]))
    raw[:, :, sigmoid_entries] = torch.logit(output[:, :, sigmoid_entries].double()).float()
    scale = net.layers[3].options.scale_x_y
    raw[:, :, [0, 2]] = torch.logit(((output[:, :, [0, 2]].double() + 0.5 * (scale - 1)) / scale)).float()
    forward = net.layers[3](raw.flatten(1, 2))
    torch.testing.assert_close(forward, output, rtol=1e-5, atol=1e-5)


def test_truths_after_an_empty_row_are_not_read(tmp_path):
    net, data = load("mse", tmp_path)
    truth = data["truth"].copy()
    assert truth[1, 4, 0] == 0 and truth[1, 5, 0] != 0      # the fixture has a truth after the list's end
    truth[1, 5:] = 0
    for index in LAYERS:
        np.testing.assert_array_equal(run(net, data, truth).deltas[index].numpy(), run(net, data).deltas[index].numpy())


def test_no_truths_pulls_objectness_to_zero_only(tmp_path):
    """Without truths: objectness delta -obj_normalizer * obj everywhere, nothing else; the averages print -nan."""
    net, data = load("diou_counters_left_top", tmp_path)   # obj_normalizer=0.8
    loss = run(net, data, np.zeros_like(data["truth"]))
    for index in LAYERS:
        output = torch.from_numpy(data[f"output_{index}"])
        expected = torch.zeros_like(output)
        expected[:, :, 8] = 0.8 * (0 - output[:, :, 8])
        torch.testing.assert_close(loss.deltas[index], expected)
        assert loss.costs[index] == pytest.approx(float((expected.double() ** 2).sum()), rel=1e-6)
    assert loss.lines[0].startswith("Region 3 Avg IOU: -nan, Class: -nan, Obj: -nan, No Obj: ")
    assert ".5R: -nan, .75R: -nan,  count: 0, class_loss = " in loss.lines[0]


def test_class_out_of_range_is_an_error(tmp_path):
    net, data = load("mse", tmp_path)
    truth = data["truth"].copy()
    truth[0, 0, 4] = 2                                      # classes=2
    with pytest.raises(ValueError, match="class 2, but classes=2"):
        run(net, data, truth)


def test_squared_magnitude_sums_in_sse_lanes():
    """DARKNET(utils.c:mag_array) built -Ofast: four float lanes, (0+2)+(1+3), then the tail."""
    values = torch.tensor([1e4, 1.0, 3e-4, 1.0, 1e-4, 1.0, 1e-4, 1.0, 2.0], dtype=torch.float32)
    squares = (values.numpy().astype(np.float32)) ** 2
    lanes = squares[:8].reshape(2, 4).sum(0, dtype=np.float32)
    total = np.float32(np.float32(lanes[0] + lanes[2]) + np.float32(lanes[1] + lanes[3])) + squares[8]
    expected = np.float32(np.float64(np.sqrt(np.float32(total))) ** 2)
    assert squared_magnitude(values) == expected
