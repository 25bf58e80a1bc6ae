"""Packaging: pyproject metadata, the shipped cfg/ and data/ files, and a wheel in a fresh venv."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

import pydarknet
from pydarknet.data.files import read_data_file

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RESOURCE_PACKAGES = {"pydarknet._resources.cfg": "cfg", "pydarknet._resources.data": "data"}


def test_every_code_package_is_listed():
    """The package list is written by hand (the resource folders are mapped into it): keep it complete."""
    found = {".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "pydarknet").rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert listed == found | set(RESOURCE_PACKAGES), "update [tool.setuptools] packages in pyproject.toml"
    assert PYPROJECT["tool"]["setuptools"]["package-dir"] == RESOURCE_PACKAGES


def test_metadata_has_one_version_and_the_console_script():
    project = PYPROJECT["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pydarknet.__version__"}
    assert project["scripts"] == {"pydarknet": "pydarknet.cli:main"}
    assert {"test", "coco"} <= set(project["optional-dependencies"])
    assert "setup()" in (REPO / "setup.py").read_text()


@pytest.mark.parametrize("data", sorted((REPO / "cfg").glob("*.data")), ids=lambda p: p.name)
def test_shipped_data_files_name_no_foreign_machine(data):
    options = read_data_file(data).options
    assert not [key for key, option in options.items() if option.value.startswith("/")]


def test_voc_data_points_where_data_voc_writes():
    voc = read_data_file(REPO / "cfg" / "voc.data")
    assert (voc.get_str("train"), voc.get_str("valid")) == ("data/voc/train.txt", "data/voc/2007_test.txt")


def test_package_data_patterns_cover_every_shipped_file():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]
    for package, folder in RESOURCE_PACKAGES.items():
        tracked = subprocess.run(["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True).stdout.split()
        for name in tracked:
            assert any(Path(name).match(f"{folder}/{pattern}") for pattern in patterns[package]), name


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "-w", str(out), "--no-deps",
                    "--no-build-isolation", "-q"], check=True, cwd=out)
    (path,) = out.glob("pydarknet-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv (using this interpreter's torch & co.) with only the wheel installed: its bin/."""
    env = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env)
    bin_dir = env / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps",
                    "-q", str(wheel)], check=True)
    return bin_dir


def _run(command: list, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_wheel_ships_cfg_and_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in RESOURCE_PACKAGES.values():
        for path in (REPO / folder).iterdir():
            assert f"pydarknet/_resources/{folder}/{path.name}" in names
    assert "pydarknet/cli/__main__.py" in names


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_from_an_empty_directory(installed, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    where = _run([installed / "python", "-c", "import pydarknet; print(pydarknet.__file__)"], empty)
    assert str(installed.parent) in where.stdout, where.stdout + where.stderr   # the wheel, not a checkout
    version = _run([installed / "pydarknet", "--version"], empty)
    assert version.returncode == 0 and version.stdout.strip() == f"pydarknet, version {pydarknet.__version__}"
    assert _run([installed / "python", "-m", "pydarknet", "--version"], empty).stdout == version.stdout

    # a shipped cfg by name, random weights made here; cfg/coco.data, data/coco.names, data/dog.jpg from the wheel
    weights = tmp_path / "yolov2-tiny.weights"
    make = (f"from pydarknet import Darknet, save_weights; "
            f"save_weights(Darknet.from_cfg('{REPO / 'cfg' / 'yolov2-tiny.cfg'}', seed=0), '{weights}')")
    subprocess.run([sys.executable, "-c", make], check=True, cwd=REPO)
    detect = _run([installed / "pydarknet", "detect", "cfg/yolov2-tiny.cfg", weights, "data/dog.jpg",
                   "-thresh", ".9"], empty)
    assert detect.returncode == 0, detect.stderr
    assert detect.stdout.startswith("data/dog.jpg: Predicted in ")
    assert f"Loading weights from {weights}...Done!" in detect.stderr
    assert (empty / "predictions.jpg").stat().st_size > 0


@pytest.mark.slow
def test_wheel_demo_finds_its_cfg(installed, tmp_path):
    demo = _run([installed / "python", "-m", "pydarknet.demo", "--out", tmp_path / "demo", "--train", "4",
                 "--valid", "2", "--max-batches", "1", "--workers", "0"], tmp_path)
    assert "demo: mAP@0.5 = " in demo.stdout, demo.stdout + demo.stderr   # exit 1: a toy run misses the target
    shipped_cfg = installed.parent / "lib"
    assert re.search(rf"^\$ pydarknet detector train \S+ {re.escape(str(shipped_cfg))}\S+/_resources/cfg/synth-tiny.cfg$",
                     demo.stdout, re.M)
