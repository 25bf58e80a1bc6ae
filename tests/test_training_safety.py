"""A diverged update, a full disk or a bad label never costs the user the last good weights."""
from __future__ import annotations

import errno
import warnings
from pathlib import Path

import pytest
import torch

from pydarknet.data.dataset import BadSampleWarning
from pydarknet.data.labels import LabelError, parse_labels
from pydarknet.engine import detector as detector_task
from pydarknet.engine import train as loop
from pydarknet.errors import TrainingError
from pydarknet.network import load_network
from test_train_loop import TINY_CFG, _train, dataset  # noqa: F401  (the module's synthetic dataset fixture)


def _cfg(tmp_path: Path, policy: str) -> Path:
    path = tmp_path / "tiny.cfg"
    path.write_text(TINY_CFG.format(lr=0.001, burn_in=0).replace("policy=steps\nsteps=800\nscales=.1\n", policy))
    return path


def test_a_diverged_update_never_overwrites_the_good_backup(dataset, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(detector_task, "BACKUP_EVERY", 5)
    monkeypatch.setattr(detector_task, "NUMBERED_EARLY", 0)   # only <cfg>.backup
    cfg = _cfg(tmp_path, "policy=steps\nsteps=10\nscales=1e38\n")   # the update at iteration 10 overflows
    backup = dataset.parent / "backup" / "tiny.backup"
    backup.unlink(missing_ok=True)
    with pytest.raises(TrainingError) as caught:
        _train(dataset, cfg, max_batches=20)
    message = str(caught.value)
    assert "not finite after iteration 10" in message and f"last good weights are in {backup}" in message
    good = load_network(cfg, backup, "cpu")
    assert good.seen == 5 * 4 and all(torch.isfinite(p).all() for p in good.parameters())


def test_a_failed_backup_write_names_the_file_and_the_last_good_one(dataset, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(detector_task, "BACKUP_EVERY", 2)
    monkeypatch.setattr(detector_task, "NUMBERED_EARLY", 0)
    written: list[Path] = []

    def save_until_the_disk_is_full(net, path, *args, **kwargs):
        if written:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        written.append(Path(path))
        real_save(net, path, *args, **kwargs)

    real_save = loop.save_weights
    monkeypatch.setattr(loop, "save_weights", save_until_the_disk_is_full)
    with pytest.raises(TrainingError, match=r"cannot write .*tiny\.backup: No space left on device; the last good "
                                            r"weights are in .*tiny\.backup"):
        _train(dataset, _cfg(tmp_path, "policy=constant\n"), max_batches=6)
    assert written and written[0].stat().st_size > 0


def test_a_chart_that_cannot_be_written_is_a_warning(dataset, tmp_path, monkeypatch):  # noqa: F811
    def no_chart(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(loop, "save_chart", no_chart)
    monkeypatch.setattr(loop, "CHART_EVERY", 1)
    with pytest.warns(RuntimeWarning, match="cannot write .*chart.png"):
        result = _train(dataset, _cfg(tmp_path, "policy=constant\n"), max_batches=2)
    assert len(result.history) == 2 and result.final_weights.is_file()


def test_a_classification_only_label_needs_a_tree():
    assert parse_labels("3 0 0 0 0\n", 5)[0, 0] > 100000   # DARKNET(data.c:correct_boxes): the marker
    with pytest.raises(LabelError, match=r"x\.txt:2: x = y = 0 marks a classification-only label"):
        parse_labels("1 .5 .5 .2 .2\n0 0 0 0 0\n", 5, "x.txt", classification_only=False)


def test_a_classification_only_label_in_a_net_without_a_tree_is_a_skipped_sample(dataset, tmp_path):  # noqa: F811
    images = (dataset.parent / "train.txt").read_text().split()
    odd = tmp_path / "images" / "marker.png"
    odd.parent.mkdir()
    odd.write_bytes(Path(images[0]).read_bytes())
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "marker.txt").write_text("0 0 0 0 0\n")
    listing = tmp_path / "train.txt"
    listing.write_text("\n".join([str(odd)] * 3 + images) + "\n")
    data = tmp_path / "marker.data"
    data.write_text(f"classes=5\ntrain={listing}\nbackup={tmp_path / 'backup'}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BadSampleWarning)
        result = loop.train_detector(data, _cfg(tmp_path, "policy=constant\n"), workers=0, show_progress=False,
                                     verbose=False, log=lambda line: None, max_batches=4)
    assert result.skipped_samples > 0 and len(result.history) == 4
    assert any("marker.txt:1: x = y = 0" in str(w.message) for w in caught)
