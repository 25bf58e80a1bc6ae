"""AlexeyAB's weights files in training: `<cfg>_<N>.weights` every `saveweights=`, `<cfg>_last.weights` every
`savelast=`, and `ema_alpha`'s average of the weights (`<cfg>_ema.weights`), as detector.c and network.c do."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

from pydarknet.data.dataset import BadSampleWarning
from pydarknet.data.files import read_data_file
from pydarknet.data.synth import make_synth
from pydarknet.dialect import ALEXEYAB
from pydarknet.engine.detector import AlexeyABBackups
from pydarknet.engine.ema import WeightsEma
from pydarknet.engine.train import TrainingExtras, train_detector
from pydarknet.network import Darknet, load_network
from test_train_loop import TINY_CFG


def _data(tmp_path: Path, extra: str = "") -> Path:
    data = tmp_path / "obj.data"
    data.write_text(f"classes=5\n{extra}")
    return data


def _saved(schedule: AlexeyABBackups, iterations: range) -> list[str]:
    return [name for batch in iterations for name in schedule.names(batch, "yolo")]


def test_default_schedule_is_a_numbered_file_every_1000_and_last_every_100(tmp_path):
    schedule = AlexeyABBackups(read_data_file(_data(tmp_path)), max_batches=6000, start=0)
    assert schedule.header_line() == ("Weights are saved after: 1000 iterations. Last weights (*_last.weight) are "
                                      "stored every 100 iterations. ")
    saved = _saved(schedule, range(1, 2101))
    assert saved == [*(["yolo_last.weights"] * 9), "yolo_1000.weights", *(["yolo_last.weights"] * 10),
                     "yolo_2000.weights", "yolo_last.weights", "yolo_last.weights"]
    # from max_batches 10000 on, every 10000
    assert AlexeyABBackups(read_data_file(_data(tmp_path)), max_batches=10000, start=0).save_after == 10000


def test_a_resumed_run_counts_from_its_first_iteration_or_a_multiple(tmp_path):
    schedule = AlexeyABBackups(read_data_file(_data(tmp_path, "saveweights=300\nsavelast=40\n")), max_batches=6000,
                               start=250)
    saved = [(batch, name) for batch in range(251, 601) for name in schedule.names(batch, "y")]
    # _last at 280 (a multiple of 40), then 40 after each; _N at 300 (a multiple), then 300 after it
    assert [b for b, name in saved if name == "y_last.weights"][:3] == [280, 320, 360]
    assert [b for b, name in saved if name != "y_last.weights"] == [300, 600]


def test_no_last_file_when_numbered_files_are_as_frequent(tmp_path):
    schedule = AlexeyABBackups(read_data_file(_data(tmp_path, "saveweights=50\nsavelast=100\n")), 6000, start=0)
    assert _saved(schedule, range(1, 201)) == ["yolo_50.weights", "yolo_100.weights", "yolo_150.weights",
                                               "yolo_200.weights"]


def _tiny_net(tmp_path: Path, max_batches: int) -> Darknet:
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG.format(lr=0.001, burn_in=0).replace("max_batches=1000", f"max_batches={max_batches}"))
    return Darknet.from_cfg(cfg, seed=0)


def test_weights_average_follows_alexeyabs_formula(tmp_path):
    net = _tiny_net(tmp_path, 2010)   # start at 1005, applied at 1010
    ema = WeightsEma(net, alpha=0.75)
    weights = net.layers[0].op.weight
    assert ema.after_update(1004) == [] and not ema.initialized
    history = []
    for iteration in range(1005, 1012):
        with torch.no_grad():
            weights.add_(1.0)   # an update
        history.append(weights.detach().clone())
        lines = ema.after_update(iteration)
        if iteration == 1005:
            assert lines == [" EMA initialization ", " ema_update(), ema_alpha = 0.750000 "]
        elif iteration < 1010:
            assert lines == [" ema_update(), ema_alpha = 0.750000 "]
    expected = history[0]
    for later in history[1:5]:                          # iterations 1006..1009 update
        expected = 0.75 * expected + 0.25 * later
    # iteration 1010 put the average into the weights; 1011 (after the apply point) leaves both alone
    torch.testing.assert_close(ema.average[0], expected)
    assert torch.equal(weights.detach(), expected + 1.0)   # 1011's update applied on top of the average


def test_ema_weights_are_written_beside_the_last_weights(tmp_path):
    synth = make_synth(tmp_path / "synth", train=8, valid=1, size=64, seed=2, layout="alexeyab")
    data = tmp_path / "run.data"
    data.write_text(synth.read_text().replace(f"backup={synth.parent / 'backup'}", f"backup={tmp_path / 'backup'}")
                    + "saveweights=3\nsavelast=1\n")
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG.format(lr=0.001, burn_in=0).replace("max_batches=1000", "max_batches=4\nema_alpha=0.9"))
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        result = train_detector(data, cfg, workers=0, show_progress=False, verbose=False, log=lines.append,
                                extras=TrainingExtras(dialect=ALEXEYAB))
    backup = tmp_path / "backup"
    assert " EMA initialization " in lines   # at iteration max_batches/2 = 2
    assert f" EMA weights are saved to the file: {backup / 'tiny_ema.weights'} " in lines
    assert sorted(p.name for p in backup.glob("*.weights")) == ["tiny_3.weights", "tiny_ema.weights",
                                                                "tiny_final.weights", "tiny_last.weights"]
    # max_batches - 1000 < 2: the average is its first value, the weights after iteration 2 ...
    average = load_network(cfg, backup / "tiny_ema.weights", "cpu").layers[0].op.weight
    final = load_network(cfg, result.final_weights, "cpu").layers[0].op.weight
    assert not torch.equal(average, final)   # ... while training went on from its own weights
