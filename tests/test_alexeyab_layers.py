"""AlexeyAB's activations and layer keys: each quirk against its formula, each unimplemented key an UnsupportedError
naming file:line (the nets themselves are compared with AlexeyAB's Darknet in test_zoo_forward.py)."""
from __future__ import annotations

import pytest
import torch

from pydarknet.cfg import parse_cfg_text
from pydarknet.errors import CfgError, UnsupportedError
from pydarknet.layers import activations
from pydarknet.layers.activations import ACTIVATIONS
from pydarknet.network import Darknet
from pydarknet.summary import layer_table

NET = "[net]\nwidth=8\nheight=8\nchannels=4\n\n"


def build(body: str) -> Darknet:
    net = Darknet(parse_cfg_text(NET + body, "ab.cfg"))
    net.reset_parameters(0)
    return net.eval()


@pytest.mark.parametrize("block", [activations.MISH_BLOCK, 4096])   # a whole map, and blocks with a remainder
def test_mish_follows_alexeyabs_softplus_thresholds(monkeypatch, block):
    monkeypatch.setattr(activations, "MISH_BLOCK", block)
    x = torch.cat([torch.tensor([-1e4, -100.0, -30.0, -21.0, -5.0, 0.0, 3.0, 21.0, 50.0, 100.0, 1e4]),
                   torch.linspace(-25, 25, 20001)])
    exact = x.double()
    softplus = torch.where(exact > 20, exact, torch.where(exact < -20, torch.exp(exact), torch.log1p(torch.exp(exact))))
    # float32 rounding: AlexeyAB's logf(expf(x) + 1) is 0 from x = -16.6 to -20, where x·exp(x) > -1e-6
    expected = (exact * torch.tanh(softplus)).float()
    torch.testing.assert_close(ACTIVATIONS["mish"](x), expected, rtol=2e-6, atol=1e-6)   # inference
    grid, want = x[:20000].view(1, 8, 50, 50), expected[:20000].view(1, 8, 50, 50)
    nhwc = grid.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ACTIVATIONS["mish"](nhwc), want, rtol=2e-6, atol=1e-6)
    torch.testing.assert_close(ACTIVATIONS["mish"](grid[:, ::2]), want[:, ::2], rtol=2e-6, atol=1e-6)   # a strided view
    x.requires_grad_(True)
    trained = ACTIVATIONS["mish"](x)   # training: torch's mish and its backward
    torch.testing.assert_close(trained.detach(), expected, rtol=2e-6, atol=1e-6)
    trained.sum().backward()
    assert torch.isfinite(x.grad).all()   # the branch not taken must not leak a NaN gradient


def test_the_other_alexeyab_activations():
    x = torch.tensor([-3.0, -1.0, -0.5, 0.5, 7.0])
    assert ACTIVATIONS["hard_mish"](x).tolist() == [0.0, -0.5, -0.375, 0.5, 7.0]
    torch.testing.assert_close(ACTIVATIONS["swish"](x), x * torch.sigmoid(x))
    assert ACTIVATIONS["relu6"](x).tolist() == [0.0, 0.0, 0.0, 0.5, 6.0]
    torch.testing.assert_close(ACTIVATIONS["gelu"](x), 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x ** 3)))
    torch.testing.assert_close(ACTIVATIONS["revleaky"](x), ACTIVATIONS["leaky"](x))


def test_normalize_channels_is_unsupported_with_file_and_line():
    with pytest.raises(UnsupportedError, match=r"ab.cfg:8 \[convolutional\]: activation 'normalize_channels_softmax'"):
        build("[convolutional]\nfilters=4\nactivation=normalize_channels_softmax\n")


def test_route_groups_take_each_inputs_group_id_slice():
    net = build("[convolutional]\nfilters=4\nsize=1\n\n[convolutional]\nfilters=6\nsize=1\n\n"
                "[route]\nlayers=-1,-2\ngroups=2\ngroup_id=1\n")
    assert net.info[2].shape.c == 5
    x = torch.rand(1, 4, 8, 8)
    outputs = net.forward_layers(x)
    torch.testing.assert_close(outputs[2], torch.cat((outputs[1][:, 3:], outputs[0][:, 2:]), dim=1))
    # DARKNET(AlexeyAB parser.c:parse_route): its table line
    assert layer_table(net)[3] == "    2 route  1 0 \t                       1/2 ->    8 x   8 x   5 "


def test_route_groups_must_divide_the_channels():
    with pytest.raises(CfgError, match=r"ab.cfg:12 \[route\]: groups=2 does not divide the 3 channels of layer 0"):
        build("[convolutional]\nfilters=3\nsize=1\n\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n")


def test_shortcut_of_several_layers_sums_them_then_activates():
    net = build("[convolutional]\nfilters=4\nsize=1\n\n[convolutional]\nfilters=4\nsize=1\n\n"
                "[convolutional]\nfilters=4\nsize=1\n\n[shortcut]\nfrom=-2,-3\nactivation=leaky\n")
    outputs = net.forward_layers(torch.rand(1, 4, 8, 8) - 0.5)
    torch.testing.assert_close(outputs[3], ACTIVATIONS["leaky"](outputs[2] + outputs[1] + outputs[0]))


