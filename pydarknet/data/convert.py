"""What the dataset converters (`voc`, `coco`) share: their result, and the files around the labels.

A converter writes Darknet label files where `files.label_path` looks for them, image lists of
absolute paths, a `.names` file and a `.data` file naming them all with absolute paths, so the
result works from any working directory.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .._resources import shipped_root
from ..errors import DataError, MissingFileError

PathLike = str | os.PathLike

# The `.names` files Darknet ships: the repository's data/ folder, or a wheel's copy of it
BUNDLED_DATA = shipped_root() / "data"


@dataclass(frozen=True)
class ConversionResult:
    """What a converter wrote.

    data_file: the `.data` file; lists: the image lists written (absolute image paths);
    label_files: how many label files were written; objects: how many label lines in all;
    notes: what was skipped or needs the user's attention (absent sets, crowd boxes, ...);
    image_ids: COCO only, the image-id mapping written when file names do not give the ids.
    """
    data_file: Path
    lists: tuple[Path, ...]
    label_files: int
    objects: int
    notes: tuple[str, ...] = ()
    image_ids: Path | None = field(default=None)


def prepare_output(out: PathLike) -> Path:
    """The absolute output folder, created; DataError when Darknet could not name it in a .data file."""
    folder = Path(os.path.abspath(out))
    check_no_blanks(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_no_blanks(path: Path) -> None:
    """DataError for a path with a blank: DARKNET(utils.c:strip) drops every blank of a .data line."""
    if any(character.isspace() for character in str(path)):
        raise DataError(f"{path}: a path with blanks cannot go in a .data file (Darknet strips them)")


def write_data_file(path: Path, options: dict[str, object]) -> Path:
    """Write `key=value` lines in the order given."""
    for value in options.values():
        check_no_blanks(Path(str(value)))
    path.write_text("".join(f"{key}={value}\n" for key, value in options.items()))
    return path


def copy_bundled_names(name: str, out: Path) -> Path:
    """Copy Darknet's `data/<name>` into `out`; the copy's path."""
    source = BUNDLED_DATA / name
    if not source.is_file():
        raise MissingFileError(f"{source}: Darknet's class names file is missing from this checkout")
    return Path(shutil.copyfile(source, out / name))


def write_list(path: Path, image_paths: list[str]) -> Path:
    """An image list: one path a line."""
    path.write_text("".join(f"{image}\n" for image in image_paths))
    return path
