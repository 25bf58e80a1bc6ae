"""`pydarknet`: Darknet's command line, same argument order and single-dash options.

A thin layer: every command parses its arguments and calls the Python API. The groups and shared
helpers live in `common`; each verb family has its own module, imported here so that every way of
starting the program (`pydarknet`, `python -m pydarknet`, `python -m pydarknet.cli`) sees every command.
"""
from ..runtime import tune_process

tune_process()   # before anything loads torch: OpenMP reads OMP_WAIT_POLICY once

from . import classifier, data, detector, evaluate, serve, weights, yolo  # noqa: E402, F401  (register the commands)
from .common import main  # noqa: E402

__all__ = ["main"]
