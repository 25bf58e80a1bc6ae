"""Pascal VOC devkit -> Darknet labels and lists, as Darknet's `scripts/voc_label.py` makes them.

For DEVKIT (the `VOCdevkit` folder) and an output folder OUT:

    DEVKIT/VOC<year>/labels/<id>.txt        `class x y w h` per object, neither difficult nor of an unknown class
    DEVKIT/VOC<year>/labels/<id>.difficult  the difficult objects, same format (read by `detector map`)
    OUT/<year>_<set>.txt                    absolute image paths of each image set found
    OUT/train.txt  OUT/train.all.txt        the training concatenations of the Darknet VOC instructions
    OUT/voc.names  OUT/voc.data

Numbers are formatted as voc_label.py's `str()` of Python floats, so the label files are the same
bytes. Image sets that are absent are skipped with a note.
"""
from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError, MissingFileError
from .convert import (ConversionResult, PathLike, check_no_blanks, copy_bundled_names, prepare_output,
                      write_data_file, write_list)
from .files import contained_label_path, label_path, read_names

# DARKNET(scripts/voc_label.py): the (year, image set) pairs it converts
VOC_SETS = (("2007", "train"), ("2007", "val"), ("2007", "test"), ("2012", "train"), ("2012", "val"))
# DARKNET(scripts/voc_label.py): `cat` of these lists, in this order, makes train.txt and train.all.txt
TRAIN_LISTS = ("2007_train", "2007_val", "2012_train", "2012_val")
TRAIN_ALL_LISTS = ("2007_train", "2007_val", "2007_test", "2012_train", "2012_val")
VALID_LIST = "2007_test"   # DARKNET(cfg/voc.data): valid = 2007_test.txt
DIFFICULT_SUFFIX = ".difficult"   # validate.collect_map_inputs reads it beside the label file


@dataclass(frozen=True)
class VocObject:
    """One annotated object of a known class; box as the XML gives it, (xmin, xmax, ymin, ymax) pixels."""
    class_id: int
    difficult: bool
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class VocAnnotation:
    """One annotation file: image size, its objects of known classes, and how many were of unknown ones."""
    width: int
    height: int
    objects: tuple[VocObject, ...]
    unknown: int
    invalid: int = 0    # objects skipped: NaN, infinite or inverted box, or nothing of it in the image
    clipped: int = 0    # objects whose box was cut to the image


def convert_voc(devkit: PathLike, out: PathLike) -> ConversionResult:
    """Convert the VOC2007 / VOC2012 image sets under `devkit` (see the module docstring).

    Raises DataError naming the file for a malformed annotation, MissingFileError for an
    annotation that an image set lists but that does not exist, and DataError when no image set
    of VOC_SETS is there.
    """
    devkit_path = Path(os.path.abspath(devkit))
    check_no_blanks(devkit_path)
    out_path = prepare_output(out)
    names_path = copy_bundled_names("voc.names", out_path)
    classes = read_names(names_path)
    notes: list[str] = []
    lists: dict[str, Path] = {}
    converted: set[Path] = set()
    totals = _Totals()
    for year, image_set in VOC_SETS:
        ids = _image_set_ids(devkit_path, year, image_set)
        if ids is None:
            notes.append(f"VOC{year} {image_set}: no {_image_set_file(devkit_path, year, image_set)}; "
                         f"{year}_{image_set}.txt not written")
            continue
        ids = totals.contained(ids, devkit_path / f"VOC{year}" / "JPEGImages")
        images = [str(devkit_path / f"VOC{year}" / "JPEGImages" / f"{image_id}.jpg") for image_id in ids]
        for image_id, image in zip(ids, images):
            labels = _labels_path(devkit_path, year, image_id, image)
            if labels not in converted:
                converted.add(labels)
                totals.add(_convert_annotation(devkit_path / f"VOC{year}" / "Annotations" / f"{image_id}.xml",
                                               labels, classes), image)
        lists[f"{year}_{image_set}"] = write_list(out_path / f"{year}_{image_set}.txt", images)
    if not lists:
        raise DataError(f"{devkit_path}: no VOC image set found (looked for VOC<year>/ImageSets/Main/<set>.txt "
                        f"of {', '.join(f'{year} {image_set}' for year, image_set in VOC_SETS)})")
    for name, parts in (("train", TRAIN_LISTS), ("train.all", TRAIN_ALL_LISTS)):
        lists[name] = _concatenate(out_path / f"{name}.txt", [lists[part] for part in parts if part in lists])
    if VALID_LIST not in lists:
        notes.append(f"voc.data names valid={out_path / f'{VALID_LIST}.txt'}, which was not written "
                     f"(no VOC2007 test set): `detector valid` and `map` need it")
    notes.extend(totals.notes())
    data_file = write_data_file(out_path / "voc.data", {
        "classes": len(classes), "train": lists["train"], "valid": out_path / f"{VALID_LIST}.txt",
        "names": names_path, "backup": out_path / "backup", "results": out_path / "results"})
    return ConversionResult(data_file, tuple(lists.values()), len(converted), totals.objects, tuple(notes))


