"""[net], layer flags and [region] read one way (pydarknet.options): Darknet's defaults, derived ones,
and only the keys DARKNET(parser.c:parse_net_options) reads for the chosen policy."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from pydarknet.cfg import CfgError, UnusedFieldWarning, parse_cfg_text
from pydarknet.engine.classifier import crop_options
from pydarknet.options import RegionOptions
from pydarknet.network import Darknet, NetOptions
from pydarknet.options import opt, read_options

REPO = Path(__file__).resolve().parent.parent
INPUT = "[net]\nwidth=224\nheight=160\nchannels=3\n"


def net_options(extra: str = "") -> tuple[NetOptions, list[str]]:
    """The options of `INPUT + extra` and the keys left unread."""
    section = parse_cfg_text(INPUT + extra, "n.cfg")[0]
    options = NetOptions.from_section(section)
    return options, section.unused()


def test_derived_defaults_follow_the_width():
    options, _ = net_options()
    # Darknet: inputs = h*w*c, max_crop = 2w, min_crop = w, ratios = crop / w
    assert (options.inputs, options.min_crop, options.max_crop) == (160 * 224 * 3, 224, 448)
    assert (options.min_ratio, options.max_ratio) == (1.0, 2.0)


def test_given_crops_set_the_ratios():
    options, _ = net_options("min_crop=128\nmax_crop=512\n")
    assert (options.min_ratio, options.max_ratio) == (128 / 224, 512 / 224)
    options, _ = net_options("min_crop=128\nmin_ratio=.25\n")
    assert (options.min_crop, options.min_ratio) == (128, 0.25)   # a given ratio wins over the crop


@pytest.mark.parametrize("cfg, crop", [("darknet19.cfg", (128, 448)), ("darknet19_448.cfg", (448, 512))])
def test_crop_options_use_the_derived_fields(cfg, crop):
    net = Darknet.from_cfg(REPO / "cfg" / cfg)
    options = crop_options(net)
    assert (options.min, options.max) == crop


@pytest.mark.parametrize("policy, read, unread", [
    ("constant", {"power", "burn_in", "max_batches"}, {"step", "scale", "steps", "scales", "gamma"}),
    ("poly", {"power", "burn_in", "max_batches"}, {"step", "scale", "steps", "scales", "gamma"}),
    ("random", {"power"}, {"step", "scale", "steps", "scales", "gamma"}),
    ("step", {"step", "scale", "power"}, {"steps", "scales", "gamma"}),
    ("steps", {"steps", "scales", "power"}, {"step", "scale", "gamma"}),
    ("exp", {"gamma", "power"}, {"step", "scale", "steps", "scales"}),
    ("sigmoid", {"gamma", "step", "power"}, {"scale", "steps", "scales"}),
])
def test_policy_decides_which_keys_are_read(policy, read, unread):
    keys = "step=10\nscale=.5\nsteps=10,20\nscales=.1,.1\ngamma=.9\npower=2\nburn_in=5\nmax_batches=100\n"
    _, unused = net_options(f"policy={policy}\n{keys}")
    assert set(unused) == unread
    assert not read & set(unused)


def test_adam_keys_are_read_only_with_adam():
    options, unused = net_options("B1=.5\nB2=.6\neps=.1\n")
    assert set(unused) == {"B1", "B2", "eps"} and options.B1 == 0.9
    options, unused = net_options("adam=1\nB1=.5\nB2=.6\neps=.1\n")
    assert unused == [] and (options.B1, options.B2, options.eps) == (0.5, 0.6, 0.1)


def _build(tmp_path, net_lines: str) -> None:
    path = tmp_path / "p.cfg"
    path.write_text(INPUT + net_lines + "\n[convolutional]\nfilters=2\n")
    Darknet.from_cfg(path)


def test_steps_under_poly_is_reported_unused(tmp_path):
    with pytest.warns(UnusedFieldWarning, match=r"p.cfg:6 \[net\]: Unused field 'steps'"):
        _build(tmp_path, "policy=poly\nsteps=100,200\n")


def test_steps_under_steps_is_used(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnusedFieldWarning)
        _build(tmp_path, "policy=steps\nsteps=100,200\nscales=.1,.1\n")


@pytest.mark.parametrize("lines, message", [
    ("policy=steps\nsteps=100\n", r"n.cfg:1 \[net\]: missing required option 'scales'$"),
    ("policy=steps\nsteps=100,200\nscales=.1\n", r"n.cfg:7 \[net\]: steps= lists 2 values but scales= lists 1$"),
    ("policy=cosine\n", r"n.cfg:5 \[net\]: option 'policy=cosine' is not one of constant, step, steps, exp, poly"),
    ("policy=step\nstep=0\n", r"n.cfg:6 \[net\]: option 'step=0' must be at least 1$"),
    ("batch=2\nsubdivisions=4\n", r"n.cfg:1 \[net\]: batch=2 must be at least subdivisions=4 >= 1$"),
])
def test_bad_net_options(lines, message):
    with pytest.raises(CfgError, match=message):
        net_options(lines)


def test_generic_reader_derives_skips_and_bounds():
    @dataclass
    class PoolOptions:
        stride: int = opt(1, minimum=1)
        size: int = opt(derived=lambda read: 3 * read["stride"])
        extra: float = opt(0.5, when=lambda read: read["size"] > 4)

    def read(text: str) -> tuple[PoolOptions, list[str]]:
        section = parse_cfg_text("[maxpool]\n" + text, "p.cfg")[0]
        return read_options(PoolOptions, section), section.unused()

    assert read("stride=2\nextra=.25\n") == (PoolOptions(2, 6, 0.25), [])
    assert read("stride=1\nextra=.25\n") == (PoolOptions(1, 3, 0.5), ["extra"])
    with pytest.raises(CfgError, match=r"p.cfg:2 \[maxpool\]: option 'stride=0' must be at least 1$"):
        read("stride=0\n")


def test_region_options_read_every_region_key():
    text = ("[region]\nanchors=1,2,3,4,5,6\nclasses=2\nnum=2\ncoords=4\nsoftmax=1\njitter=.3\nrescore=1\n"
            "object_scale=5\nnoobject_scale=.5\nclass_scale=2\ncoord_scale=3\nthresh=.6\nrandom=1\nbias_match=1\n"
            "absolute=1\nmax=40\nlog=1\nsqrt=1\nmask_scale=1\nclassfix=0\n")
    section = parse_cfg_text(text, "r.cfg")[0]
    options = RegionOptions.from_section(section)
    assert section.unused() == []
    assert (options.anchors, options.classes, options.num, options.max, options.thresh) == (
        [1, 2, 3, 4, 5, 6], 2, 2, 40, 0.6)
