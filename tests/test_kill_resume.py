"""SIGKILL `detector train` at random moments, backup writes included; every file left loads and resumes."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pydarknet.engine.step import current_rate
from pydarknet.network import Darknet, load_network
from pydarknet.weights import WeightsHeader
from test_train_loop import _cfg, dataset  # noqa: F401  (the module's synthetic dataset fixture)

BACKUP_EVERY = 2    # backups every other iteration, so that kills often land inside a write
# the CLI in a subprocess with Darknet's backup schedule shortened (the only change to the real command)
RUNNER = ("import sys, pydarknet.engine.detector as schedule; schedule.BACKUP_EVERY = %d; "
          "schedule.NUMBERED_EARLY = 0; from pydarknet.cli import main; main(sys.argv[1:])") % BACKUP_EVERY
KILLS = 6
IMAGES_PER_ITERATION = 4


def _start(dataset: Path, cfg: Path, cwd: Path, weights: Path | None,  # noqa: F811
           max_batches: int = 100000) -> subprocess.Popen:
    command = [sys.executable, "-c", RUNNER, "detector", "train", str(dataset), str(cfg),
               *([str(weights)] if weights else []), "--workers", "0", "--max-batches", str(max_batches)]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _check_every_file_loads(backup_dir: Path, cfg: Path) -> int:
    """Every weights file in the folder is whole: it loads, and its seen is a multiple of a backup's."""
    seen = 0
    for path in sorted(backup_dir.glob("*.backup")) + sorted(backup_dir.glob("*.weights")):
        net = load_network(cfg, path, "cpu")
        assert net.seen % (BACKUP_EVERY * IMAGES_PER_ITERATION) == 0, path
        seen = max(seen, net.seen)
    return seen


@pytest.mark.slow
def test_random_kills_never_leave_a_torn_file_and_every_resume_continues(dataset, tmp_path):  # noqa: F811
    cfg = _cfg(tmp_path, burn_in=1000)   # the rate changes every iteration: a resume must get it right
    backup_dir = dataset.parent / "backup"
    backup = backup_dir / "tiny.backup"
    backup.unlink(missing_ok=True)
    rng = np.random.default_rng(0)
    weights = None
    last_seen = 0
    for _ in range(KILLS):
        process = _start(dataset, cfg, tmp_path, weights)
        deadline = time.time() + 120
        while time.time() < deadline and process.poll() is None:   # wait for this run's first new backup
            if backup.exists() and WeightsHeader.unpack(backup.read_bytes()[:20], str(backup)).seen > last_seen:
                break
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 1.0))   # then kill at a random moment, often inside a later write
        process.kill()
        output, _ = process.communicate()
        seen = _check_every_file_loads(backup_dir, cfg)
        assert seen > last_seen, "the run wrote no new backup before it was killed"
        if weights is not None:
            first = next(line for line in output.splitlines() if line.split(":")[0].isdigit())
            # resumed where the backup left off, at the schedule's learning rate for that iteration
            batch = last_seen // IMAGES_PER_ITERATION + 1
            net = Darknet.from_cfg(cfg)
            assert first.startswith(f"{batch}: ")
            assert f"{current_rate(net.options, batch * IMAGES_PER_ITERATION):f} rate" in first
        last_seen, weights = seen, backup
    # a last run to the end: it removes what the killed writes left and ends with whole files
    final = _start(dataset, cfg, tmp_path, backup, max_batches=last_seen // IMAGES_PER_ITERATION + 1)
    output, _ = final.communicate(timeout=120)
    assert final.returncode == 0
    assert not list(backup_dir.glob(".*.tmp"))
    assert load_network(cfg, backup_dir / "tiny_final.weights", "cpu").seen == last_seen + IMAGES_PER_ITERATION
