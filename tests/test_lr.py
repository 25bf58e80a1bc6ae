"""Learning-rate policies vs network.c:get_current_rate formulas and the reference training steps."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from pydarknet.cfg import parse_cfg_text
from pydarknet.engine.lr import get_current_batch, get_current_rate, net_rate
from pydarknet.errors import CfgError
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


def _sgdr_by_hand(lr: float, lr_min: float, batch_num: int, cycle: int, mult: int) -> float:
    """AlexeyAB's SGDR (network.c:get_current_rate) written out: find the cycle holding batch_num, then a cosine."""
    start = 0
    while start + cycle < batch_num:
        start, cycle = start + cycle, cycle * mult
    return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos((batch_num - start) * 3.14159265 / cycle))


@pytest.mark.parametrize("batch_num, expected", [
    (0, 0.01),                        # the top of the first cycle
    (50, 0.00001 + 0.5 * (0.01 - 0.00001)),   # half way down the first cycle (100 batches)
    (100, 0.00001),                   # its last batch: `<`, so batch 100 still ends the first cycle at the minimum
    (101, _sgdr_by_hand(0.01, 0.00001, 101, 100, 2)),   # the second cycle, 200 long, starts again near the top
    (200, _sgdr_by_hand(0.01, 0.00001, 200, 100, 2)),   # a quarter of it: cos(pi/2)
    (300, 0.00001),                   # the end of the second cycle
])
def test_sgdr_policy(batch_num, expected):
    rate = get_current_rate("sgdr", 0.01, batch_num, learning_rate_min=0.00001, sgdr_cycle=100, sgdr_mult=2)
    assert rate == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_sgdr_quarter_cycle_is_the_mid_rate():
    # 200 = start 100 + 100 of a 200-batch cycle: cos(pi/2) = 0, the rate is half way between the two
    rate = get_current_rate("sgdr", 0.01, 200, learning_rate_min=0.00001, sgdr_cycle=100, sgdr_mult=2)
    assert rate == pytest.approx((0.01 + 0.00001) / 2, rel=1e-6)


def test_sgdr_burn_in_first():
    rate = get_current_rate("sgdr", 0.01, 50, burn_in=100, power=4, sgdr_cycle=1000)
    assert rate == pytest.approx(0.01 * 0.5 ** 4, rel=1e-6)


def test_sgdr_without_a_cycle_is_an_error():
    # AlexeyAB loops forever on sgdr_cycle=0 (its default, max_batches, when the cfg has none)
    with pytest.raises(CfgError, match="sgdr_cycle"):
        get_current_rate("sgdr", 0.01, 5, sgdr_cycle=0)


def test_alexeyab_sigmoid_is_signed():
    # DARKNET(AlexeyAB network.c:get_current_rate): int batch_num: before `step` the sigmoid rises, no wrap
    expected = 0.01 / (1 + math.exp(0.1 * (90 - 100)))
    rate = get_current_rate("sigmoid", 0.01, 90, gamma=.1, step=100, signed_batch=True)
    assert rate == pytest.approx(expected, rel=1e-6)


def _net_options(text: str) -> NetOptions:
    return NetOptions.from_section(parse_cfg_text("[net]\n" + text)[0])


def test_sgdr_keys_and_defaults_are_alexeyabs():
    # DARKNET(AlexeyAB parser.c:parse_net_options): learning_rate_min .00001, sgdr_cycle = max_batches, sgdr_mult 2
    options = _net_options("width=8\nheight=8\nchannels=3\nmax_batches=500\npolicy=sgdr\nlearning_rate=0.02")
    assert (options.learning_rate_min, options.sgdr_cycle, options.sgdr_mult) == (0.00001, 500, 2)
    assert options.max_chart_loss == 20.0
    assert net_rate(options, 250) == pytest.approx(_sgdr_by_hand(0.02, 0.00001, 250, 500, 2), rel=1e-6)
    options = _net_options("width=8\nheight=8\nchannels=3\nmax_batches=500\npolicy=sgdr\nlearning_rate=0.02\n"
                           "sgdr_cycle=100\nsgdr_mult=3\nlearning_rate_min=0.001\nmax_chart_loss=5")
    assert net_rate(options, 250) == pytest.approx(_sgdr_by_hand(0.02, 0.001, 250, 100, 3), rel=1e-6)
    assert options.max_chart_loss == 5.0


def test_net_rate_reads_every_schedule_key():
    options = _net_options("width=8\nheight=8\nchannels=3\nmax_batches=1000\npolicy=steps\nsteps=100,200\n"
                           "scales=.5,.1\nlearning_rate=0.01\nburn_in=10\npower=2")
    assert net_rate(options, 5) == pytest.approx(0.01 * 0.5 ** 2, rel=1e-6)
    assert net_rate(options, 150) == pytest.approx(0.005, rel=1e-6)
    assert net_rate(options, 250) == pytest.approx(0.0005, rel=1e-6)


ALEXEYAB_RATES = json.loads((Path(__file__).parent / "fixtures" / "alexeyab_lr" / "rates.json").read_text())


@pytest.mark.parametrize("case", sorted(ALEXEYAB_RATES))
def test_alexeyab_rates(case):
    """Every policy against AlexeyAB's get_current_rate (fixtures/alexeyab_lr/README.md), float32 exact."""
    options = NetOptions.from_section(parse_cfg_text(ALEXEYAB_RATES[case]["net"])[0])
    for batch, expected in ALEXEYAB_RATES[case]["rates"].items():
        rate = net_rate(options, int(batch), signed_batch=True)
        assert np.float32(rate) == np.float32(expected), (case, batch, rate, expected)
