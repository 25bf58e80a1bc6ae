"""`detector train`: Darknet's loop, backups, resume after a kill, bad samples, NaN loss, torchrun/DDP."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pydarknet import load_network
from pydarknet.data.dataset import BadSampleWarning
from pydarknet.data.synth import make_synth
from pydarknet.engine.detector import backup_names
from pydarknet.engine.train import TrainingError, cfg_base, train_detector
from pydarknet.weights import WeightsHeader

TINY_CFG = """[net]
batch=4
subdivisions=2
width=64
height=64
channels=3
momentum=0.9
decay=0.0005
hue=.1
saturation=1.5
exposure=1.5
learning_rate={lr}
burn_in={burn_in}
max_batches=1000
policy=steps
steps=800
scales=.1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=4

[convolutional]
size=1
stride=1
pad=1
filters=20
activation=linear

[region]
anchors = 1,1, 2,2
bias_match=1
classes=5
coords=4
num=2
softmax=1
jitter=.2
rescore=1
object_scale=5
noobject_scale=1
class_scale=1
coord_scale=1
absolute=1
thresh = .6
random=0
"""
# pjreddie's line, then AlexeyAB's hours left (-1 before an iteration is timed)
LINE = re.compile(r"^(\d+): (\d+\.\d{6}), (\d+\.\d{6}) avg, (\d+\.\d{6}) rate, \d+\.\d{6} seconds, (\d+) images, "
                  r"(-?\d+\.\d{6}) hours left$")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_synth(tmp_path_factory.mktemp("synth"), train=12, valid=2, size=64, seed=3)


def _cfg(tmp_path: Path, lr: float = 0.001, burn_in: int = 0) -> Path:
    path = tmp_path / "tiny.cfg"
    path.write_text(TINY_CFG.format(lr=lr, burn_in=burn_in))
    return path


def _train(dataset: Path, cfg: Path, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        return train_detector(dataset, cfg, *args, workers=0, show_progress=False, verbose=False,
                              log=lambda line: None, **kwargs)


def test_backup_schedule_is_darknets():
    assert backup_names(100, "yolo-voc") == ["yolo-voc.backup", "yolo-voc_100.weights"]
    assert backup_names(900, "yolo-voc") == ["yolo-voc.backup", "yolo-voc_900.weights"]
    assert backup_names(1000, "yolo-voc") == ["yolo-voc.backup"]
    assert backup_names(1050, "yolo-voc") == []
    assert backup_names(20000, "yolo-voc") == ["yolo-voc.backup", "yolo-voc_20000.weights"]
    assert cfg_base("cfg/yolo-voc.2.0.cfg") == "yolo-voc"


def test_short_run_writes_final_weights_and_darknet_lines(dataset, tmp_path):
    cfg = _cfg(tmp_path)
    result = _train(dataset, cfg, max_batches=3)
    assert [entry.batch for entry in result.history] == [1, 2, 3]
    assert all(LINE.match(entry.line()) for entry in result.history), result.history[0].line()
    assert result.history[-1].images == 3 * 4
    first, second = result.history[0], result.history[1]
    # DARKNET(detector.c:train_detector): avg starts at the first loss, then .9*avg + .1*loss
    assert first.avg_loss == pytest.approx(first.loss, rel=1e-12)
    assert second.avg_loss == pytest.approx(0.9 * first.avg_loss + 0.1 * second.loss, rel=1e-12)
    assert result.final_weights == dataset.parent / "backup" / "tiny_final.weights"
    assert (dataset.parent / "backup" / "chart.png").read_bytes()[:4] == b"\x89PNG"
    net = load_network(cfg, result.final_weights, "cpu")
    assert net.seen == 3 * 4


@pytest.mark.slow
def test_resume_after_kill_continues_from_backup(dataset, tmp_path):
    cfg = _cfg(tmp_path)
    backup = dataset.parent / "backup" / "tiny.backup"
    backup.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "pydarknet.cli", "detector", "train", str(dataset), str(cfg),
                                "--workers", "0", "--max-batches", "100000"], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not backup.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert backup.exists(), "no backup was written within the time limit"
    header = WeightsHeader.unpack(backup.read_bytes()[:20], str(backup))
    assert header.seen == 100 * 4  # written at iteration 100, atomically: never a half file
    result = _train(dataset, cfg, backup, max_batches=102)
    assert [entry.batch for entry in result.history] == [101, 102]
    assert load_network(cfg, result.final_weights, "cpu").seen == 102 * 4


def test_clear_restarts_the_schedule(dataset, tmp_path):
    cfg = _cfg(tmp_path)
    first = _train(dataset, cfg, max_batches=2)
    again = _train(dataset, cfg, first.final_weights, clear=True, max_batches=1)
    assert [entry.batch for entry in again.history] == [1]


def test_missing_label_is_skipped_and_counted(dataset, tmp_path):
    images = (dataset.parent / "train.txt").read_text().split()
    broken = tmp_path / "broken.txt"
    missing = tmp_path / "images" / "nolabel.jpg"
    missing.parent.mkdir()
    missing.write_bytes(Path(images[0]).read_bytes())
    broken.write_text("\n".join([str(missing)] * 3 + images) + "\n")
    data = tmp_path / "broken.data"
    data.write_text(f"classes=5\ntrain={broken}\nbackup={tmp_path / 'backup'}\n")
    with pytest.warns(BadSampleWarning, match="nolabel"):
        result = train_detector(data, _cfg(tmp_path), workers=0, show_progress=False, verbose=False,
                                log=lambda line: None, max_batches=6)
    assert result.skipped_samples > 0
    assert len(result.history) == 6


def test_nan_loss_stops_with_a_clear_error(dataset, tmp_path):
    with pytest.raises(TrainingError, match=r"loss is nan at iteration \d+; the last good weights"):
        _train(dataset, _cfg(tmp_path, lr=1e12), max_batches=50)


@pytest.mark.slow
def test_two_processes_with_torchrun_and_ddp(dataset, tmp_path):
    """Multi-GPU training goes through torchrun + DistributedDataParallel; gloo lets CI run it on CPU."""
    cfg = _cfg(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    completed = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                                "-m", "pydarknet.cli", "detector", "train", str(dataset), str(cfg), "--workers", "0",
                                "--max-batches", "2", "--device", "cpu"],
                               cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "Learning Rate: 0.002," in completed.stdout  # DARKNET: the rate is multiplied by the GPU count
    lines = [line for line in completed.stdout.splitlines() if LINE.match(line)]
    # DARKNET(detector.c:train_detector): one round of 2 GPUs is iterations 1 and 2; `images` = i * batch * ngpus
    assert [LINE.match(line).group(1) for line in lines] == ["2"]
    assert LINE.match(lines[-1]).group(5) == "16"
    net = load_network(cfg, dataset.parent / "backup" / "tiny_final.weights", "cpu")
    assert net.seen == 2 * 4   # the global batch of the one round (network.c:sync_nets)
    assert torch.isfinite(net.layers[0].op.weight).all()


ADAM_CFG = """[net]
batch=4
subdivisions=1
width=8
height=8
channels=3
learning_rate=0.01
momentum=0.9
decay=0.0005
adam=1
B1=0.8
B2=0.99
eps=0.001

