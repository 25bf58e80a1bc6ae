"""Weights io: header variants, partial files, byte-identical round trips, clear errors."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import warnings

import numpy as np
import pytest
import torch

from pydarknet.cfg import read_cfg
from pydarknet.engine.train import check_iterations_left
from pydarknet.errors import TrainingError
from pydarknet.fileio import write_atomically
from pydarknet.network import Darknet, load_network
from pydarknet.weights import (PartialWeightsWarning, WeightsError, WeightsHeader, load_weights, save_weights,
                               weights_bytes)
from reference import decompressed_weights, mini_network, network_input


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", ["mini-yolov2-voc", "mini-yolov2-tiny-voc", "mini-darknet19", "mini-yolo9000"])
def test_load_then_save_is_byte_identical(reference, tmp_path, name):
    source = reference / "mini" / f"{name}.weights"
    expected = json.loads((reference / "weights.json").read_text())[name]
    assert _sha256(source) == expected["sha256_uncompressed"]
    net = mini_network(reference, name)
    assert net.seen == expected["seen"] == 5000000064  # above 2**32: a 32-bit read would be wrong
    save_weights(net, tmp_path / "out.weights")
    assert _sha256(tmp_path / "out.weights") == expected["sha256_uncompressed"]


@pytest.mark.slow
def test_full_size_round_trip(reference, tmp_path):
    source = decompressed_weights(reference, "yolov2-tiny-voc", tmp_path)
    net = Darknet.from_cfg(reference / "darknet" / "cfg" / "yolov2-tiny-voc.cfg")
    load_weights(net, source)
    assert weights_bytes(net) == source.read_bytes()


def test_old_header_reads_32bit_seen(reference):
    old = reference / "mini" / "mini-yolov2-tiny-voc.minor1.weights"
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-tiny-voc.cfg")
    report = load_weights(net, old)
    assert (report.header.major, report.header.minor, report.header.nbytes) == (0, 1, 16)
    assert net.seen == 5000000064 % 2**32 == 705032768
    net.eval()
    new = mini_network(reference, "mini-yolov2-tiny-voc")
    x = network_input(reference, "dog", 416)
    with torch.no_grad():
        assert torch.equal(net(x), new(x))


def test_partial_file_loads_prefix_and_warns(reference):
    net = Darknet.from_cfg(reference / "mini" / "mini-darknet19.cfg")
    initial_last = net.layers[23].op.weight.detach().clone()
    with pytest.warns(PartialWeightsWarning, match="loaded 18 of 19 layers"):
        report = load_weights(net, reference / "mini" / "mini-darknet19.conv.23.weights")
    assert report.partial and report.layers_loaded == 18
    full = mini_network(reference, "mini-darknet19")
    torch.testing.assert_close(net.layers[22].op.weight, full.layers[22].op.weight, rtol=0, atol=0)
    assert torch.equal(net.layers[23].op.weight, initial_last)  # untouched, as Darknet leaves it


def test_save_upto_cutoff_is_darknet_partial_file(reference, tmp_path):
    net = mini_network(reference, "mini-darknet19")
    save_weights(net, tmp_path / "conv23.weights", cutoff=23)
    assert (tmp_path / "conv23.weights").read_bytes() == \
        (reference / "mini" / "mini-darknet19.conv.23.weights").read_bytes()


def test_truncated_file_names_the_layer(reference, tmp_path):
    data = (reference / "mini" / "mini-yolov2-voc.weights").read_bytes()
    (tmp_path / "cut.weights").write_bytes(data[:-1000])
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-voc.cfg")
    with pytest.raises(WeightsError, match=r"cut.weights: file ends inside layer 30 \(convolutional\)"):
        load_weights(net, tmp_path / "cut.weights")


def test_oversized_file_is_an_error(reference, tmp_path):
    data = (reference / "mini" / "mini-yolov2-voc.weights").read_bytes()
    (tmp_path / "big.weights").write_bytes(data + np.zeros(10, np.float32).tobytes())
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-voc.cfg")
    with pytest.raises(WeightsError, match="10 floats are left after the last layer"):
        load_weights(net, tmp_path / "big.weights")


def test_wrong_cfg_is_an_error(reference):
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-tiny-voc.cfg")
    with pytest.raises(WeightsError, match="mini-yolov2-voc.weights"):
        load_weights(net, reference / "mini" / "mini-yolov2-voc.weights")


@pytest.mark.parametrize("content, message", [
    (b"", "too short for a Darknet weights header"),
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a Darknet weights file"),
    (np.array([0, 2, 0, 0], np.int32).tobytes() + b"\x00\x00", "needs 20 bytes"),
])
def test_not_a_weights_file(tmp_path, content, message):
    (tmp_path / "bad.weights").write_bytes(content)
    with pytest.raises(WeightsError, match=message):
        load_weights(_tiny_net(tmp_path), tmp_path / "bad.weights")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.weights"):
        load_weights(_tiny_net(tmp_path), tmp_path / "nothing.weights")


def test_transposed_connected_weights(tmp_path):
    net = _tiny_net(tmp_path)
    dense = net.layers[1]
    header = WeightsHeader(0, 1001, 0, 7)  # minor > 1000: connected weights stored inputs x outputs
    conv_part = np.concatenate([t.detach().numpy().ravel() for t in net.layers[0].darknet_tensors()])
    weight = np.arange(dense.op.weight.numel(), dtype=np.float32).reshape(dense.op.weight.shape)
    body = np.concatenate([conv_part, np.zeros(dense.op.weight.shape[0], np.float32), weight.T.ravel()])
    (tmp_path / "t.weights").write_bytes(header.pack() + body.astype("<f4").tobytes())
    load_weights(net, tmp_path / "t.weights")
    np.testing.assert_array_equal(dense.op.weight.detach().numpy(), weight)
    assert net.seen == 7


def _tiny_net(tmp_path) -> Darknet:
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=1\n\n[convolutional]\nfilters=2\nsize=3\npad=1\n"
                   "activation=leaky\n\n[connected]\noutput=3\nactivation=linear\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return Darknet.from_cfg(cfg)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_with_their_offset(tmp_path, value):
    net = _tiny_net(tmp_path)
    data = bytearray(weights_bytes(net))
    # layer 0 holds 2 biases then 2*1*3*3 weights; the 5th float of its weights sits at 20 + 4*(2+4)
    data[44:48] = np.float32(value).tobytes()
    (tmp_path / "bad.weights").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"bad.weights: layer 0 \(convolutional\) holds a non-finite value "
                                           rf"\({value}\) at byte offset 44: the file is corrupt$"):
        load_weights(net, tmp_path / "bad.weights")


def _with_header(data: bytes, major: int, minor: int, revision: int) -> bytes:
    return struct.pack("<3i", major, minor, revision) + data[12:]


@pytest.mark.parametrize("version", [(0, 2, 5), (0, 2, 7)])
def test_alexeyab_header_round_trips_byte_identically(reference, tmp_path, version):
    # AlexeyAB's save_weights_upto writes 0.2.5 (MAJOR/MINOR/PATCH_VERSION in src/version.h)
    data = _with_header((reference / "mini" / "mini-yolov2-voc.weights").read_bytes(), *version)
    (tmp_path / "ab.weights").write_bytes(data)
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-voc.cfg")
    load_weights(net, tmp_path / "ab.weights")
    assert weights_bytes(net) == data
    save_weights(net, tmp_path / "again.weights", cutoff=23)  # partial files keep it too
    assert (tmp_path / "again.weights").read_bytes()[:12] == struct.pack("<3i", *version)


def test_old_header_round_trips_with_32bit_seen(reference):
    old = (reference / "mini" / "mini-yolov2-tiny-voc.minor1.weights").read_bytes()
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-tiny-voc.cfg")
    load_weights(net, reference / "mini" / "mini-yolov2-tiny-voc.minor1.weights")
    assert weights_bytes(net) == old


def test_new_net_writes_darknets_header(tmp_path):
    assert weights_bytes(_tiny_net(tmp_path))[:20] == struct.pack("<3iQ", 0, 2, 0, 0)


def test_transposed_file_is_resaved_untransposed(tmp_path):
    net = _tiny_net(tmp_path)
    (tmp_path / "t.weights").write_bytes(WeightsHeader(0, 1001, 0, 7).pack() + weights_bytes(net)[20:])
    load_weights(net, tmp_path / "t.weights")
    assert weights_bytes(net)[:20] == struct.pack("<3iQ", 0, 2, 0, 7)


def test_absurd_seen_names_file_and_offset(reference, tmp_path):
    data = bytearray((reference / "mini" / "mini-yolov2-voc.weights").read_bytes())
    data[12:20] = struct.pack("<Q", 2 ** 62)
    (tmp_path / "absurd.weights").write_bytes(bytes(data))
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-voc.cfg")
    with pytest.raises(WeightsError, match=r"absurd.weights: byte offset 12: seen = 4611686018427387904"):
        load_weights(net, tmp_path / "absurd.weights")
    data[12:20] = struct.pack("<Q", 2 ** 62 - 1)  # the largest seen that loads
    (tmp_path / "absurd.weights").write_bytes(bytes(data))
    load_weights(net, tmp_path / "absurd.weights")
    assert net.seen == 2 ** 62 - 1


def test_no_iteration_left_is_an_error_naming_clear(reference):
    net = mini_network(reference, "mini-yolov2-voc")  # seen 5000000064: far past any max_batches
    with pytest.raises(TrainingError, match=r"full.weights: seen = 5000000064 images .*no iteration.*-clear"):
        check_iterations_left(net, "full.weights")


def test_iterations_left_at_the_boundary(tmp_path):
    net = _tiny_net(tmp_path)
    net.options.max_batches = 10
    net.seen = 10 * net.options.images_per_update - 1  # iteration 9: one left
    check_iterations_left(net, "w.weights")
    net.seen += 1
    with pytest.raises(TrainingError, match="iteration 10, already at max_batches = 10"):
        check_iterations_left(net, "w.weights")


def test_partial_of_a_full_file_can_be_trained(reference, tmp_path):
    from click.testing import CliRunner

    from pydarknet.cli import main
    out = tmp_path / "conv.13.weights"
    result = CliRunner().invoke(main, ["partial", str(reference / "mini" / "mini-yolov2-voc.cfg"),
                                       str(reference / "mini" / "mini-yolov2-voc.weights"), str(out), "13"])
    assert result.exit_code == 0, result.output
    net = Darknet.from_cfg(reference / "mini" / "mini-yolov2-voc.train.cfg")
    with pytest.warns(PartialWeightsWarning):
        load_weights(net, out)
    assert net.seen == 0
    check_iterations_left(net, out)  # the README's fine-tuning command starts at iteration 0


def test_partial_makes_an_alexeyab_conv_29_file(reference_yolo, tmp_path):
    """`partial mini-yolov4-tiny.cfg ... 29` as AlexeyAB's yolov4-tiny.conv.29: the file's 0.2.5 header with a
    64-bit seen, seen = cur_iteration·batch·subdivisions = 0 (darknet.c:partial zeroes cur_iteration), then the
    conv layers 0..28 byte for byte as in the full file."""
    from click.testing import CliRunner

    from pydarknet.cli import main
    cfg, weights = reference_yolo / "mini" / "mini-yolov4-tiny.cfg", reference_yolo / "mini" / "mini-yolov4-tiny.weights"
    out = tmp_path / "mini-yolov4-tiny.conv.29"
    result = CliRunner().invoke(main, ["partial", str(cfg), str(weights), str(out), "29"])
    assert result.exit_code == 0, result.output
    full, partial = weights.read_bytes(), out.read_bytes()
    assert struct.unpack("<3iQ", full[:20]) == (0, 2, 5, 5000000064)
    assert struct.unpack("<3iQ", partial[:20]) == (0, 2, 5, 0)
    net = load_network(cfg, weights, "cpu")
    floats = sum(t.numel() for layer in net.layers[:29] for t in layer.darknet_tensors())
    assert len(partial) == 20 + 4 * floats and partial[20:] == full[20:len(partial)]
    with pytest.warns(PartialWeightsWarning, match="loaded 17 of 21 layers"):
        report = load_weights(Darknet.from_cfg(reference_yolo / "mini" / "mini-yolov4-tiny.train.cfg"), out)
    assert report.header == WeightsHeader(0, 2, 5, 0)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_new_files_get_the_umask_mode(tmp_path, umask_022):
    save_weights(_tiny_net(tmp_path), tmp_path / "new.weights")
    write_atomically(tmp_path / "backup" / "chart.png", b"png")
    assert (tmp_path / "new.weights").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "backup" / "chart.png").stat().st_mode & 0o777 == 0o644
    os.umask(0o077)
    write_atomically(tmp_path / "private.weights", b"x")
    assert (tmp_path / "private.weights").stat().st_mode & 0o777 == 0o600


def test_rewrite_keeps_an_existing_files_mode(tmp_path, umask_022):
    target = tmp_path / "shared.weights"
    target.write_bytes(b"old")
    target.chmod(0o664)
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o664


def _state(net) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in net.state_dict().items()}


def _assert_bit_identical(net, expected: dict[str, torch.Tensor]) -> None:
    state = _state(net)
    assert state.keys() == expected.keys()
    for name, tensor in state.items():
        assert tensor.dtype == expected[name].dtype and torch.equal(tensor, expected[name]), name


@pytest.mark.parametrize("name", ["mini-yolov2-voc", "mini-darknet19"])
def test_load_network_skips_the_random_init_of_a_full_file(reference, name):
    cfg, weights = reference / "mini" / f"{name}.cfg", reference / "mini" / f"{name}.weights"
    old = Darknet.from_cfg(cfg)
    load_weights(old, weights)
    torch.manual_seed(7)
    net = load_network(cfg, weights, "cpu")
    after_load = torch.rand(4)
    torch.manual_seed(7)
    assert torch.equal(after_load, torch.rand(4))  # no draw from torch's generator: nothing was initialised
    assert net.initialised
    _assert_bit_identical(net, _state(old))


def test_load_network_with_a_partial_file_initialises_the_rest_as_before(reference):
    cfg, weights = reference / "mini" / "mini-darknet19.cfg", reference / "mini" / "mini-darknet19.conv.23.weights"
    torch.manual_seed(11)
    old = Darknet.from_cfg(cfg)
    with pytest.warns(PartialWeightsWarning):
        load_weights(old, weights)
    expected, next_draw = _state(old), torch.rand(4)
    torch.manual_seed(11)
    with pytest.warns(PartialWeightsWarning, match="loaded 18 of 19 layers"):
        net = load_network(cfg, weights, "cpu")
    _assert_bit_identical(net, expected)   # layer 23 holds the same random init, the file's layers its values
    assert torch.equal(torch.rand(4), next_draw)   # and the same draws were taken


def test_load_network_without_weights_is_from_cfg(reference):
    cfg = reference / "mini" / "mini-yolov2-tiny-voc.cfg"
    torch.manual_seed(3)
    expected = _state(Darknet.from_cfg(cfg))
    torch.manual_seed(3)
    _assert_bit_identical(load_network(cfg, None, "cpu"), expected)


@pytest.mark.parametrize("flag", ["dontload=1", None])
def test_load_network_initialises_layers_a_file_does_not_reach(tmp_path, flag):
    """A dontload=1 layer, or one past a cutoff: not in the file, so it keeps from_cfg's init."""
    layers = ["[convolutional]\nfilters=2\nsize=3\npad=1\nactivation=leaky\n",
              "[convolutional]\nbatch_normalize=1\nfilters=3\nsize=1\nactivation=leaky\n" + (f"{flag}\n" if flag else "")]
    cfg = tmp_path / "two.cfg"
    cfg.write_text("[net]\nwidth=4\nheight=4\nchannels=1\n\n" + "\n".join(layers))
    save_weights(Darknet.from_cfg(cfg, seed=1), tmp_path / "first.weights", cutoff=1)
    cutoff = None if flag else 1
    torch.manual_seed(5)
    old = Darknet.from_cfg(cfg)
    load_weights(old, tmp_path / "first.weights", cutoff=cutoff)
    expected = _state(old)
    torch.manual_seed(5)
    net = Darknet(read_cfg(cfg), cfg_path=cfg, initialise=False)
    load_weights(net, tmp_path / "first.weights", cutoff=cutoff)
    assert net.initialised
    _assert_bit_identical(net, expected)


