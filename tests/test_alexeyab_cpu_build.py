"""`-ab -darknet_build cpu`: what AlexeyAB's CPU build prints for the WordTree net mini-yolo9000.

The recordings in fixtures/stock_cpu_ab/ (README.md there) are what AlexeyAB's `darknet detector test ... -dont_show
-ext_output` printed for the reference pack's mini-yolo9000 on the 12 photos of fixtures/stock_cpu at -thresh .25 and .1.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.cli.common import open_network
from pydarknet.data.files import read_names
from pydarknet.dialect import ALEXEYAB, PJREDDIE
from pydarknet.heads.region.detections import alexeyab_tree_probs, region_detections
from pydarknet.image import load_image, network_input
from test_stock_cpu_build import OTHER_PHOTOS, PJREDDIE_PHOTOS, image_path, printed_lines
from test_stock_cpu_build import recorded_lines as stock_cpu_recorded_lines

FIXTURES = Path(__file__).parent / "fixtures" / "stock_cpu_ab"
PHOTOS = (*PJREDDIE_PHOTOS, *OTHER_PHOTOS)
NET = ("../mini/mini-yolo9000.cfg", "../mini/mini-yolo9000.weights")
# Images where an -ext_output box number differs by a rounding edge (every class, percentage and the order are the
# same): our forward is within 5e-5 of AlexeyAB's raw w, h entries (its float32 gemm sums in another order), and
# exp() of a raw entry turns that into a box up to 5e-5 taller, e.g. `height: 8591094` for 8590963.
# Fed AlexeyAB's own box entries, our lines are its lines (test_post_processing_of_alexeyabs_box_entries_is_exact).
BOX_ROUNDING_EDGES = {"0.25": {"dog", "giraffe", "grace_hopper", "board_verify_480", "jetty_pier_600"},
                      "0.1": {"dog", "eagle", "giraffe", "grace_hopper", "board_verify_480", "jetty_pier_600"}}
_BOX = re.compile(r"-?\d+")


def recorded_lines(thresh: str) -> dict[str, list[str]]:
    return stock_cpu_recorded_lines("mini-yolo9000", thresh, FIXTURES)


def _detector_test(thresh: str, images, *options: str) -> dict[str, list[str]]:
    paths = "".join(f"{image_path(name)}\n" for name in images)
    result = CliRunner().invoke(main, ["-q", "detector", "test", "cfg/combine9k.data", *NET, "-thresh", thresh,
                                       "-dont_show", "-ext_output", "-ab", *options], input=paths)
    assert result.exit_code == 0, result.output
    return printed_lines(result.stdout)


def _same_but_box_rounding(ours: list[str], theirs: list[str]) -> bool:
    """The same `name: NN%` lines in the same order, each box number within 1 pixel or 5e-5 of AlexeyAB's."""
    if len(ours) != len(theirs):
        return False
    for mine, its in zip(ours, theirs):
        (label, box), (its_label, its_box) = mine.split("\t"), its.split("\t")
        numbers, its_numbers = (np.array([float(v) for v in _BOX.findall(b)]) for b in (box, its_box))
        if label != its_label or not np.all(np.abs(numbers - its_numbers) <= np.maximum(1, 5e-5 * np.abs(its_numbers))):
            return False
    return True


@pytest.fixture
def in_the_pack(reference, monkeypatch):
    monkeypatch.chdir(reference / "darknet")   # as the recording: tree=../darknet/data/9k.tree, names=data/...


@pytest.mark.slow   # 12 images through a 9418-class NMS: 11 s each
@pytest.mark.parametrize("thresh", ["0.25", "0.1"])
def test_detector_test_ab_cpu_build_prints_alexeyabs_lines(in_the_pack, thresh):
    want = recorded_lines(thresh)
    assert list(want) == list(PHOTOS)
    got = _detector_test(thresh, want, "-darknet_build", "cpu")
    identical = {name for name in want if got[name] == want[name]}
    assert set(want) - identical <= BOX_ROUNDING_EDGES[thresh], f"differ: {sorted(set(want) - identical)}"
    for name in set(want) - identical:
        assert _same_but_box_rounding(got[name], want[name]), name


