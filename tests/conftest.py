"""Shared fixtures: where the Darknet reference pack lives, and the skip when it is absent."""
import os
from pathlib import Path

import pytest

REFERENCE_ENV = "PYDARKNET_REFERENCE"
DEFAULT_REFERENCE = Path(__file__).resolve().parent.parent.parent / "shared" / "reference"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def reference_dir() -> Path | None:
    """The reference pack directory, or None when it is not on this machine."""
    path = Path(os.environ.get(REFERENCE_ENV, DEFAULT_REFERENCE))
    return path if (path / "README.md").is_file() else None


@pytest.fixture(scope="session")
def reference() -> Path:
    path = reference_dir()
    if path is None:
        pytest.skip(f"Darknet reference pack not found at ${REFERENCE_ENV} or {DEFAULT_REFERENCE}")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` are skipped, with the reason, on machines without CUDA."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
