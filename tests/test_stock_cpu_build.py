"""`darknet_build="cpu"` / `-darknet_build cpu`: the numbers of a stock CPU build of pjreddie's Darknet.

The recordings in fixtures/stock_cpu/ (README.md there) are what `darknet detector test` of an unmodified
CPU build printed for the reference pack's mini nets on 12 real photos at -thresh .25 and .1.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pydarknet.cfg import parse_cfg_text
from pydarknet.cli import main
from pydarknet.data.files import read_names
from pydarknet.dialect import PJREDDIE
from pydarknet.fuse import fuse_for_inference
from pydarknet.heads.region.detections import region_detections
from pydarknet.image import load_image
from pydarknet.layers.conv import STOCK_CPU_BN_EPS
from pydarknet.network import Darknet, load_network

FIXTURES = Path(__file__).parent / "fixtures" / "stock_cpu"
REPO = Path(__file__).resolve().parent.parent
NETS = {"mini-yolov2-voc": "cfg/voc.data", "mini-yolov2-tiny-voc": "cfg/voc.data",
        "mini-yolo9000": "cfg/combine9k.data"}
PJREDDIE_PHOTOS = ("dog", "eagle", "giraffe", "horses", "person", "scream")
OTHER_PHOTOS = ("kite_640", "grace_hopper", "board_f3_480", "board_verify_480", "jetty_pier_600", "two_by_one")
# Cases whose lines differ by a rounding edge: fed the stock build's own region output, our post-processing
# prints its lines exactly (test_post_processing_of_the_builds_region_output_is_exact); our forward is within
# 1.2e-5 of its probabilities, so a probability that close to a threshold, to a %.0f boundary or to a near-tie
# in do_nms_sort's qsort can print otherwise (the 2x1 image: a uniform picture, every cell a near-tie).
ROUNDING_EDGES = {("mini-yolov2-voc", "0.1"): {"eagle", "grace_hopper", "board_f3_480"},
                  ("mini-yolov2-tiny-voc", "0.1"): {"grace_hopper", "two_by_one"}}


def image_path(name: str) -> Path:
    return REPO / "data" / f"{name}.jpg" if name in PJREDDIE_PHOTOS else FIXTURES / "images" / f"{name}.jpg"


def recorded_lines(net: str, thresh: str, folder: Path = FIXTURES) -> dict[str, list[str]]:
    """{image name: printed lines} of one recording in `folder` (each image's block starts with `<image>.jpg:`)."""
    blocks: dict[str, list[str]] = {}
    for line in (folder / f"{net}_t{thresh}.txt").read_text().splitlines():
        if line.endswith(".jpg:"):
            current = blocks.setdefault(line[:-len(".jpg:")], [])
        else:
            current.append(line)
    return blocks


def printed_lines(stdout: str) -> dict[str, list[str]]:
    """{image name: lines} from the stdout of `detector test` reading image paths at its prompt."""
    blocks = {}
    for block in stdout.split("Enter Image Path: ")[1:]:
        lines = block.splitlines()
        if lines:
            blocks[Path(lines[0].split(": Predicted in ")[0]).stem] = lines[1:]
    return blocks


def _slow_unless_fast(net: str, thresh: str):
    """The VOC nets at .25 in the fast suite (7 s); mini-yolo9000 (9418-class NMS) and .1 are slow-marked."""
    fast = net != "mini-yolo9000" and thresh == "0.25"
    return pytest.param(net, thresh, marks=() if fast else pytest.mark.slow, id=f"{net}-{thresh}")


@pytest.mark.parametrize("net, thresh", [_slow_unless_fast(net, thresh) for net in NETS for thresh in ("0.25", "0.1")])
def test_detector_test_prints_the_stock_cpu_builds_lines(reference, tmp_path, monkeypatch, net, thresh):
    want = recorded_lines(net, thresh)
    assert list(want) == [*PJREDDIE_PHOTOS, *OTHER_PHOTOS]
    monkeypatch.chdir(reference / "darknet")   # as the recording: tree=../darknet/data/9k.tree, names=data/...
    paths = "".join(f"{image_path(name)}\n" for name in want)
    result = CliRunner().invoke(main, ["-q", "detector", "test", NETS[net], f"../mini/{net}.cfg",
                                       f"../mini/{net}.weights", "-thresh", thresh, "-out", str(tmp_path),
                                       "-darknet_build", "cpu"], input=paths)
    assert result.exit_code == 0, result.output
    got = printed_lines(result.stdout)
    edges = ROUNDING_EDGES.get((net, thresh), set())
    identical = [name for name in want if got[name] == want[name]]
    assert set(want) - set(identical) <= edges, f"differ: {sorted(set(want) - set(identical))}"
    for name in edges:
        differ = (Counter(got[name]) - Counter(want[name])) + (Counter(want[name]) - Counter(got[name]))
        assert sum(differ.values()) <= 2, (name, differ)


def test_the_gpu_default_differs_from_the_stock_cpu_build(reference, tmp_path, monkeypatch):
    """Without the switch, the GPU semantics (the reference pack's): the stock build's lines differ."""
    monkeypatch.chdir(reference / "darknet")
    result = CliRunner().invoke(main, ["-q", "detector", "test", "cfg/voc.data", "../mini/mini-yolov2-voc.cfg",
                                       "../mini/mini-yolov2-voc.weights", "data/dog.jpg", "-thresh", "0.25",
                                       "-out", str(tmp_path / "p")])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1:] != recorded_lines("mini-yolov2-voc", "0.25")["dog"]


