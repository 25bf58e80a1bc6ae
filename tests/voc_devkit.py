"""A small VOC devkit made in the tests: both years, every image set voc_label.py reads, and the
annotation cases it has rules for (difficult objects, unknown classes, <part> boxes, decimal
coordinates, an image whose objects are all difficult, one with no object at all).

tests/fixtures/voc/voc_label_output.json holds what Darknet's scripts/voc_label.py wrote for this
devkit (run on it once, outside the repository).
"""
from __future__ import annotations

from pathlib import Path

from tiny_detector import write_image

# object: (name, difficult, (xmin, ymin, xmax, ymax) as the XML text, parts)
PERSON_PARTS = (("head", ("60", "30", "90", "70")), ("hand", ("40.5", "100", "52", "118.5")))
ANNOTATIONS = {
    ("2007", "000001"): (160, 120, [("dog", "0", ("10", "20", "80", "110"), ()),
                                    ("person", "0", ("35", "25", "120", "119"), PERSON_PARTS),
                                    ("chair", "1", ("100", "60", "150", "118"), ())]),
    ("2007", "000002"): (120, 90, [("unicorn", "0", ("5", "5", "50", "50"), ()),
                                   ("car", "0", ("48.5", "20.25", "110", "88.75"), ()),
                                   ("bicycle", "1", ("1", "1", "30", "40"), ()),
                                   ("cat", "0", ("2", "3", "119", "90"), ())]),
    ("2007", "000003"): (100, 100, [("bottle", "1", ("40", "10", "60", "90"), ()),
                                    ("tvmonitor", "1", ("1", "1", "100", "100"), ())]),
    ("2007", "000004"): (150, 100, [("horse", "0", ("12", "8", "140", "97"), ()),
                                    ("person", "0", ("70", "5", "100", "80"), PERSON_PARTS[:1]),
                                    ("dragon", "1", ("1", "1", "10", "10"), ())]),
    ("2007", "000005"): (64, 48, []),
    ("2012", "2008_000008"): (133, 100, [("aeroplane", "0", ("3.3", "7.7", "130.1", "60.9"), ()),
                                         ("pottedplant", "0", ("100", "50", "131", "99"), ())]),
    ("2012", "2008_000015"): (100, 133, [("person", "0", ("20", "10", "80", "130"), PERSON_PARTS),
                                         ("sheep", "1", ("5", "90", "30", "120"), ())]),
    ("2012", "2008_000019"): (90, 90, [("diningtable", "0", ("1", "45", "90", "90"), ()),
                                       ("sofa", "0", ("30", "30", "60", "60"), ())]),
}
IMAGE_SETS = {("2007", "train"): ["000001", "000002"], ("2007", "val"): ["000003"],
              ("2007", "test"): ["000004", "000005"], ("2012", "train"): ["2008_000008"],
              ("2012", "val"): ["2008_000015", "2008_000019"]}


def make_devkit(root: Path) -> Path:
    """Write the devkit as root/VOCdevkit (annotations, image sets, JPEGs) and return that folder."""
    devkit = root / "VOCdevkit"
    for seed, ((year, image_id), (width, height, objects)) in enumerate(ANNOTATIONS.items()):
        folder = devkit / f"VOC{year}"
        (folder / "Annotations").mkdir(parents=True, exist_ok=True)
        (folder / "Annotations" / f"{image_id}.xml").write_text(annotation_xml(image_id, width, height, objects))
        write_image(folder / "JPEGImages" / f"{image_id}.jpg", width, height, seed)
    for (year, image_set), ids in IMAGE_SETS.items():
        sets = devkit / f"VOC{year}" / "ImageSets" / "Main"
        sets.mkdir(parents=True, exist_ok=True)
        (sets / f"{image_set}.txt").write_text("".join(f"{image_id}\n" for image_id in ids))
    return devkit


def annotation_xml(image_id: str, width: int, height: int, objects) -> str:
    """VOC's layout; each object's <part>s come before its own <bndbox>, as in VOC2012's person layout."""
    body = "".join(_object_xml(*obj) for obj in objects)
    return (f"<annotation>\n\t<folder>VOC</folder>\n\t<filename>{image_id}.jpg</filename>\n"
            f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
            f"\t<segmented>0</segmented>\n{body}</annotation>\n")


def _object_xml(name: str, difficult: str, box, parts) -> str:
    part_xml = "".join(f"\t\t<part>\n\t\t\t<name>{part}</name>\n{_box_xml(part_box, 3)}\t\t</part>\n"
                       for part, part_box in parts)
    return (f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
            f"\t\t<difficult>{difficult}</difficult>\n{part_xml}{_box_xml(box, 2)}\t</object>\n")


def _box_xml(box, depth: int) -> str:
    tabs = "\t" * depth
    xmin, ymin, xmax, ymax = box
    return (f"{tabs}<bndbox>\n{tabs}\t<xmin>{xmin}</xmin>\n{tabs}\t<ymin>{ymin}</ymin>\n"
            f"{tabs}\t<xmax>{xmax}</xmax>\n{tabs}\t<ymax>{ymax}</ymax>\n{tabs}</bndbox>\n")