[convolutional]
batch_normalize=1
filters=4
size=3
stride=2
pad=1
activation=leaky

[connected]
output=3
activation=linear
"""


def _adam_by_hand(w, d, m, v, t, lr=0.01, decay=0.0005, batch=4, b1=0.8, b2=0.99, eps=0.001):
    """AlexeyAB's adam_update_gpu + adam_kernel written out in numpy float64: returns w, m, v after one update."""
    d = d - decay * batch * w
    m = b1 * m + (1 - b1) * d
    v = b2 * v + (1 - b2) * d * d
    return w + lr * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps), m, v


def test_adam_updates_conv_layers_as_alexeyab(tmp_path):
    from pydarknet.engine.sgd import DarknetSGD
    from pydarknet.network import Darknet

    cfg = tmp_path / "adam.cfg"
    cfg.write_text(ADAM_CFG)
    net = Darknet.from_cfg(cfg, seed=1)
    optimizer = DarknetSGD(net)
    conv, connected = net.layers[0].trained_tensors(), net.layers[1].trained_tensors()
    generator = torch.Generator().manual_seed(5)
    expected = {name: (p.detach().double().numpy().copy(), 0.0, 0.0) for name, p in conv.items()}
    connected_before = connected["weights"].detach().clone()
    for update in (1, 2):   # the second update uses the first's m and v, and t = 2
        net.seen = update * 4
        gradients = {name: torch.randn(p.shape, generator=generator) for name, p in conv.items()}
        for name, p in conv.items():
            p.grad = gradients[name].clone()
        connected["weights"].grad = torch.randn(connected["weights"].shape, generator=generator) if update == 1 else None
        optimizer.set_rate(0.01)
        optimizer.step()
        for name, p in conv.items():
            w, m, v = expected[name]
            # Darknet's update array is the negative gradient; Adam decays biases and scales too
            expected[name] = _adam_by_hand(w, -gradients[name].double().numpy(), m, v, update)
            np.testing.assert_allclose(p.detach().double().numpy(), expected[name][0], rtol=2e-5, atol=1e-7)
            assert not optimizer.update_array(p).any()   # fill_ongpu(d, 0): nothing carried to the next update
    # the connected layer keeps Darknet's SGD: its update array carries momentum
    assert not torch.equal(connected["weights"], connected_before)
    assert optimizer.update_array(connected["weights"]).abs().sum() > 0
