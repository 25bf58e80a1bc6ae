"""The one family of errors pydarknet raises for a user's files and settings.

Every message names the file and the line, field or byte offset. The command line catches
`DarknetError` and prints its message as one line (exit code 1); anything else is a bug.
No torch here, so the cfg parser stays importable without it.
"""
from __future__ import annotations


class DarknetError(Exception):
    """A problem with the user's input (cfg, weights, data, images) or with a training run."""


class CfgError(DarknetError, ValueError):
    """A malformed cfg file or an option value Darknet could not build; names file:line."""


class UnsupportedError(CfgError, NotImplementedError):
    """A cfg (or .data) option Darknet has that pydarknet does not implement; names where it is set."""


class WeightsError(DarknetError, ValueError):
    """A weights file that does not fit its cfg, or is not a weights file; names the file and offset/layer."""


class DataError(DarknetError, ValueError):
    """A malformed .data, .names, list, label, tree/map file or image; names the file (and line)."""


class TrainingError(DarknetError, RuntimeError):
    """Training cannot go on (e.g. non-finite weights); the message says where the last good weights are."""


class MissingFileError(DarknetError, FileNotFoundError):
    """A file the user named (or a file named inside one) does not exist or cannot be read."""
