"""Darknet's small text files: `.data` option files, `.names`, image lists, and label paths.

Relative paths found in these files are, as in Darknet, relative to the process working directory
(not to the file that names them); `resolve_data_path` applies that rule.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..cfg import _REQUIRED, CfgError, Option, Section, read_text_file, resolve_path
from ..errors import DataError
from ..fileio import TEXT_FILE_MAX_BYTES

PathLike = str | os.PathLike

# Every key some Darknet command reads from a .data file (examples/*.c, option_find on read_data_cfg).
DATA_KEYS = frozenset({"classes", "train", "valid", "test", "names", "backup", "eval", "labels",
                       "map", "results", "top", "tree", "leaves", "tag",
                       "saveweights", "savelast",   # DARKNET(AlexeyAB detector.c:train_detector): backup periods
                       "image_ids"})  # DIVERGES: pydarknet's COCO image-id map (data.coco.convert_coco)

# DARKNET(data.c:fill_truth_detection): first-occurrence replacements, applied in this order
LABEL_PATH_REPLACEMENTS = (("images", "labels"), ("JPEGImages", "labels"), ("raw", "labels"),
                           (".jpg", ".txt"), (".png", ".txt"), (".JPG", ".txt"), (".JPEG", ".txt"))

class DataFileWarning(UserWarning):
    """A `.data` line Darknet would silently ignore (unknown or duplicate key)."""

def resolve_data_path(value: str, cwd: PathLike | None = None) -> Path:
    """Where Darknet opens an output path read from a data file (`results=`, `backup=`): as is if
    absolute, else under `cwd`.

    DARKNET(option_list.c:read_data_cfg): values are handed to fopen unchanged, so a relative path
    is relative to the working directory, whichever folder the `.data` file is in.
    """
    path = Path(value)
    return path if path.is_absolute() else Path(cwd if cwd is not None else os.getcwd()) / path

class DataConfig(Section):
    """The options of one `.data` file, keyed by Darknet's option names (`classes`, `train`, ...).

    A `Section` without a kind: the same typed getters and file:line errors as cfg options.
    """

    def get_path(self, key: str, default=_REQUIRED) -> Path:
        """An input file named by `key`: relative to the working directory as Darknet opens it,
        else beside the data file or its parent folder (see `cfg.resolve_path`)."""
        return resolve_path(self.get_str(key, default), self.path)

    @property
    def classes(self) -> int:
        classes = self.get_int("classes")
        if classes <= 0:
            raise self.error(f"classes must be positive, got {classes}", "classes")
        return classes

def parse_data_text(text: str, path: PathLike = "<string>") -> DataConfig:
    """Parse `.data` text (`key=value` lines) into a DataConfig; malformed lines raise CfgError."""
    config = DataConfig(kind="", lineno=0, path=str(path))
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = "".join(line.split())  # DARKNET(utils.c:strip): every blank goes, even inside values
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep or not key or not value:
            # DIVERGES: Darknet prints "could parse" (or nothing) and drops the line; a typo must not
            # silently fall back to a default like data/train.list
            raise CfgError(f"{path}:{lineno}: expected key=value, got '{line}'")
        if key in config.options:
            # DARKNET(option_list.c:option_find): the first occurrence wins
            warnings.warn(f"{path}:{lineno}: duplicate key '{key}', keeping line "
                          f"{config.options[key].lineno}", DataFileWarning, stacklevel=2)
            continue
        if key not in DATA_KEYS:
            warnings.warn(f"{path}:{lineno}: unknown key '{key}' is ignored", DataFileWarning, stacklevel=2)
        config.options[key] = Option(value, lineno)
    return config

def read_data_file(path: PathLike, required: tuple[str, ...] = ()) -> DataConfig:
    """Read a Darknet `.data` file; every key in `required` must be present (CfgError otherwise)."""
    config = parse_data_text(_read_text(path, "data file"), path)
    missing = [key for key in required if not config.has(key)]
    if missing:
        raise CfgError(f"{path}: missing required key(s) {', '.join(missing)}")
    return config

def read_list(path: PathLike) -> list[str]:
    """Image paths of a list file (`train=`, `valid=`), one per line, blank lines skipped.

    Raises CfgError naming the file when it lists nothing.
    """
    # DIVERGES: Darknet keeps blank lines (and then fails to open ""), and '\r' of CRLF files
    lines = [line.strip() for line in _read_text(path, "list file").splitlines()]
    paths = [line for line in lines if line]
    if not paths:
        raise CfgError(f"{path}: list file contains no paths")
    return paths

def read_names(path: PathLike) -> list[str]:
    """Class names, one per line; line i names class i (spaces inside a name are kept)."""
    names = [line.rstrip("\r") for line in _read_text(path, "names file").splitlines()]
    while names and not names[-1].strip():
        names.pop()
    for lineno, name in enumerate(names, start=1):
        if not name.strip():
            # DIVERGES: Darknet keeps an empty name; a stray blank line would shift every later class
            raise CfgError(f"{path}:{lineno}: empty class name")
    if not names:
        raise CfgError(f"{path}: names file contains no names")
    return names

def label_path(image_path: str) -> str:
    """The label file Darknet reads for an image.

    DARKNET(data.c:fill_truth_detection): each rule replaces only the FIRST occurrence, anywhere in
    the path ("/draw/x.jpg" becomes "/dlabels/x.txt"), and .jpeg/.bmp are not rewritten.
    Raises ValueError when no rule applies: Darknet would read the image itself as its labels.
    """
    result = image_path
    for find, replace in LABEL_PATH_REPLACEMENTS:
        result = result.replace(find, replace, 1)
    if result == image_path:
        raise ValueError(f"{image_path}: no label path rule applies (needs images/, JPEGImages/ or raw/ "
                         f"or a .jpg/.png/.JPG/.JPEG extension)")
    return result


def contained_label_path(folder: Path, name: str) -> tuple[Path, Path] | str:
    """(image, label file) of the image a dataset names `name` under `folder`, or why it is refused: a
    name that is absolute, climbs out with '..', or whose label file would not be a `.txt` beside it
    (no image extension: `label_path` would give the image itself, e.g. "../../etc/passwd")."""
    if "\0" in name:
        return "with a NUL byte in the name"
    if os.path.isabs(name) or ".." in Path(name).parts:
        return "with an absolute path or '..' in the name"
    image = folder / name
    try:
        label = label_path(str(image))
    except ValueError:
        label = str(image)
    if not label.endswith(".txt") or label == str(image):
        return "without an image extension (.jpg, .png, .JPG, .JPEG)"
    return image, Path(label)


# DARKNET(AlexeyAB utils.c:replace_image_to_label): folder rules (first occurrence each), in this order;
# any other image's labels lie beside it
ALEXEYAB_LABEL_FOLDERS = (("/images/train2017/", "/labels/train2017/"), ("/images/val2017/", "/labels/val2017/"),
                          ("/JPEGImages/", "/labels/"),
                          ("\\images\\train2017\\", "\\labels\\train2017\\"), ("\\images\\val2017\\", "\\labels\\val2017\\"),
                          ("\\images\\train2014\\", "\\labels\\train2014\\"), ("\\images\\val2014\\", "\\labels\\val2014\\"),
                          ("/images/train2014/", "/labels/train2014/"), ("/images/val2014/", "/labels/val2014/"),
                          ("\\JPEGImages\\", "\\labels\\"))
ALEXEYAB_IMAGE_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM",
                             ".tiff", ".TIFF")


def alexeyab_label_path(image_path: str) -> str:
    """The label file AlexeyAB's Darknet reads for an image: usually beside it, with a .txt extension."""
    result = image_path
    for find, replace in ALEXEYAB_LABEL_FOLDERS:
        result = result.replace(find, replace, 1)
    result = result.strip(" \t")
    for extension in ALEXEYAB_IMAGE_EXTENSIONS:
        if result.endswith(extension):
            result = result[:-len(extension)] + ".txt"
    return result


def _read_text(path: PathLike, what: str) -> str:
    return read_text_file(path, what, DataError, TEXT_FILE_MAX_BYTES)