def test_weighted_shortcut_is_unsupported_with_file_and_line():
    with pytest.raises(UnsupportedError, match=r"ab.cfg:12 \[shortcut\]: weighted shortcuts"):
        build("[convolutional]\nfilters=4\nsize=1\n\n[shortcut]\nfrom=-1\nweights_type=per_channel\n")


def test_negative_upsample_stride_sums_blocks():
    net = build("[upsample]\nstride=-2\nscale=0.5\n")
    x = torch.rand(1, 4, 8, 8)
    assert net.info[0].shape.h == 4
    torch.testing.assert_close(net(x), 0.5 * x.reshape(1, 4, 4, 2, 4, 2).sum(dim=(3, 5)))
    assert layer_table(net)[1].startswith("    0 downsample          2x")


def test_maxpool_stride_x_and_stride_y():
    net = build("[maxpool]\nsize=2\nstride_x=1\nstride_y=2\n")
    x = torch.rand(1, 4, 8, 8)
    assert (net.info[0].shape.h, net.info[0].shape.w) == (4, 8)
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1), value=float("-inf"))
    torch.testing.assert_close(net(x), torch.nn.functional.max_pool2d(padded, 2, (2, 1)))


@pytest.mark.parametrize("body, message", [
    ("[maxpool]\nsize=2\nmaxpool_depth=1\n", r"ab.cfg:8 \[maxpool\]: maxpool_depth=1"),
    ("[maxpool]\nsize=2\nstride=2\nantialiasing=1\n", r"ab.cfg:9 \[maxpool\]: maxpool antialiasing"),
    ("[convolutional]\nfilters=4\nsize=3\nantialiasing=1\n", r"ab.cfg:9 \[convolutional\]: antialiasing=1"),
    ("[convolutional]\nfilters=4\nsize=3\nbinary=1\n", r"ab.cfg:9 \[convolutional\]: binary=1"),
    ("[convolutional]\nfilters=4\nsize=3\nxnor=1\n", r"ab.cfg:9 \[convolutional\]: xnor=1"),
    ("[convolutional]\nfilters=4\nsize=1\n\n[convolutional]\nfilters=4\nsize=1\nshare_index=-1\n",
     r"ab.cfg:13 \[convolutional\]: share_index"),
    ("[convolutional]\nfilters=4\nsize=3\ndilation=2\n", r"ab.cfg:9 \[convolutional\]: dilation=2 with size=3"),
])
def test_unimplemented_alexeyab_keys_name_file_and_line(body, message):
    with pytest.raises(UnsupportedError, match=message):
        build(body)


def test_convolution_stride_x_stride_y_and_dilation():
    net = build("[convolutional]\nfilters=2\nsize=3\nstride_x=1\nstride_y=2\npad=1\n\n"
                "[convolutional]\nfilters=2\nsize=3\npad=1\ndilation=2\n")
    assert (net.info[0].shape.h, net.info[0].shape.w) == (4, 8)
    conv = net.layers[1].op
    assert (conv.dilation, conv.padding) == ((2, 2), (2, 2))   # DARKNET(AlexeyAB): im2col pads by pad*dilation
    assert net(torch.rand(1, 4, 8, 8)).shape == (1, 2, 4, 8)


def test_yolo_reads_alexeyabs_keys_with_its_defaults():
    net = build("[convolutional]\nfilters=14\nsize=1\nactivation=linear\n\n"
                "[yolo]\nmask=1,2\nanchors=1,2,3,4,5,6\nclasses=2\nnum=3\nscale_x_y=1.1\nnms_kind=diounms\n")
    yolo = net.layers[1]
    assert (yolo.classes, yolo.mask, yolo.anchors.shape) == (2, [1, 2], (3, 2))
    o = yolo.options
    assert (o.scale_x_y, o.new_coords, o.nms_kind, o.beta_nms, o.iou_normalizer, o.max, o.iou_loss) == (
        1.1, 0, "diounms", 0.6, 0.75, 200, "mse")
    raw = torch.randn(1, 14, 8, 8)
    out = yolo(raw).view(1, 2, 7, 8, 8)
    raw = raw.view(1, 2, 7, 8, 8)
    torch.testing.assert_close(out[:, :, :2], torch.sigmoid(raw[:, :, :2]) * 1.1 - 0.05)
    torch.testing.assert_close(out[:, :, 2:4], raw[:, :, 2:4])
    torch.testing.assert_close(out[:, :, 4:], torch.sigmoid(raw[:, :, 4:]))


def test_yolo_new_coords_leaves_the_activation_to_the_conv():
    net = build("[convolutional]\nfilters=7\nsize=1\nactivation=logistic\n\n"
                "[yolo]\nmask=0\nclasses=2\nnum=1\nscale_x_y=2\nnew_coords=1\n")
    raw = torch.rand(1, 7, 8, 8)
    out = net.layers[1](raw).view(1, 7, 8, 8)
    torch.testing.assert_close(out[:, :2], raw[:, :2] * 2 - 0.5)
    torch.testing.assert_close(out[:, 2:], raw[:, 2:])


def test_yolo_mask_past_num_is_an_error():
    with pytest.raises(CfgError, match=r"ab.cfg:11 \[yolo\]: mask=0,3 names an anchor past num=3"):
        build("[convolutional]\nfilters=14\nsize=1\n\n[yolo]\nmask=0,3\nclasses=2\nnum=3\n")
