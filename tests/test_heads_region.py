"""The region head's one box coder and the dialects, checked against independent computations."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pydarknet.detections import Detection
from pydarknet.dialect import ALEXEYAB, PJREDDIE, dialect_for
from pydarknet.heads.region.coder import decode_boxes, encode_boxes

ANCHORS = torch.tensor([[1.08, 1.19], [3.42, 4.41], [16.62, 10.52]])


def _region_output(seed: int = 0, batch: int = 2, h: int = 5, w: int = 7, classes: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(batch, len(ANCHORS), 5 + classes, h, w, generator=generator) * 2
    raw[:, :, :2] = torch.sigmoid(raw[:, :, :2])    # entries 0, 1 are logistic offsets in the cell
    return raw


def test_encode_inverts_decode():
    output = _region_output()
    boxes = decode_boxes(output, ANCHORS)                                          # [B, A, H, W, 4]
    _, a, _, h, w = output.shape
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    targets = encode_boxes(boxes, cols, rows, ANCHORS.view(1, a, 1, 1, 2), w, h)   # [B, A, H, W, 4]
    torch.testing.assert_close(targets, output[:, :, :4].permute(0, 1, 3, 4, 2), rtol=0, atol=2e-5)


def test_exact_decode_is_darknets_float_and_double_arithmetic():
    """DARKNET(region_layer.c:get_region_box): x = (i + x) / w in float, w = exp(tw) * bias / w in double."""
    output = _region_output(seed=1, batch=1)
    boxes = decode_boxes(output, ANCHORS, exact=True)[0]                               # [A, H, W, 4]
    raw = output[0].numpy()
    _, _, h, w = raw.shape
    for n, j, i in [(0, 0, 0), (1, 2, 3), (2, 4, 6), (2, 1, 5)]:
        x = (np.float32(i) + raw[n, 0, j, i]) / np.float32(w)
        bw = np.float32(math.exp(float(raw[n, 2, j, i])) * float(np.float32(ANCHORS[n, 0])) / w)
        bh = np.float32(math.exp(float(raw[n, 3, j, i])) * float(np.float32(ANCHORS[n, 1])) / h)
        assert boxes[n, j, i, 0].item() == x
        assert (boxes[n, j, i, 2].item(), boxes[n, j, i, 3].item()) == (bw, bh)


def test_float32_decode_is_within_an_ulp_of_the_exact_one():
    output = _region_output(seed=2)
    exact, fast = decode_boxes(output, ANCHORS, exact=True), decode_boxes(output, ANCHORS)
    assert torch.equal(exact[..., :2], fast[..., :2])
    ulp = torch.abs(torch.nextafter(exact, torch.full_like(exact, math.inf)) - exact)
    assert bool((torch.abs(exact - fast) <= 2 * ulp).all())


def test_decode_is_differentiable_for_the_loss():
    output = _region_output(seed=3).requires_grad_()
    decode_boxes(output, ANCHORS).sum().backward()
    assert output.grad is not None and bool(output.grad[:, :, :4].ne(0).any())


def test_dialects_answer_as_their_darknet():
    plain, letter_box = (SimpleNamespace(options=SimpleNamespace(letter_box=v)) for v in (0, 1))
    assert PJREDDIE.letterbox(plain) and PJREDDIE.letterbox(letter_box)
    assert not ALEXEYAB.letterbox(plain) and ALEXEYAB.letterbox(letter_box) and ALEXEYAB.letterbox(plain, True)
    assert (PJREDDIE.test_thresh, ALEXEYAB.test_thresh) == (0.5, 0.25)
    assert (PJREDDIE.valid_thresh, PJREDDIE.valid_nms, ALEXEYAB.valid_thresh, ALEXEYAB.valid_nms) == \
        (0.005, 0.45, 0.001, 0.6)
    assert PJREDDIE.label_path("/d/obj/images/x.jpg") == "/d/obj/labels/x.txt"
    assert ALEXEYAB.label_path("/d/obj/images/x.jpg") == "/d/obj/images/x.txt"
    assert dialect_for(True) is ALEXEYAB and dialect_for(False) is PJREDDIE


@pytest.mark.parametrize("dialect, objectness", [(PJREDDIE, 0.7), (ALEXEYAB, 1.0)])
def test_objectness_rule(dialect, objectness):
    det = Detection(np.zeros(4, np.float32), 0.7, np.array([0.5, 0.6], np.float32))
    (ruled,) = dialect.objectness_rule([det])
    assert ruled.objectness == objectness and ruled.probs is det.probs