def read_annotation(path: Path, classes: list[str]) -> VocAnnotation:
    """Parse a VOC annotation XML; DataError naming the file (and the field) when it is malformed."""
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise DataError(f"{path}: malformed XML: {exc}") from None
    except OSError as exc:
        raise MissingFileError(f"cannot read annotation {path}: {exc.strerror}") from None
    width, height = (_value(root, f"size/{side}", path, "", int) for side in ("width", "height"))
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: image size must be positive, got {width}x{height}")
    objects, unknown, invalid, clipped = [], 0, 0, 0
    # DARKNET(scripts/voc_label.py:convert_annotation): every <object> of the tree; the <bndbox> of a
    # <part> inside it is not the object's (find looks at direct children only)
    for number, element in enumerate(root.iter("object"), start=1):
        where = f"object {number} "
        name = _value(element, "name", path, where)
        if name not in classes:
            unknown += 1
            continue
        box = tuple(_value(element, f"bndbox/{side}", path, where, float) for side in ("xmin", "xmax", "ymin", "ymax"))
        inside = clip_voc_box(box, width, height)
        if inside is None:
            invalid += 1
            continue
        clipped += inside != box
        objects.append(VocObject(classes.index(name), _is_difficult(element, path, where), inside))
    return VocAnnotation(width, height, tuple(objects), unknown, invalid, clipped)


def clip_voc_box(box: tuple[float, float, float, float], width: int, height: int):
    """(xmin, xmax, ymin, ymax) cut to 0..width, 0..height (VOC's 1-based pixels never need it); None for a
    NaN, infinite or inverted box or one with nothing inside the image.

    DIVERGES: voc_label.py writes `nan` and negative sizes for such boxes; Darknet then trains on them.
    """
    xmin, xmax, ymin, ymax = box
    if not all(math.isfinite(v) for v in box) or xmax < xmin or ymax < ymin:
        return None
    inside = (max(xmin, 0.0), min(xmax, float(width)), max(ymin, 0.0), min(ymax, float(height)))
    if inside[1] <= inside[0] or inside[3] <= inside[2]:
        return None
    return box if inside == box else inside


def voc_label_line(obj: VocObject, width: int, height: int) -> str:
    """voc_label.py's line for an object: `class x y w h`, each number as Python's str() writes it."""
    xmin, xmax, ymin, ymax = obj.box
    # DARKNET(scripts/voc_label.py:convert): scaled by the reciprocal of the size (not divided:
    # the last bit can differ), and the centre, not the size, shifted by -1 (VOC pixels count from 1)
    dw, dh = 1.0 / width, 1.0 / height
    x, y = ((xmin + xmax) / 2.0 - 1) * dw, ((ymin + ymax) / 2.0 - 1) * dh
    w, h = (xmax - xmin) * dw, (ymax - ymin) * dh
    return f"{obj.class_id} " + " ".join(str(value) for value in (x, y, w, h)) + "\n"