def test_load_network_refuses_a_bad_file_before_initialising(reference, tmp_path):
    data = (reference / "mini" / "mini-yolov2-voc.weights").read_bytes()
    (tmp_path / "cut.weights").write_bytes(data[:-1000])
    net = Darknet(read_cfg(reference / "mini" / "mini-yolov2-voc.cfg"), initialise=False)
    with pytest.raises(WeightsError, match=r"cut.weights: file ends inside layer 30 \(convolutional\)"):
        load_weights(net, tmp_path / "cut.weights")
    assert not net.initialised


@pytest.mark.filterwarnings("ignore::pydarknet.weights.PartialWeightsWarning")
def test_training_starts_from_an_alexeyab_conv_29_file(reference_yolo, tmp_path):
    """`detector train obj.data yolov4-tiny-custom.cfg yolov4-tiny.conv.29`: the 29 layers come from the file, the
    rest from the initialisation, seen starts at 0; after one burn-in iteration (rate ~ 0) the loaded layers are
    still the file's (its rolling statistics move with the batch statistics)."""
    from click.testing import CliRunner

    from pydarknet.cli import main
    from pydarknet.data.synth import make_synth
    from pydarknet.engine.train import train_detector

    mini = reference_yolo / "mini"
    conv29 = tmp_path / "mini-yolov4-tiny.conv.29"
    result = CliRunner().invoke(main, ["partial", str(mini / "mini-yolov4-tiny.cfg"), str(mini / "mini-yolov4-tiny.weights"),
                                       str(conv29), "29"])
    assert result.exit_code == 0, result.output
    synth = make_synth(tmp_path / "synth", train=4, valid=1, size=96, seed=0, layout="alexeyab")
    data = tmp_path / "obj.data"
    data.write_text(f"classes=80\ntrain={synth.parent / 'train.txt'}\nbackup={tmp_path / 'backup'}\n")
    cfg = tmp_path / "yolov4-tiny-custom.cfg"
    cfg.write_text((mini / "mini-yolov4-tiny.train.cfg").read_text().replace("max_batches = 2000200", "max_batches=1")
                   .replace("width=416", "width=96").replace("height=416", "height=96"))
    trained = train_detector(data, cfg, conv29, workers=0, show_progress=False, verbose=False, log=lambda line: None)
    start = load_network(mini / "mini-yolov4-tiny.cfg", mini / "mini-yolov4-tiny.weights", "cpu")
    after = load_network(cfg, trained.final_weights, "cpu")
    assert after.seen == 2   # one iteration of batch=2 from seen 0
    for index in range(29):
        trained_now = after.layers[index].trained_tensors()
        for name, before in start.layers[index].trained_tensors().items():
            torch.testing.assert_close(trained_now[name].detach(), before.detach(), rtol=0,
                                       atol=1e-6 * float(before.detach().abs().max()) + 1e-7)
