"""`[maxpool]` at inference: the 2x2 / stride 2 maps take three elementwise maxima instead of max_pool2d."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pydarknet.layers.pool import MaxPoolLayer


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 16, 416, 416), (2, 5, 14, 8), (3, 1, 2, 2)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_2x2_blocks_are_max_pool2d_bit_for_bit(dtype, shape, channels_last):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    x[0, 0, 0, :2] = x[0, 0, 1, :2] = 7.0   # ties
    x[0, 0, 0, 1] = float("nan")            # a NaN wins its window, as in max_pool2d
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    layer = MaxPoolLayer(size=2, stride=2, padding=1)   # Darknet's default padding = size - 1: unused here
    with torch.inference_mode():
        got = layer(x)
    want = nn.functional.max_pool2d(x, 2, 2)
    assert torch.equal(got.isnan(), want.isnan()) and got.isnan()[0, 0, 0, 0]
    assert torch.equal(got.nan_to_num(), want.nan_to_num())
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_training_keeps_max_pool2ds_gradient_to_the_first_maximum():
    """DARKNET(maxpool_layer.c:backward_maxpool_layer): the whole delta goes to the index of the max;
    a tie would split it under the elementwise form, so training runs max_pool2d."""
    x = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]], requires_grad=True)
    MaxPoolLayer(size=2, stride=2, padding=1)(x).sum().backward()
    assert x.grad.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]
