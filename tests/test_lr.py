"""Learning-rate policies vs network.c:get_current_rate formulas and the reference training steps."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pydarknet.engine.lr import get_current_batch, get_current_rate
from pydarknet.options import NetOptions

TRAIN_CASES = ["mini-yolov2-voc_seen0", "mini-yolov2-voc_seen20000", "mini-yolo9000_seen0", "mini-yolo9000_seen20000"]


def net_options(cfg: Path) -> dict[str, str]:
    """key=value lines of the cfg's [net] section."""
    section = cfg.read_text().split("[net]", 1)[1].split("\n[", 1)[0]
    pairs = (line.split("#")[0].split("=", 1) for line in section.splitlines())
    return {p[0].strip(): p[1].strip() for p in pairs if len(p) == 2}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_reference_learning_rate(reference, case):
    meta = json.loads((reference / "train" / case / "train_meta.json").read_text())
    net = net_options(reference / meta["train_cfg"])
    subdivisions = int(net["subdivisions"])
    batch_num = get_current_batch(meta["seen_during_forward"], int(net["batch"]) // subdivisions * subdivisions)
    assert batch_num == meta["current_batch"]
    rate = get_current_rate(net["policy"], float(net["learning_rate"]), batch_num,
                            burn_in=int(net["burn_in"]), power=float(net.get("power", 4)),
                            steps=[int(s) for s in net["steps"].split(",")],
                            scales=[float(s) for s in net["scales"].split(",")])
    assert np.float32(rate) == np.float32(meta["learning_rate_used"])


def test_burn_in_is_computed_in_float32():
    # DARKNET(network.c:get_current_rate): float ratio and float lr give 1.00000022e-15, not 1e-15
    rate = get_current_rate("steps", 0.001, 1, burn_in=1000, steps=[40000], scales=[.1])
    assert np.float32(rate) == np.float32(1.00000022e-15)
    assert np.float32(rate) != np.float32(1e-15)


@pytest.mark.parametrize("policy", ["constant", "step", "steps", "exp", "poly", "sigmoid"])
def test_burn_in_overrides_every_policy(policy):
    rate = get_current_rate(policy, 0.01, 500, burn_in=1000, power=2, gamma=.5, step=10, scale=.1,
                            steps=[100], scales=[.1], max_batches=2000)
    assert rate == pytest.approx(0.01 * 0.5 ** 2, rel=1e-6)


@pytest.mark.parametrize("policy, kwargs, batch_num, expected", [
    ("constant", {}, 123456, 0.01),
    ("step", {"step": 100, "scale": .5}, 250, 0.01 * .25),
    ("steps", {"steps": [10, 20, 30], "scales": [.1, 10, .5]}, 9, 0.01),
    ("steps", {"steps": [10, 20, 30], "scales": [.1, 10, .5]}, 10, 0.001),
    ("steps", {"steps": [10, 20, 30], "scales": [.1, 10, .5]}, 25, 0.01),
    ("steps", {"steps": [10, 20, 30], "scales": [.1, 10, .5]}, 30, 0.005),
    ("exp", {"gamma": .99}, 100, 0.01 * .99 ** 100),
    ("poly", {"power": 2, "max_batches": 1000}, 250, 0.01 * .75 ** 2),
    ("sigmoid", {"gamma": .1, "step": 100}, 110, 0.01 / (1 + math.e)),
    ("sigmoid", {"gamma": .1, "step": 100}, 100, 0.005),
])
def test_policy_formulas(policy, kwargs, batch_num, expected):
    assert get_current_rate(policy, 0.01, batch_num, **kwargs) == pytest.approx(expected, rel=1e-6)


def test_steps_scan_stops_at_first_future_step():
    # DARKNET(network.c:get_current_rate): an unsorted list is not sorted; 50 is passed but never reached
    assert get_current_rate("steps", 0.01, 70, steps=[100, 50], scales=[.1, .1]) == pytest.approx(0.01)


@pytest.mark.parametrize("gamma, expected", [(.1, 0.0), (-.1, 0.01)])
def test_sigmoid_before_step_wraps_unsigned(gamma, expected):
    # DARKNET(network.c:get_current_rate): size_t batch_num - step wraps to ~2^64 before `step`
    assert get_current_rate("sigmoid", 0.01, 90, gamma=gamma, step=100) == pytest.approx(expected)


def test_random_policy_draws_from_generator():
    u = np.float32(np.random.default_rng(7).random())
    rate = get_current_rate("random", 0.01, 5000, power=3, rng=np.random.default_rng(7))
    assert rate == pytest.approx(0.01 * float(u) ** 3, rel=1e-6)
    with pytest.raises(ValueError, match="random generator"):
        get_current_rate("random", 0.01, 5000)


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="sig"):
        get_current_rate("sig", 0.01, 10)


@pytest.mark.parametrize("seen, batch, subdivisions, expected", [(20002, 2, 1, 10001), (130, 32, 4, 4), (31, 32, 4, 0),
                                                                  (45, 10, 3, 5)])
def test_current_batch(seen, batch, subdivisions, expected):
    """`batch` and `subdivisions` as in the cfg: 10 and 3 update every 9 images (net->batch = 3)."""
    options = NetOptions(batch=batch, subdivisions=subdivisions)
    assert get_current_batch(seen, options.images_per_update) == expected
