"""Runs refused before they start (issue 20): a [region] that is not the last layer, a training list with no
usable sample, a second training run into a busy backup folder, a backup= that is not a folder; and the
temporaries a start-up removes (only those whose writer is gone)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from pydarknet.cli import main
from pydarknet.data.dataset import BadSampleWarning
from pydarknet.engine.train import train_detector
from pydarknet.errors import CfgError, DataError
from pydarknet.fileio import FolderBusyError, FolderLock, remove_stale_temporaries, write_atomically
from pydarknet.network import Darknet
from test_cli_errors import _error_line
from test_train_loop import _cfg, dataset  # noqa: F401  (the module's synthetic dataset fixture)
from tiny_detector import write_tiny_cfg

TRAIN = ["--workers", "0", "--max-batches", "3"]


def _train_cli(data: Path, cfg: Path, *args: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSampleWarning)
        return CliRunner().invoke(main, ["detector", "train", str(data), str(cfg), *args, *TRAIN])


def _data_file(folder: Path, train_list: list[str], backup: Path | str) -> Path:
    listing = folder / "train.txt"
    listing.write_text("".join(f"{path}\n" for path in train_list))
    data = folder / "run.data"
    data.write_text(f"classes=5\ntrain={listing}\nbackup={backup}\n")
    return data


def _synth_images(dataset: Path) -> list[str]:  # noqa: F811
    return (dataset.parent / "train.txt").read_text().split()


# ---------------------------------------------------------------- E7: a layer after [region]
ROUTE_AFTER_REGION = "\n[route]\nlayers=-2\n"


def test_a_layer_after_the_region_is_refused_at_its_cfg_line(tmp_path):
    cfg = write_tiny_cfg(tmp_path / "tiny.cfg", classes=2)
    cfg.write_text(cfg.read_text() + ROUTE_AFTER_REGION)
    line_of_route = cfg.read_text().splitlines().index("[route]") + 1
    with pytest.raises(CfgError, match=rf"tiny\.cfg:{line_of_route} \[route\]: follows the \[region\] of layer 3 "
                                       rf"\(.*tiny\.cfg:\d+ \[region\]\): a \[region\] must be the last layer"):
        Darknet.from_cfg(cfg)


def test_detector_test_with_a_layer_after_the_region_is_one_error_line(tmp_path):
    cfg = write_tiny_cfg(tmp_path / "tiny.cfg", classes=2)
    cfg.write_text(cfg.read_text() + ROUTE_AFTER_REGION)
    weights = tmp_path / "any.weights"
    weights.write_bytes(bytes(20))
    names = tmp_path / "two.names"
    names.write_text("a\nb\n")
    data = tmp_path / "two.data"
    data.write_text(f"classes=2\nnames={names}\n")
    result = CliRunner().invoke(main, ["detector", "test", str(data), str(cfg), str(weights), str(tmp_path / "x.jpg")])
    line = _error_line(result)
    assert f"{cfg}:" in line and "[route]: follows the [region] of layer 3" in line


# ---------------------------------------------------------------- E11: no usable training sample
def test_no_label_found_stops_before_iteration_one_naming_the_counts_and_rule(dataset, tmp_path):  # noqa: F811
    # AlexeyAB's layout: the labels beside the images, in an images/ folder pjreddie's rule maps to labels/
    pictures = tmp_path / "set" / "images"
    pictures.mkdir(parents=True)
    listed = []
    for index, source in enumerate(_synth_images(dataset)[:3]):
        image = pictures / f"{index}.jpg"
        image.write_bytes(Path(source).read_bytes())
        (pictures / f"{index}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        listed.append(str(image))
    backup = tmp_path / "backup"
    data = _data_file(tmp_path, listed, backup)
    result = _train_cli(data, _cfg(tmp_path))
    line = _error_line(result)
    assert f"{tmp_path / 'train.txt'} (named by {data}): no listed image is readable and has a label file" in line
    assert "by pjreddie's rule: nothing to train" in line
    # the check's lines before it: the counts, and the rule that would find the labels
    assert "3 images listed, 3 readable" in result.output
    assert "labels (pjreddie's rule): 0 found with 0 objects; 3 missing" in result.output
    assert "but alexeyab's rule finds 3 of them" in result.output and "add -ab" in result.output
    assert not list(backup.glob("*.weights")) and not list(backup.glob("*.backup"))


def test_every_image_bad_stops_before_iteration_one_with_no_weights(dataset, tmp_path):  # noqa: F811
    folder = tmp_path / "set"
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    listed = []
    for index in range(3):
        (folder / "images" / f"{index}.jpg").write_bytes(b"")   # a zero-byte image
        (folder / "labels" / f"{index}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        listed.append(str(folder / "images" / f"{index}.jpg"))
    backup = tmp_path / "backup"
    result = _train_cli(_data_file(tmp_path, listed, backup), _cfg(tmp_path))
    line = _error_line(result)
    assert "no listed image is readable and has a label file" in line and "nothing to train" in line
    assert "3 images listed, 0 readable; 3 not an image file" in result.output
    assert not any(text.split(":")[0].isdigit() for text in result.output.splitlines())   # no iteration line
    assert not list(backup.glob("*.weights")) and not list(backup.glob("*.backup"))


def test_some_bad_samples_still_train(dataset, tmp_path):  # noqa: F811
    bad = tmp_path / "set" / "images" / "empty.jpg"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"")
    (tmp_path / "set" / "labels").mkdir()
    (tmp_path / "set" / "labels" / "empty.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    backup = tmp_path / "backup"
    result = _train_cli(_data_file(tmp_path, [str(bad)] * 4 + _synth_images(dataset), backup), _cfg(tmp_path))
    assert result.exit_code == 0, result.output
    assert (backup / "tiny_final.weights").is_file()


# ---------------------------------------------------------------- one training run per backup folder
def test_a_second_run_in_a_busy_backup_folder_stops_before_loading_weights(dataset, tmp_path):  # noqa: F811
    backup = tmp_path / "backup"
    backup.mkdir()
    data = _data_file(tmp_path, _synth_images(dataset), backup)
    junk = tmp_path / "junk.weights"
    junk.write_bytes(b"not weights")   # loading it would be an error of its own
    with FolderLock(backup):
        line = _error_line(_train_cli(data, _cfg(tmp_path), str(junk)))
    assert line == (f"Error: {backup}: another training run (pid {os.getpid()}) is writing its backups here "
                    f"(it holds {backup / '.pydarknet.lock'}); wait for it to end, or give this run another "
                    f"backup= folder")
    assert not list(backup.glob("*.weights"))
    result = _train_cli(data, _cfg(tmp_path))   # the lock is free again
    assert result.exit_code == 0, result.output


HOLDER = ("import sys, time; from pydarknet.fileio import FolderLock\n"
          "with FolderLock(sys.argv[1]):\n    print('locked', flush=True)\n    time.sleep(120)\n")


def test_the_lock_names_another_process_and_dies_with_it(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError, match=rf"another training run \(pid {holder.pid}\) is writing"):
            with FolderLock(tmp_path):
                pass
    finally:
        holder.kill()   # SIGKILL: no clean-up runs in the holder
        holder.wait()
    with FolderLock(tmp_path):
        assert (tmp_path / ".pydarknet.lock").read_text() == f"{os.getpid()}\n"


def test_two_cli_runs_into_one_folder_only_one_trains(dataset, tmp_path):  # noqa: F811
    backup = tmp_path / "backup"
    data = _data_file(tmp_path, _synth_images(dataset), backup)
    cfg = _cfg(tmp_path)
    first = subprocess.Popen([sys.executable, "-m", "pydarknet.cli", "detector", "train", str(data), str(cfg),
                              "--workers", "0", "--max-batches", "100000"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 120
        while not (backup / ".pydarknet.lock").is_file() or not (backup / ".pydarknet.lock").read_text():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.05)
        line = _error_line(_train_cli(data, cfg))
        assert f"another training run (pid {first.pid})" in line
    finally:
        first.kill()
        first.wait()


# ---------------------------------------------------------------- temporaries of a living writer stay
def test_only_temporaries_whose_writer_is_gone_are_removed(tmp_path, monkeypatch):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    living = tmp_path / f".tiny.backup.{os.getpid()}.a1b2c3d4.tmp"
    dead = tmp_path / f".tiny_100.weights.{dead_pid}.e5f6g7h8.tmp"
    unnumbered = tmp_path / ".chart.png.x9y8z7w6.tmp"   # written before temporaries carried a pid
    other = tmp_path / f".notes.txt.{dead_pid}.q1w2e3r4.tmp"   # not a training file: not ours to remove
    for path in (living, dead, unnumbered, other):
        path.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == sorted([dead, unnumbered])
    assert living.exists() and other.exists() and not dead.exists() and not unnumbered.exists()

    names = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (names.append(Path(src).name), real_replace(src, dst)))
    write_atomically(tmp_path / "tiny.backup", b"whole")
    assert names[0].startswith(f".tiny.backup.{os.getpid()}.") and names[0].endswith(".tmp")


# ---------------------------------------------------------------- backup= that cannot be a folder
@pytest.mark.parametrize("below", [False, True])
def test_a_backup_that_is_a_file_is_one_error_line(dataset, tmp_path, below):  # noqa: F811
    a_file = tmp_path / "hostname"
    a_file.write_text("box\n")
    backup = a_file / "sub" if below else a_file
    data = _data_file(tmp_path, _synth_images(dataset), backup)
    reason = f"{a_file} (a parent) is a file" if below else f"{a_file} is a file, not a folder"
    line = _error_line(_train_cli(data, _cfg(tmp_path)))
    assert line.startswith(f"Error: {data}:3: backup") and line.endswith(reason)
    with pytest.raises(DataError) as raised:   # the API says the same
        train_detector(data, _cfg(tmp_path), workers=0, max_batches=1, show_progress=False, log=lambda line: None)
    assert str(raised.value) == f"{data}:3: backup={backup}: {reason}"
    assert a_file.read_text() == "box\n"