@pytest.mark.parametrize("net, image", [("mini-yolov2-tiny-voc", "two_by_one"), ("mini-yolov2-voc", "eagle")])
def test_post_processing_of_the_builds_region_output_is_exact(reference, net, image):
    """Fed the region output the stock build computed, we print its lines at .1, rounding edges included."""
    region = torch.from_numpy(np.load(FIXTURES / "regions.npz")[f"{net}/{image}"])
    layer = load_network(reference / "mini" / f"{net}.cfg", reference / "mini" / f"{net}.weights", "cpu",
                         darknet_build="cpu").region
    picture = load_image(image_path(image))
    im_h, im_w = picture.shape[:2]
    dets = region_detections(layer, region, 416, 416, im_w, im_h, 0.1, 0.45)
    names = read_names(reference / "darknet" / "data" / "voc.names")
    assert PJREDDIE.printed_lines(dets, names, 0.1, im_w, im_h) == recorded_lines(net, "0.1")[image]


def test_stock_cpu_tree_softmax_entry_major_temperature_zero(reference):
    """DARKNET(region_layer.c:forward_region_layer): the CPU WordTree loop writes NaN (temperature 0) over the
    flat block [5, 5 + max(offset + size*num*H*W)) of the output, reading the raw input; the rest keeps
    the raw class logits and the logistic x, y, objectness. Compared with the stock build on dog.jpg."""
    recorded = np.load(FIXTURES / "regions.npz")
    head, sample = recorded["mini-yolo9000/dog/head"], recorded["mini-yolo9000/dog/every_997th"]
    net = load_network(reference / "mini" / "mini-yolo9000.cfg", reference / "mini" / "mini-yolo9000.weights",
                       "cpu", darknet_build="cpu")
    x = torch.from_numpy(np.load(reference / "inputs" / "dog_224x224.npy"))[None]
    with torch.no_grad():
        flat = net(x).reshape(-1).numpy()
    nan_block = np.flatnonzero(np.isnan(flat))
    assert (nan_block[0], nan_block[-1] + 1, len(nan_block)) == (5, 27435, 27430)
    np.testing.assert_array_equal(np.isnan(flat[:len(head)]), np.isnan(head))
    ours = np.concatenate([flat[:len(head)], flat[len(head)::997]])
    theirs = np.concatenate([head, sample])
    finite = ~np.isnan(theirs)
    assert np.abs(ours[finite] - theirs[finite]).max() <= 1e-4 * np.abs(theirs[finite]).max()


def test_stock_cpu_batch_norm_epsilon_outside_the_sqrt():
    """DARKNET(blas.c:normalize_cpu): (x - mean) / (sqrt(var) + .000001f), then scales and biases; the folded
    net computes the same; the default keeps BatchNorm2d's (GPU/cuDNN) formula."""
    cfg = "[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\npad=1\n" \
          "activation=linear\n"
    net = Darknet(parse_cfg_text(cfg, "t.cfg"))
    net.reset_parameters(seed=1)
    layer = net.layers[0]
    draws = torch.Generator().manual_seed(2)
    with torch.no_grad():
        layer.bn.running_mean.uniform_(-1, 1, generator=draws)
        layer.bn.running_var.copy_(torch.tensor([1e-6, 1e-3, 0.5, 4.0]))
        layer.bn.weight.uniform_(0.5, 1.5, generator=draws)
        layer.bn.bias.uniform_(-1, 1, generator=draws)
    net.eval()
    x = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        gpu = net(x)
        conv = layer.op(x).double()
        net.darknet_build = "cpu"
        assert layer.darknet_build == "cpu"
        cpu = net(x)
        fused = fuse_for_inference(net, channels_last=False)(x)
    bn = layer.bn
    view = (1, -1, 1, 1)
    expected = ((conv - bn.running_mean.double().view(view)) / (bn.running_var.double().sqrt().view(view)
                                                                   + STOCK_CPU_BN_EPS)) * bn.weight.double().view(view) \
        + bn.bias.double().view(view)
    torch.testing.assert_close(cpu.double(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused, cpu, rtol=1e-5, atol=1e-5)
    assert (gpu - cpu).abs().max() > 1e-2   # the channel with var 1e-6 tells the formulas apart
    with pytest.raises(ValueError, match="darknet_build"):
        net.darknet_build = "tpu"