def test_alexeyabs_cpu_build_computes_as_its_gpu_build(in_the_pack):
    """DARKNET(AlexeyAB network.c:fuse_conv_batchnorm, region_layer.c:forward_region_layer): folded batch norm
    with sqrt(var + .00001) and a per-box WordTree softmax on the CPU, as on the GPU: -darknet_build cpu changes
    nothing under -ab, while without -ab it selects pjreddie's stock CPU build."""
    assert (ALEXEYAB.darknet_build_for("cpu"), PJREDDIE.darknet_build_for("cpu")) == ("gpu", "cpu")
    assert ALEXEYAB.darknet_build_for("gpu") == PJREDDIE.darknet_build_for("gpu") == "gpu"
    cpu_build = _detector_test("0.25", ["horses"], "-darknet_build", "cpu")
    assert cpu_build == _detector_test("0.25", ["horses"]) == {"horses": recorded_lines("0.25")["horses"]}


@pytest.fixture(scope="module")
def fused_net(reference):
    return open_network(str(reference / "mini" / "mini-yolo9000.cfg"),
                        str(reference / "mini" / "mini-yolo9000.weights"), "cpu", precision="fp32")


def _our_region(net, name: str) -> tuple[torch.Tensor, int, int]:
    picture = load_image(image_path(name))
    with torch.no_grad():
        output = net(torch.from_numpy(network_input(picture, net.width, net.height, False))[None])[0].float()
    return output, picture.shape[1], picture.shape[0]


@pytest.mark.slow   # 24 NMS of 9418 classes: 6 s
def test_post_processing_of_alexeyabs_box_entries_is_exact(reference, fused_net):
    """With AlexeyAB's own x, y, w, h (raw) and objectness entries in place of ours, every image prints its lines
    at both thresholds: what is left above is the forward's rounding, amplified by exp()."""
    recorded = np.load(FIXTURES / "regions.npz")
    names = read_names(reference / "darknet" / "data" / "9k.names")
    layer = fused_net.layers[-1]
    for name in PHOTOS:
        output, im_w, im_h = _our_region(fused_net, name)
        boxes = torch.from_numpy(recorded[f"{name}/boxes"])                       # [A, 5, H, W]
        output[:, :2], output[:, 2:5] = torch.sigmoid(boxes[:, :2]), boxes[:, 2:5]
        for thresh in ("0.25", "0.1"):
            dets = region_detections(layer, output, fused_net.width, fused_net.height, im_w, im_h, float(thresh),
                                     0.45, letterbox=False, dialect=ALEXEYAB)
            lines = ALEXEYAB.printed_lines(dets, names, float(thresh), im_w, im_h, ext_output=True)
            assert lines == recorded_lines(thresh)[name], (name, thresh)


def test_alexeyab_cpu_tree_softmax_is_per_box(fused_net):
    """DARKNET(AlexeyAB region_layer.c:forward_region_layer): flatten to [cell][anchor][entry], then softmax_tree
    over each box's 9418 classes with temperature 1 (not pjreddie's entry-major, temperature-0 CPU loop): its class
    entries of one box on dog.jpg equal our group softmax."""
    theirs = np.load(FIXTURES / "regions.npz")["dog/classes_a1_y3_x3"]
    output, _, _ = _our_region(fused_net, "dog")
    np.testing.assert_allclose(output[1, 5:, 3, 3].numpy(), theirs, rtol=0, atol=3e-5)


def test_alexeyab_tree_probs_last_node_above_half():
    """DARKNET(AlexeyAB region_layer.c:get_region_boxes): the last node whose absolute probability is > .5 keeps
    that probability, the others 0; none without such a node or below the objectness threshold (objectness 0)."""
    p_abs = torch.tensor([[0.9, 0.6, 0.7, 0.2],     # nodes 0, 1, 2 above .5: the last, 2, with .7
                          [0.9, 0.5, 0.1, 0.3],     # .5 is not above .5: node 0
                          [0.4, 0.5, 0.2, 0.1],     # none above
                          [0.9, 0.8, 0.7, 0.6]])    # objectness below the threshold
    probs = alexeyab_tree_probs(p_abs, np.array([0.3, 0.3, 0.3, 0], dtype=np.float32))
    expected = np.zeros((4, 4), dtype=np.float32)
    expected[0, 2], expected[1, 0] = 0.7, 0.9
    np.testing.assert_array_equal(probs, expected)
