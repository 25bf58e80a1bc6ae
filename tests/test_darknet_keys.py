"""Unread cfg keys: an error when a Darknet reads them and they change inference, else a note (issue 18)."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from conftest import reference_dir, reference_yolo_dir
from pydarknet import darknet_keys
from pydarknet.cfg import CfgError, UnusedFieldWarning, parse_cfg_text, read_cfg
from pydarknet.data.synth import make_synth
from pydarknet.network import Darknet
from pydarknet.registry import registered

REPO = Path(__file__).resolve().parent.parent
NET = "[net]\nwidth=8\nheight=8\nchannels=3\n"   # lines 1-4
CONV = "[convolutional]\nfilters=4\nsize=3\npad=1\n"   # lines 5-8


def _build(text: str) -> tuple[Darknet, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = Darknet(parse_cfg_text(text, "k.cfg"))
    return net, [str(w.message) for w in caught if issubclass(w.category, UnusedFieldWarning)]


@pytest.mark.parametrize("line, message", [
    ("cbn=1", r"^k.cfg:9 \[convolutional\]: 'cbn' is read by AlexeyAB's Darknet for \[convolutional\] and changes "
              r"its output; pydarknet does not implement it$"),
    ("coordconv=1", r"^k.cfg:9 \[convolutional\]: 'coordconv' is read by AlexeyAB's Darknet"),
])
def test_unread_inference_key_is_an_error_naming_file_and_line(line, message):
    with pytest.raises(CfgError, match=message):
        _build(NET + CONV + line + "\n")


def test_unread_key_fails_at_its_layer_before_later_layers_build():
    # the [route] after it refers to a layer that does not exist: the unread key is reported first
    with pytest.raises(CfgError, match=r"k.cfg:9 \[convolutional\]: 'cbn'"):
        _build(NET + CONV + "cbn=1\n[route]\nlayers=-5\n")


@pytest.mark.parametrize("text, key, reader", [
    (NET + "label_smooth_eps=0.1\n" + CONV, "label_smooth_eps", "AlexeyAB's"),
    (NET + CONV + "assisted_excitation=4000\n", "assisted_excitation", "AlexeyAB's"),   # only when state.train
    (NET + CONV + "stream=1\n", "stream", "AlexeyAB's"),                                  # a CUDA stream
    (NET + CONV + "dont_update=1000\n", "dont_update", "AlexeyAB's"),                     # every layer's key
])
def test_training_only_key_is_a_note_and_noted_for_training(text, key, reader):
    net, notes = _build(text)
    assert len(notes) == 1 and f"Unused field '{key}' ({reader} Darknet reads it only for training" in notes[0]
    assert [entry.split()[-1] for entry in net.training_only_keys] == [key]


@pytest.mark.parametrize("section, typo, closest", [
    ("[convolutional]", "bacth_normalize", "batch_normalize"),
    ("[net]", "max_epochs", "max_batches"),   # AlexeyAB's Darknet does not read max_epochs either
])
def test_unknown_key_is_a_note_naming_the_closest_key(section, typo, closest):
    text = NET + f"{typo}=1\n" + CONV if section == "[net]" else NET + CONV + f"{typo}=1\n"
    net, notes = _build(text)
    assert notes == [f"k.cfg:{5 if section == '[net]' else 9} {section}: Unused field '{typo}' (no Darknet reads it "
                     f"for {section}; did you mean '{closest}'?)"]
    assert net.training_only_keys == []


def test_unknown_key_without_a_close_one():
    _, notes = _build(NET + CONV + "zzz=1\n")
    assert notes == ["k.cfg:9 [convolutional]: Unused field 'zzz' (no Darknet reads it for [convolutional])"]


def test_alias_sections_use_their_sections_keys():
    _, notes = _build(NET + "[conv]\nfilters=2\nsize=1\nbath_normalize=1\n")
    assert notes[0].endswith("did you mean 'batch_normalize'?)")
    with pytest.raises(CfgError, match="'cbn' is read by AlexeyAB's Darknet for \\[conv\\]"):
        _build(NET + "[conv]\nfilters=2\nsize=1\ncbn=1\n")


def test_table_covers_every_registered_section():
    for name in registered():
        assert darknet_keys.known_keys(name), f"[{name}] has no Darknet keys"
    for table in (darknet_keys.ALEXEYAB_KEYS, darknet_keys.PJREDDIE_KEYS):
        assert set(darknet_keys.ALIASES.values()) <= set(darknet_keys.ALEXEYAB_KEYS) | set(darknet_keys.PJREDDIE_KEYS)
        assert all(isinstance(keys, frozenset) for keys in table.values())
    for kind, keys in darknet_keys.INFERENCE_KEYS.items():
        assert keys <= darknet_keys.known_keys(kind), f"[{kind}]: {sorted(keys - darknet_keys.known_keys(kind))}"
    assert darknet_keys.readers("shortcut", "alpha") == ["pjreddie"]
    assert darknet_keys.readers("route", "layers") == ["pjreddie", "AlexeyAB"]
    assert darknet_keys.readers("reorg3d", "flatten") == []   # pjreddie's [reorg] only


def _pack_cfgs() -> list[Path]:
    cfgs = sorted((REPO / "tests" / "fixtures").rglob("*.cfg"))
    for pack in (reference_dir(), reference_yolo_dir()):
        if pack is not None:
            cfgs += sorted(pack.rglob("*.cfg"))
    return cfgs


@pytest.mark.parametrize("cfg", _pack_cfgs(), ids=lambda path: f"{path.parent.name}/{path.name}")
def test_fixture_and_pack_cfgs_build_with_no_unread_inference_key(cfg):
    """Shapes only (meta tensors). Notes are allowed (max_epochs in AlexeyAB's Gaussian_yolov3_BDD.cfg)."""
    with warnings.catch_warnings(record=True) as caught, torch.device("meta"):
        warnings.simplefilter("always")
        Darknet(read_cfg(cfg), cfg_path=cfg)
    notes = [str(w.message) for w in caught if "Unused field" in str(w.message)]
    assert all("changes" not in note for note in notes)


def test_training_notes_training_only_keys_before_iteration_1(tmp_path):
    from pydarknet.engine.train import train_detector

    # an AlexeyAB-only key: the net trains as AlexeyAB's Darknet, which reads labels beside the images
    data = make_synth(tmp_path / "synth", train=4, valid=1, size=64, seed=1, layout="alexeyab")
    cfg = tmp_path / "t.cfg"
    cfg.write_text("[net]\nbatch=2\nwidth=32\nheight=32\nchannels=3\nmax_batches=1\nlabel_smooth_eps=0.1\n"
                   "[convolutional]\nfilters=10\nsize=1\nactivation=linear\n"
                   "[region]\nanchors=1,1\nclasses=5\nnum=1\nsoftmax=1\n")
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_detector(data, cfg, workers=0, show_progress=False, verbose=False, log=lines.append)
    note = next(i for i, line in enumerate(lines) if line.startswith("Note:"))
    assert lines[note] == (f"Note: {cfg}:7 [net] label_smooth_eps: Darknet reads it for training (or GPU streams, "
                           f"printing); pydarknet does not apply it")
    assert note < next(i for i, line in enumerate(lines) if line.lstrip().startswith("1: "))