class _Totals:
    """Counts across the annotations, for the result and its notes."""

    def __init__(self) -> None:
        self.objects = self.difficult = self.unknown = self.invalid = self.clipped = 0
        self.missing_images: list[str] = []
        self.refused_ids: list[str] = []

    def contained(self, ids: list[str], images: Path) -> list[str]:
        """The ids whose image and label file stay in the devkit (no '..', '/', absolute path); the others
        are counted: an id `../../../victim/note` would write `victim/note.txt`."""
        kept = []
        for image_id in ids:
            inside = "/" not in image_id and not isinstance(contained_label_path(images, f"{image_id}.jpg"), str)
            (kept if inside else self.refused_ids).append(image_id)
        return kept

    def add(self, annotation: VocAnnotation, image: str) -> None:
        difficult = sum(obj.difficult for obj in annotation.objects)
        self.objects += len(annotation.objects) - difficult
        self.difficult += difficult
        self.unknown += annotation.unknown
        self.invalid += annotation.invalid
        self.clipped += annotation.clipped
        if not os.path.isfile(image):
            self.missing_images.append(image)

    def notes(self) -> list[str]:
        notes = []
        if self.difficult:
            notes.append(f"{self.difficult} difficult object(s) left out of the labels, written to "
                         f"<label>{DIFFICULT_SUFFIX} files for `detector map`")
        if self.unknown:
            notes.append(f"{self.unknown} object(s) of classes not in voc.names skipped")
        if self.invalid:
            notes.append(f"{self.invalid} object(s) with a NaN, infinite or inverted box (or none inside the "
                         f"image) skipped")
        if self.clipped:
            notes.append(f"{self.clipped} box(es) reaching outside their image clipped to it")
        if self.refused_ids:
            notes.append(f"{len(self.refused_ids)} image set id(s) naming a path ('/', '..') skipped, first: "
                         f"{self.refused_ids[0]!r}")
        if self.missing_images:
            notes.append(f"{len(self.missing_images)} listed image(s) do not exist, first: {self.missing_images[0]}")
        return notes


def _convert_annotation(xml_path: Path, labels: Path, classes: list[str]) -> VocAnnotation:
    """Write the label file (and the .difficult file, or remove a stale one) of one annotation."""
    annotation = read_annotation(xml_path, classes)
    lines = {False: [], True: []}
    for obj in annotation.objects:
        lines[obj.difficult].append(voc_label_line(obj, annotation.width, annotation.height))
    labels.parent.mkdir(parents=True, exist_ok=True)
    labels.write_text("".join(lines[False]))
    difficult_file = labels.with_suffix(DIFFICULT_SUFFIX)
    if lines[True]:
        difficult_file.write_text("".join(lines[True]))
    else:
        difficult_file.unlink(missing_ok=True)
    return annotation


def _labels_path(devkit: Path, year: str, image_id: str, image: str) -> Path:
    """voc_label.py's label file of an image; DataError when Darknet's rule would look elsewhere."""
    labels = devkit / f"VOC{year}" / "labels" / f"{image_id}.txt"
    if label_path(image) != str(labels):
        raise DataError(f"{image}: Darknet's label path rule maps it to {label_path(image)}, not {labels} "
                        f"('images' or 'raw' in the devkit path is rewritten first): move the devkit")
    return labels


def _image_set_file(devkit: Path, year: str, image_set: str) -> Path:
    return devkit / f"VOC{year}" / "ImageSets" / "Main" / f"{image_set}.txt"


def _image_set_ids(devkit: Path, year: str, image_set: str) -> list[str] | None:
    """The image ids of an image set, or None when the set is absent."""
    path = _image_set_file(devkit, year, image_set)
    if not path.is_file():
        return None
    return path.read_text().split()   # DARKNET(scripts/voc_label.py): whitespace-separated ids


def _concatenate(path: Path, parts: list[Path]) -> Path:
    path.write_text("".join(part.read_text() for part in parts))
    return path


def _value(element: ElementTree.Element, field: str, path: Path, where: str, convert=str):
    """The text of `element`'s <field>, converted; DataError naming the file, `where` and the field."""
    found = element.find(field)
    if found is None or found.text is None:
        raise DataError(f"{path}: {where}has no <{field}> value")
    try:
        return convert(found.text)
    except ValueError:
        kind = "an integer" if convert is int else "a number"
        raise DataError(f"{path}: {where}<{field}> is not {kind}: {found.text!r}") from None


def _is_difficult(element: ElementTree.Element, path: Path, where: str) -> bool:
    if element.find("difficult") is None:
        return False   # DIVERGES: voc_label.py fails on an object without <difficult>; VOC's default is 0
    # DARKNET(scripts/voc_label.py:convert_annotation): int(difficult) == 1
    return _value(element, "difficult", path, where, int) == 1
