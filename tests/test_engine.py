"""The one training loop: reproducible runs for both tasks, the `random` policy, the task of a net."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.engine.classifier import ClassifierTask
from pydarknet.engine.detector import DetectorTask
from pydarknet.engine.tasks import task_for
from pydarknet.errors import CfgError
from pydarknet.network import Darknet
from test_classifier import write_cfg, write_data
from test_train_loop import TINY_CFG, _train, dataset  # noqa: F401  (the module's synthetic dataset fixture)


def test_policy_random_trains_past_burn_in(tmp_path, dataset):  # noqa: F811
    cfg = tmp_path / "random.cfg"
    text = TINY_CFG.format(lr=0.01, burn_in=2).replace("policy=steps\nsteps=800\nscales=.1\n", "policy=random\n")
    cfg.write_text(text)
    result = _train(dataset, cfg, max_batches=6)
    rates = [entry.rate for entry in result.history]
    assert [entry.batch for entry in result.history] == list(range(1, 7))
    # DARKNET(network.c:get_current_rate): rate * (batch/burn_in)^4 while batch < burn_in, then rate * u^power
    assert rates[0] == pytest.approx(0.01 * (1 / 2) ** 4)
    after = rates[1:]
    assert all(0 < rate <= 0.01 for rate in after) and len(set(after)) == len(after)


def _classifier_run(tmp_path, seed: int) -> bytes:
    folder = tmp_path / f"run{seed}-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    data = write_data(folder, ["Lred", "Lblue"], classes=2)
    cfg = write_cfg(folder, tree=False)
    result = CliRunner().invoke(main, ["classifier", "train", str(data), str(cfg), "--workers", "0",
                                       "--max-batches", "4", "--seed", str(seed)])
    assert result.exit_code == 0, result.output
    return (folder / "backup" / "toy.weights").read_bytes()


def test_classifier_train_with_a_seed_is_bit_reproducible(tmp_path):
    first, again, other = _classifier_run(tmp_path, 7), _classifier_run(tmp_path, 7), _classifier_run(tmp_path, 8)
    assert first == again
    assert first != other


def test_task_for_picks_the_task_of_the_net(tmp_path):
    classifier = Darknet.from_cfg(write_cfg(tmp_path, tree=False))
    assert isinstance(task_for(classifier), ClassifierTask)
    detector = tmp_path / "det.cfg"
    detector.write_text(TINY_CFG.format(lr=0.001, burn_in=0))
    task = task_for(Darknet.from_cfg(detector))
    assert isinstance(task, DetectorTask) and task.top == 5
    with pytest.raises(CfgError, match="detector training needs a detection layer"):
        DetectorTask(classifier)


def test_both_tasks_send_minus_delta_into_the_loss_layer_input(tmp_path):
    """The classifier task's gradient is the cross-entropy shortcut: exactly -delta (Darknet's `truth - p`)."""
    net = Darknet.from_cfg(write_cfg(tmp_path, tree=False))
    task = ClassifierTask(net)
    probs = torch.softmax(torch.randn(4, 2), dim=1)
    truths = torch.eye(2)[[0, 1, 1, 0]]
    loss = task.loss(probs, truths)
    torch.testing.assert_close(task.input_gradient(probs, loss), probs - truths)
    assert loss.cost == pytest.approx(float(-(truths * torch.log(probs)).sum()), rel=1e-6)
    np.testing.assert_array_equal(loss.delta.numpy(), (truths - probs).numpy())


def test_training_prints_darknets_messages_on_stderr(tmp_path, dataset):  # noqa: F811
    """The layer table when the cfg is loaded and `Saving weights to …` before each file, as Darknet."""
    import logging

    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CFG.format(lr=0.001, burn_in=0))
    logger = logging.getLogger("pydarknet")   # its own handler: CLI runs in this process may stop propagation
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = _train(dataset, cfg, max_batches=1)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    messages = [record.getMessage() for record in records]
    assert messages[0].startswith("layer     filters    size")
    assert f"Saving weights to {result.final_weights}" in messages
