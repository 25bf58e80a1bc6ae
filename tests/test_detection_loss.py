"""YOLOv1 [detection] loss vs pjreddie's forward_detection_layer (cases recorded from the C program, see
fixtures/detection_loss/README.md) and against its rules written out independently."""
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet.heads.detection.layer import DetectionLayer, split_output
from pydarknet.heads.detection.loss import (choose_boxes, detection_deltas, detection_input_gradient, detection_loss,
                                            fill_truth_region)
from pydarknet.options import DetectionOptions

FIXTURES = Path(__file__).parent / "fixtures" / "detection_loss"
CASES = ["rescore_sqrt", "plain_softmax", "forced", "random", "random_after_64000", "no_boxes"]
NON_RANDOM = [case for case in CASES if case != "random"]


def load(name: str) -> tuple[DetectionLayer, dict, int]:
    """The case's layer, its recorded arrays and `seen`."""
    data = dict(np.load(FIXTURES / f"{name}.npz"))
    (batch, side, num, classes, rescore, softmax, sqrt, forced, random, seen, _seed,
     coord_scale, object_scale, noobject_scale, class_scale) = data["params"]
    options = DetectionOptions(coords=4, classes=int(classes), rescore=int(rescore), num=int(num), side=int(side),
                               softmax=int(softmax), sqrt=int(sqrt), forced=int(forced), random=int(random),
                               coord_scale=coord_scale, object_scale=object_scale, noobject_scale=noobject_scale,
                               class_scale=class_scale)
    return DetectionLayer(options), data, int(seen)


def assert_delta(actual: torch.Tensor, expected: np.ndarray) -> None:
    assert np.abs(actual.numpy() - expected).max() <= 1e-4 * np.abs(expected).max()


@pytest.mark.parametrize("name", NON_RANDOM)
def test_matches_darknet(name):
    layer, data, seen = load(name)
    loss = detection_loss(layer, torch.from_numpy(data["output"]), torch.from_numpy(data["boxes"]), seen)
    assert_delta(loss.delta, data["delta"])
    assert loss.cost == pytest.approx(float(data["cost"]), rel=1e-4)
    assert loss.stats_line() == str(data["line"])


@pytest.mark.parametrize("name", CASES)
def test_fill_truth_region_matches_darknet(name):
    """DARKNET(data.c:fill_truth_region): the first box of a cell wins, tiny boxes are dropped, offsets in cells."""
    layer, data, _ = load(name)
    cell_truth = fill_truth_region(torch.from_numpy(data["boxes"]), layer.options.side, layer.options.classes)
    np.testing.assert_array_equal(cell_truth.numpy(), data["truth"])


def test_random_box_choice_matches_darknet_given_its_draws():
    """random=1 before 64000 images: Darknet's rand() draws cannot be replayed, so the boxes it chose are read off
    its delta (the box with coordinate deltas) and everything else must follow from them."""
    layer, data, seen = load("random")
    o = layer.options
    *_, c_box_delta = split_output(torch.from_numpy(data["delta"]), o)              # [B, S*S, num, 4]
    chosen = c_box_delta.abs().sum(-1).argmax(-1)
    cell_truth = torch.from_numpy(data["truth"])
    loss = detection_deltas(o, torch.from_numpy(data["output"]), cell_truth, chosen)
    assert_delta(loss.delta, data["delta"])
    assert loss.stats_line() == str(data["line"])
    draws = [choose_boxes(o, torch.from_numpy(data["output"]), cell_truth, seen, torch.Generator().manual_seed(s))
             for s in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert torch.equal(choose_boxes(o, torch.from_numpy(data["output"]), cell_truth, 64000, None),
                       choose_boxes(o, torch.from_numpy(data["output"]), cell_truth, 64000, None))


def test_softmax_output_is_what_darknet_trains_on():
    """softmax=1: the layer's output (the loss's input) is Darknet's l.output, whose classes are softmaxed."""
    layer, data, _ = load("plain_softmax")
    o = layer.options
    probs, _, _ = split_output(torch.from_numpy(data["output"]), o)
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1, rtol=1e-5)
    logits = probs.log()                                   # a valid pre-softmax input for those probabilities
    raw = torch.cat((logits.flatten(1), torch.from_numpy(data["output"])[:, probs[0].numel():]), 1)
    np.testing.assert_allclose(layer(raw).numpy(), data["output"], rtol=1e-5, atol=1e-7)


def test_first_box_of_a_cell_wins_in_list_order():
    o = DetectionOptions(coords=4, classes=3, num=2, side=2)
    truths = torch.tensor([[[0.2, 0.2, 0.1, 0.1, 0], [0.3, 0.3, 0.2, 0.2, 2], [0.7, 0.7, 0.3, 0.3, 1],
                            [0, 0, 0, 0, 0], [0.8, 0.2, 0.3, 0.3, 1]]])
    cell_truth = fill_truth_region(truths, o.side, o.classes)
    assert cell_truth[0, :, 0].tolist() == [1, 0, 0, 1]              # the row after x == 0 is not read
    assert cell_truth[0, 0, 1:4].tolist() == [1, 0, 0]                # class 0: the first box of cell 0
    assert cell_truth[0, 0, 4:].tolist() == pytest.approx([0.4, 0.4, 0.1, 0.1])


def test_input_gradient_is_minus_delta():
    """DARKNET(detection_layer.c:backward_detection_layer): axpy of l.delta, the softmax Jacobian skipped."""
    layer, data, seen = load("plain_softmax")
    output = torch.from_numpy(data["output"])
    loss = detection_loss(layer, output, torch.from_numpy(data["boxes"]), seen)
    torch.testing.assert_close(detection_input_gradient(layer, output, loss.delta), -loss.delta)


def test_forced_needs_two_boxes():
    layer = DetectionLayer(DetectionOptions(coords=4, classes=2, num=1, side=2, forced=1))
    with pytest.raises(ValueError, match="forced=1"):
        detection_loss(layer, torch.zeros(1, layer.options.outputs), torch.zeros(1, 1, 5), 0)
