"""`detector valid`: Darknet's result files (VOC `comp4_det_test_<class>.txt`, COCO json, ImageNet)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cfg import resolve_path
from ..data.files import read_data_file, read_names, resolve_data_path
from ..data.coco import COCO_IDS, coco_image_id, read_image_ids
from ..detections import Detection
from ..dialect import PJREDDIE, Dialect
from ..errors import DataError
from ..fileio import output_folder_problem
from ..heads.detector import detection_head
from ..network import Darknet
from ..tree import read_map
from .detect_list import DEFAULT_BATCH, DEFAULT_WORKERS, ImageDetections, detect_images, scored_probs, valid_paths

IMAGENET_CLASSES = 200     # DARKNET(detector.c:validate_detector): eval=imagenet sets classes = 200
# DARKNET(detector.c:validate_detector): `-out` default per `eval=` type, and the file it names
DEFAULT_OUTFILES = {"voc": "comp4_det_test_", "coco": "coco_results", "imagenet": "imagenet-detection"}


def box_corners(dets: Sequence[Detection], width: int, height: int, one_based: bool) -> np.ndarray:
    """(N, 4) float32 xmin, ymin, xmax, ymax in pixels, computed and clipped as Darknet prints them.

    DARKNET(region_layer.c:correct_region_boxes): relative boxes are scaled to pixels in float32;
    DARKNET(detector.c:print_detector_detections): corners in double, `+ 1` (VOC's 1-based pixels),
    stored as float, then only xmin, ymin clipped below (at 1) and xmax, ymax above (at w, h);
    print_cocos / print_imagenet_detections do the same without the `+ 1`, clipping at 0.
    """
    if not dets:
        return np.zeros((0, 4), np.float32)
    size = np.array([width, height], dtype=np.float32)
    boxes = np.stack([det.bbox for det in dets]).astype(np.float32) * np.tile(size, 2)   # [N, 4] cxcywh
    centre, half = boxes[:, :2].astype(np.float64), boxes[:, 2:].astype(np.float64) / 2.
    offset = 1. if one_based else 0.
    low = (centre - half + offset).astype(np.float32)
    high = (centre + half + offset).astype(np.float32)
    low = np.where(low < np.float32(offset), np.float32(offset), low)   # NaN stays NaN, as in C
    high = np.where(high > size, size, high)
    return np.concatenate([low, high], axis=1)


def _printed_rows(image: ImageDetections, one_based: bool) -> tuple[list[int], np.ndarray]:
    """Class (M,) and float32 (M, 5) prob, xmin, ymin, xmax, ymax of every printed (box, class) pair."""
    corners = box_corners(image.detections, image.width, image.height, one_based)
    boxes, classes, probs = scored_probs(image.detections)
    return classes.tolist(), np.column_stack([probs, corners[boxes]])


def _as_floats(rows: np.ndarray) -> list[list[float]]:
    """float32 rows as Python floats (exactly the same values), which `%f` formats fastest."""
    return rows.astype(np.float64).tolist()


def image_id(path: str) -> str:
    """DARKNET(utils.c:basecfg): the file name cut at its FIRST dot ("a.b.jpg" -> "a")."""
    return path.rsplit("/", 1)[-1].split(".", 1)[0]


def voc_lines(image: ImageDetections) -> list[tuple[int, str]]:
    """(class, line) pairs of print_detector_detections: `<id> <prob> <xmin> <ymin> <xmax> <ymax>`."""
    name = image_id(image.path)
    classes, rows = _printed_rows(image, one_based=True)
    return [(k, "%s %f %f %f %f %f\n" % (name, *row)) for k, row in zip(classes, _as_floats(rows))]


def coco_lines(image: ImageDetections, image_ids: dict[str, int] | None = None) -> list[str]:
    """print_cocos' JSON objects (without the separating ",\\n"); bbox is top-left x, y, w, h.

    The image id is Darknet's, from the file name, unless `image_ids` (written by `data coco` for
    file names that do not give the ids) maps the image's path.
    """
    number = image_ids[image.path] if image_ids and image.path in image_ids else coco_image_id(image.path)
    classes, rows = _printed_rows(image, one_based=False)
    # DARKNET(detector.c:print_cocos): w, h = xmax - xmin, ymax - ymin in float32
    rows[:, 3:] -= rows[:, 1:3]
    return ['{"image_id":%d, "category_id":%d, "bbox":[%f, %f, %f, %f], "score":%f}'
            % (number, COCO_IDS[k], *box, p) for k, (p, *box) in zip(classes, _as_floats(rows))]


def imagenet_lines(image: ImageDetections) -> list[str]:
    """print_imagenet_detections: `<1-based image index> <1-based class> <prob> <xmin> <ymin> <xmax> <ymax>`."""
    classes, rows = _printed_rows(image, one_based=False)
    return ["%d %d %f %f %f %f %f\n" % (image.index + 1, k + 1, *row) for k, row in zip(classes, _as_floats(rows))]


def alexeyab_json_file(images: Sequence[str]) -> str:
    """DARKNET(AlexeyAB detector.c:test_detector): the `-out` file around the images' JSON objects
    (`serve.json_stream.detection_json`, frame_id 1, 2, ... and the path as typed)."""
    return "[\n" + ", \n".join(images) + "\n]"


def pseudo_label_lines(dets: Sequence[Detection], thresh: float) -> str:
    """AlexeyAB's `detector test -save_labels` file: `class x y w h` (C's %2.4f) of each box's best class above
    thresh, boxes in array order (DARKNET(AlexeyAB detector.c:test_detector): the first of equal probs)."""
    if not dets:
        return ""
    probs = np.stack([det.probs for det in dets])                                  # [N, K]
    above = np.where(probs > np.float32(thresh), probs, -np.inf)
    kept = np.flatnonzero(np.isfinite(above).any(axis=1))
    best = np.argmax(above[kept], axis=1)
    boxes = np.stack([dets[i].bbox for i in kept]).reshape(-1, 4).astype(float)   # [M, 4] cxcywh
    lines = [f"{k} {x:2.4f} {y:2.4f} {w:2.4f} {h:2.4f}\n" for k, (x, y, w, h) in zip(best, boxes)]
    return "".join(lines)


@dataclass(frozen=True)
class ValidSetup:
    """What `validate_detector` reads from a `.data` file."""
    paths: list[str]
    names: list[str]
    results: Path
    eval: str
    class_map: np.ndarray | None
    image_ids: dict[str, int] | None = None   # `image_ids=`: COCO ids by image path (see data.coco)
    names_file: Path | None = None           # where `names` came from, for messages

    @classmethod
    def from_data(cls, data_path: str | os.PathLike) -> ValidSetup:
        data = read_data_file(data_path)
        kind = data.get_str("eval", "voc")
        if kind not in DEFAULT_OUTFILES:
            # DIVERGES: Darknet treats any other value as voc
            raise data.error(f"eval={kind} is not one of {', '.join(DEFAULT_OUTFILES)}", "eval")
        names_file = data.get_path("names", "data/names.list")
        return cls(paths=valid_paths(data), names=read_names(names_file), names_file=names_file,
                   results=resolve_data_path(data.get_str("results", "results")), eval=kind,
                   class_map=read_map(resolve_path(data.get_str("map"), data.path)) if data.has("map") else None,
                   image_ids=read_image_ids(data.get_path("image_ids")) if data.has("image_ids") else None)


def validate_detector(net: Darknet, setup: ValidSetup, outfile: str | None = None, workers: int = DEFAULT_WORKERS,
                      batch: int = DEFAULT_BATCH, progress: bool = False, dialect: Dialect = PJREDDIE,
                      letterbox: bool = True, decoder: str = "stb") -> list[Path]:
    """DARKNET(detector.c:validate_detector): detect every listed image (thresh .005, NMS .45,
    letterbox) and write the `eval=` type's result files under `setup.results`; returns their paths.

    voc: `<results>/<outfile><class name>.txt` per class; coco: `<results>/<outfile>.json`;
    imagenet: `<results>/<outfile>.txt`. `outfile` defaults to DEFAULT_OUTFILES[eval].
    DIVERGES: the results folder is created when missing (Darknet's fopen fails).
    dialect: whose validate_detector (`ALEXEYAB`: thresh .001, NMS .6, its decoding); letterbox: False stretches;
    decoder: see `image.load_image`.
    """
    outfile = outfile or DEFAULT_OUTFILES[setup.eval]
    classes = _output_classes(net, setup)
    problem = output_folder_problem(setup.results)
    if problem:
        raise DataError(f"results folder {problem}")
    if setup.eval == "voc":
        _check_file_names(setup, classes)
    setup.results.mkdir(parents=True, exist_ok=True)
    # DARKNET(detector.c:validate_detector): eval=imagenet keeps the first 200 classes only
    kept = IMAGENET_CLASSES if setup.eval == "imagenet" else None
    images = detect_images(net, setup.paths, dialect.valid_thresh, dialect.valid_nms, class_map=setup.class_map,
                           classes=kept, letterbox=letterbox, workers=workers, batch=batch, progress=progress,
                           dialect=dialect, decoder=decoder)
    if setup.eval == "coco":
        path = setup.results / f"{outfile}.json"
        records = [record for image in images for record in coco_lines(image, setup.image_ids)]
        # DARKNET(detector.c:validate_detector): "[\n", objects joined by ",\n", then "\n]\n"
        # DIVERGES: with no detection Darknet's fseek leaves "\n]\n", not JSON; this writes "[\n]\n"
        path.write_text("[\n" + ",\n".join(records) + "\n]\n" if records else "[\n]\n")
        return [path]
    if setup.eval == "imagenet":
        path = setup.results / f"{outfile}.txt"
        path.write_text("".join(line for image in images for line in imagenet_lines(image)))
        return [path]
    paths = [setup.results / f"{outfile}{name}.txt" for name in setup.names[:classes]]
    with ExitStack() as stack:
        files = [stack.enter_context(path.open("w")) for path in paths]
        for image in images:
            for k, line in voc_lines(image):
                files[k].write(line)
    return paths


def _check_file_names(setup: ValidSetup, classes: int) -> None:
    """DataError naming the names file line of a class name that would put its result file outside
    `setup.results` (a '/' in it: names read from /etc/passwd) or that no file can have (a NUL)."""
    for k, name in enumerate(setup.names[:classes]):
        bad = next((c for c in ("/", os.sep, "\0") if c in name), None)
        if bad is not None:
            # DIVERGES: Darknet fopens `<results>/<outfile><name>.txt` whatever the name holds
            where = f"{setup.names_file}:{k + 1}" if setup.names_file else f"class {k}"
            raise DataError(f"{where}: class name {name!r} contains {bad!r}: it cannot name a result file "
                            f"in {setup.results}")


def _output_classes(net: Darknet, setup: ValidSetup) -> int:
    """How many classes the result files cover, checked against the names and the map."""
    head = detection_head(net, "evaluation")
    mapped = setup.class_map is not None and head.kind == "region" and head.layers[0].tree is not None
    classes = len(setup.class_map) if mapped else head.classes
    if setup.eval == "imagenet":
        if classes < IMAGENET_CLASSES:
            raise DataError(f"eval=imagenet writes {IMAGENET_CLASSES} classes; the net gives {classes} "
                             f"(yolo9000 needs map=data/inet9k.map in the .data file)")
        return IMAGENET_CLASSES
    if setup.eval == "coco" and classes > len(COCO_IDS):
        raise DataError(f"eval=coco maps class indices to the {len(COCO_IDS)} COCO ids; the net has {classes} classes")
    if setup.eval == "voc" and len(setup.names) < classes:
        raise DataError(f"{classes} classes but only {len(setup.names)} names: one file per class needs a name")
    return classes
