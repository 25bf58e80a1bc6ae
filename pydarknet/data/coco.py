"""COCO `instances_*.json` -> Darknet labels, an image list and a `coco.data` with `eval=coco`.

Class ids are Darknet's 80 contiguous indices in `data/coco.names` order: COCO category id
`COCO_IDS[k]` becomes class k. Crowd annotations are skipped. Each image's label file goes where
Darknet looks for it (`files.label_path`: `.../images/val2014/x.jpg` -> `.../labels/val2014/x.txt`).

`detector valid` with `eval=coco` names each image by the number after the last '_' of its path
(Darknet's get_coco_image_id), which the 2014 file names `COCO_val2014_000000000042.jpg` give. When
that number is not the image's id (2017 names under a folder with a '_', or a custom json), the
converter writes `<list>.image_ids.json` (image path -> id) and names it as `image_ids=` in the .data
file; `read_image_ids` reads it back.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections import Counter, defaultdict
from pathlib import Path

from ..errors import DataError, MissingFileError
from ..fileio import TEXT_FILE_MAX_BYTES, check_regular_file
from .convert import (ConversionResult, PathLike, check_no_blanks, copy_bundled_names, prepare_output,
                      write_data_file, write_list)
from .files import contained_label_path

# DARKNET(detector.c:coco_ids): COCO category id of each of the 80 contiguous class indices
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
            31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
            56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
            85, 86, 87, 88, 89, 90)
CLASS_OF_CATEGORY = {category: index for index, category in enumerate(COCO_IDS)}
IMAGE_IDS_SUFFIX = ".image_ids.json"
INSTANCES_PREFIX = "instances_"


def convert_coco(instances_json: PathLike, images_dir: PathLike, out: PathLike) -> ConversionResult:
    """Write a label file for every image of `instances_json` (under `images_dir`), the list
    `OUT/<name>.txt` (`instances_val2014.json` -> `val2014.txt`), `OUT/coco.names` and `OUT/coco.data`
    (train and valid both that list, eval=coco).

    Raises DataError naming the json and the entry for a malformed file or a category id that is
    not one of the 80 of Darknet's COCO classes; MissingFileError when no listed image exists.
    """
    json_path = Path(instances_json)
    document = _read_json(json_path)
    images_path = Path(os.path.abspath(images_dir))
    check_no_blanks(images_path)
    out_path = prepare_output(out)
    all_images = _images(document, json_path)
    boxes, skipped = _boxes_by_image(document, json_path, {image["id"]: image for image in all_images})
    images, paths, labels, refused = [], [], [], Counter()
    for image in all_images:
        found = contained_label_path(images_path, image["file_name"])
        if isinstance(found, str):
            refused[found] += 1
            continue
        images.append(image)
        paths.append(str(found[0]))
        labels.append(found[1])
    if not images:
        raise DataError(f"{json_path}: no image with a usable file_name ({_counted(refused)})")
    for image, label in zip(images, labels):
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text("".join(boxes.get(image["id"], ())))
    name = json_path.stem.removeprefix(INSTANCES_PREFIX)
    image_list = write_list(out_path / f"{name}.txt", paths)
    notes = _image_notes(paths, images_path, json_path)
    if refused:
        notes.append(f"{sum(refused.values())} image(s) of the json skipped: {_counted(refused)}")
    clipped = skipped.pop("clipped", 0)
    notes.extend(f"{count} {reason} annotation(s) skipped" for reason, count in sorted(skipped.items()))
    if clipped:
        notes.append(f"{clipped} box(es) reaching outside their image clipped to it")
    options = {"classes": len(COCO_IDS), "train": image_list, "valid": image_list,
               "names": copy_bundled_names("coco.names", out_path), "backup": out_path / "backup",
               "results": out_path / "results", "eval": "coco"}
    image_ids = _write_image_ids(out_path / f"{name}{IMAGE_IDS_SUFFIX}", paths, images)
    if image_ids is not None:
        options["image_ids"] = image_ids
        notes.append(f"the image ids are not the numbers after the last '_' of the image paths: "
                     f"`detector valid` must read {image_ids} (image_ids= in coco.data)")
    data_file = write_data_file(out_path / "coco.data", options)
    return ConversionResult(data_file, (image_list,), len(images), sum(map(len, boxes.values())), tuple(notes),
                            image_ids)


def read_image_ids(path: PathLike) -> dict[str, int]:
    """The image path -> COCO image id mapping written by `convert_coco`."""
    mapping = _read_json(Path(path))
    if not isinstance(mapping, dict) or not all(isinstance(value, int) for value in mapping.values()):
        raise DataError(f"{path}: expected a JSON object of image path -> integer image id")
    return mapping


def coco_label_line(class_id: int, bbox: list[float], width: int, height: int) -> str:
    """`class x y w h` relative to the image, from a COCO bbox (top-left x, y, w, h in pixels)."""
    left, top, box_w, box_h = bbox
    return "%d %.6f %.6f %.6f %.6f\n" % (class_id, (left + box_w / 2) / width, (top + box_h / 2) / height,
                                         box_w / width, box_h / height)


def _read_json(path: Path):
    check_regular_file(path, "json file", TEXT_FILE_MAX_BYTES)   # a FIFO would block, a device never end
    try:
        with path.open() as file:
            return json.load(file)
    except OSError as exc:
        raise MissingFileError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file") from None


def _section(document, key: str, json_path: Path) -> list[dict]:
    entries = document.get(key) if isinstance(document, dict) else None
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise DataError(f"{json_path}: '{key}' must be a list of objects, as in a COCO instances file")
    return entries


def _field(entry: dict, key: str, kind, where: str):
    value = entry.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{where}: '{key}' must be of type {kind.__name__}, got {value!r}")
    return value


def _images(document, json_path: Path) -> list[dict]:
    images = _section(document, "images", json_path)
    for index, image in enumerate(images):
        where = f"{json_path}: images[{index}]"
        _field(image, "id", int, where)
        _field(image, "file_name", str, where)
        for side in ("width", "height"):
            if _field(image, side, int, where) <= 0:
                raise DataError(f"{where}: '{side}' must be positive, got {image[side]}")
    known = {_field(category, "id", int, f"{json_path}: categories[{index}]")
             for index, category in enumerate(_section(document, "categories", json_path))}
    unknown = sorted(known - set(COCO_IDS), key=str)
    if unknown:
        raise DataError(f"{json_path}: category id(s) {unknown} are not among Darknet's 80 COCO classes")
    return images


def _boxes_by_image(document, json_path: Path, images: dict[int, dict]) -> tuple[dict[int, list[str]], Counter]:
    """Label lines per image id, and how many annotations were skipped for each reason."""
    lines: dict[int, list[str]] = defaultdict(list)
    skipped: Counter = Counter()
    for index, annotation in enumerate(_section(document, "annotations", json_path)):
        where = f"{json_path}: annotations[{index}]"
        image = images.get(_field(annotation, "image_id", int, where))
        if image is None:
            raise DataError(f"{where}: image_id {annotation['image_id']} is not in 'images'")
        category = _field(annotation, "category_id", int, where)
        if category not in CLASS_OF_CATEGORY:
            raise DataError(f"{where}: category_id {category} is not among Darknet's 80 COCO classes")
        if annotation.get("iscrowd", 0):
            skipped["crowd"] += 1
            continue
        bbox = _field(annotation, "bbox", list, where)
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
            raise DataError(f"{where}: 'bbox' must be four numbers x, y, w, h, got {bbox!r}")
        if not all(math.isfinite(v) for v in bbox):
            skipped["non-finite (NaN or infinite)"] += 1
            continue
        if bbox[2] <= 0 or bbox[3] <= 0:
            skipped["zero-size"] += 1   # DARKNET(data.c:fill_truth_detection): such a box is dropped anyway
            continue
        clipped = clip_box(bbox, image["width"], image["height"])
        if clipped is None:
            skipped["outside-the-image"] += 1
            continue
        skipped["clipped"] += clipped != bbox
        lines[image["id"]].append(coco_label_line(CLASS_OF_CATEGORY[category], clipped, image["width"],
                                                  image["height"]))
    return lines, skipped


def clip_box(bbox: list[float], width: int, height: int) -> list[float] | None:
    """A COCO box (x, y, w, h pixels) cut to the image; None when nothing of it is inside."""
    left, top = max(bbox[0], 0), max(bbox[1], 0)
    right, bottom = min(bbox[0] + bbox[2], width), min(bbox[1] + bbox[3], height)
    if right <= left or bottom <= top:
        return None
    return bbox if [left, top, right, bottom] == [bbox[0], bbox[1], bbox[0] + bbox[2], bbox[1] + bbox[3]] \
        else [left, top, right - left, bottom - top]


def _counted(reasons: Counter) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))


def _image_notes(paths: list[str], images_dir: Path, json_path: Path) -> list[str]:
    missing = [path for path in paths if not os.path.isfile(path)]
    if paths and len(missing) == len(paths):
        raise MissingFileError(f"{images_dir}: none of the {len(paths)} images of {json_path} is there, "
                               f"first: {missing[0]}")
    return [f"{len(missing)} image(s) of the json are not in {images_dir}, first: {missing[0]}"] if missing else []


def _write_image_ids(path: Path, paths: list[str], images: list[dict]) -> Path | None:
    """Write the path -> id mapping when the file names do not give the ids (else remove a stale one)."""
    if all(coco_image_id(image_path) == image["id"] for image_path, image in zip(paths, images)):
        path.unlink(missing_ok=True)
        return None
    path.write_text(json.dumps({image_path: image["id"] for image_path, image in zip(paths, images)}, indent=0))
    return path


def coco_image_id(path: str) -> int:
    """DARKNET(detector.c:get_coco_image_id): atoi of what follows the last '_' anywhere in the path,
    or, without any '_', the last '/' ("COCO_val2014_000000000042.jpg" -> 42; no digits -> 0)."""
    start = path.rfind("_")
    if start < 0:
        start = path.rfind("/")   # DIVERGES: Darknet dereferences NULL when neither is there
    number = re.match(r"\s*[+-]?\d+", path[start + 1:])
    return int(number.group()) if number else 0
