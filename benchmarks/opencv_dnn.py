"""OpenCV 4.x DNN as a baseline, run in its own virtualenv so the project keeps opencv 5.

The environment is made once: ``python -m venv --system-site-packages $PYDARKNET_BENCH_VENV``
(default /tmp/pydarknet-bench-venv), then ``pip install 'opencv-python-headless<5'`` into it; its
cv2 shadows the system one only inside that venv. `OpenCVWorker` starts opencv_worker.py there and
asks it for timed forwards, so both libraries are measured in the same run, interleaved.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

VENV_ENV = "PYDARKNET_BENCH_VENV"
DEFAULT_VENV = Path(tempfile.gettempdir()) / "pydarknet-bench-venv"
OPENCV_REQUIREMENT = "opencv-python-headless<5"   # 5.0 has no readNetFromDarknet
WORKER = Path(__file__).resolve().parent / "opencv_worker.py"
CHECK = "import cv2; cv2.dnn.readNetFromDarknet; print(cv2.__version__)"


class OpenCVUnavailable(RuntimeError):
    """The OpenCV 4.x environment could not be made (e.g. no access to the package index)."""


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, check=False)   # failures are reported by the caller


def opencv_python() -> Path:
    """The interpreter of the OpenCV 4.x virtualenv, created on first use."""
    venv = Path(os.environ.get(VENV_ENV, DEFAULT_VENV))
    python = venv / "bin" / "python"
    if python.exists() and _run([str(python), "-c", CHECK]).returncode == 0:
        return python
    print(f"creating the OpenCV 4.x environment in {venv} ...", flush=True)
    for command in ([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                    [str(python), "-m", "pip", "install", "--quiet", OPENCV_REQUIREMENT],
                    [str(python), "-c", CHECK]):
        done = _run(command)
        if done.returncode:
            raise OpenCVUnavailable(f"{' '.join(command)} failed:\n{done.stderr.strip()[-2000:]}")
    return python


class OpenCVWorker:
    """A child process holding one OpenCV DNN net; `forward_seconds` times one forward there."""

    def __init__(self, cfg: Path, weights: Path, threads: int):
        # the child keeps OpenCV's own thread pool: OMP_WAIT_POLICY is ours, not its concern
        self.process = subprocess.Popen([str(opencv_python()), str(WORKER), str(cfg), str(weights), str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = self.process.stdout.readline().split()
        if not ready or ready[0] != "ready":
            self.close()
            raise OpenCVUnavailable(f"the OpenCV worker did not start (said {ready!r})")
        self.version = ready[1]

    def forward_seconds(self, batch: int, height: int, width: int) -> float:
        self.process.stdin.write(f"{batch} {height} {width}\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise OpenCVUnavailable(f"the OpenCV worker exited with status {self.process.wait()}")
        return float(reply)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
