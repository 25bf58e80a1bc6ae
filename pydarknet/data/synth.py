"""A synthetic detection dataset in Darknet's layout, reproducible byte for byte from a seed.

Each image has a textured background (gradient, blotchy noise or stripes, all of low saturation)
and 1-4 solid shapes of clearly different colours: big enough, and few enough classes, that a small
detector learns them in minutes on a CPU. Layout (lists and .data hold absolute paths, so the
dataset works from any working directory, for pydarknet and Darknet alike):

    OUT/images/{train,valid}_NNNNN.jpg   OUT/labels/{train,valid}_NNNNN.txt
    OUT/train.txt  OUT/valid.txt  OUT/synth.names  OUT/synth.data  OUT/backup/

With layout "alexeyab" each label file lies beside its image (OUT/images/train_NNNNN.txt), as AlexeyAB's
README lays out a custom dataset and as its Darknet looks for labels (`dialect.ALEXEYAB.label_path`).

What is drawn and how it is labelled is decided by a `ShapeScheme`; a hierarchical variant (coarse
shapes with boxes, fine colour x shape classes in classification-only images) is meant to be a
subclass overriding `names`, `kind` and `label_lines`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DataError
from ..progress import progress as progress_of

MAX_OBJECTS = 4
MAX_OVERLAP_IOU = 0.25      # keep occlusion mild so every labelled object stays recognisable
SIZE_RANGE = (0.16, 0.44)   # object side as a fraction of the image's shorter side
ASPECT_RANGE = (0.7, 1.4)   # object width / height
PLACEMENT_TRIES = 20
JPEG_QUALITY = 95


@dataclass(frozen=True)
class ObjectKind:
    """What to draw: a shape name, its RGB colour, and the class id it is labelled with."""

    shape: str
    colour: tuple[int, int, int]
    class_id: int


@dataclass(frozen=True)
class DrawnObject:
    """An object on an image; box in pixels, xyxy with exclusive right/bottom edges."""

    kind: ObjectKind
    box_xyxy: tuple[int, int, int, int]


class ShapeScheme:
    """Five classes, one per shape, each in its own colour (slightly jittered per object)."""

    colours = {"circle": (220, 40, 40), "square": (40, 180, 60), "triangle": (40, 80, 230),
               "cross": (235, 205, 30), "ring": (200, 50, 210)}
    names = tuple(colours)
    colour_jitter = 20
    max_objects = MAX_OBJECTS   # objects drawn per image: 1 to this many

    def kind(self, rng: np.random.Generator) -> ObjectKind:
        class_id = int(rng.integers(len(self.names)))
        shape = self.names[class_id]
        base = np.array(self.colours[shape])
        colour = np.clip(base + rng.integers(-self.colour_jitter, self.colour_jitter + 1, 3), 0, 255)
        return ObjectKind(shape, tuple(int(c) for c in colour), class_id)

    def label_lines(self, objects: list[DrawnObject], width: int, height: int) -> list[str]:
        """Darknet label lines `class x y w h` (relative centre box) for the drawn objects."""
        lines = []
        for obj in objects:
            x0, y0, x1, y1 = obj.box_xyxy
            lines.append(f"{obj.kind.class_id} {(x0 + x1) / 2 / width:.6f} {(y0 + y1) / 2 / height:.6f} "
                         f"{(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
        return lines


LAYOUTS = ("darknet", "alexeyab")   # labels under labels/ (pjreddie's rule) or beside the images (AlexeyAB's)


def make_synth(out: str | os.PathLike, train: int, valid: int, size: int = 320, seed: int = 0,
               scheme: ShapeScheme | None = None, progress: bool = False, layout: str = "darknet") -> Path:
    """Write the dataset under `out` and return the path of its `synth.data`.

    Image sides are drawn from [size // 2, size]. Image i of a split depends only on (seed, split, i),
    so changing --train does not change the validation images. `progress`: report on stderr.
    `layout`: one of LAYOUTS, where the label files go.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if train < 1 or valid < 1:
        raise DataError(f"need at least one train and one valid image, got train={train} valid={valid}")
    if size < 64:
        raise DataError(f"image size {size} is too small for recognisable objects (minimum 64)")
    scheme = scheme or ShapeScheme()
    out = Path(out).resolve()
    label_folder = out / ("labels" if layout == "darknet" else "images")
    for folder in ("images", label_folder.name, "backup"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    lists = {split: write_split(out, split, split_id, count, size, seed, scheme, progress, label_folder)
             for split_id, (split, count) in enumerate((("train", train), ("valid", valid)))}
    (out / "synth.names").write_text("".join(f"{name}\n" for name in scheme.names))
    data_file = out / "synth.data"
    data_file.write_text(f"classes={len(scheme.names)}\ntrain={lists['train']}\nvalid={lists['valid']}\n"
                         f"names={out / 'synth.names'}\nbackup={out / 'backup'}\n")
    return data_file


def synth_image(rng: np.random.Generator, size: int, scheme: ShapeScheme) -> tuple[np.ndarray, list[DrawnObject]]:
    """One image (H, W, 3) uint8 RGB with sides in [size // 2, size], and the objects drawn on it."""
    width, height = (int(v) for v in rng.integers(size // 2, size + 1, 2))
    image = background(rng, width, height)
    objects: list[DrawnObject] = []
    for _ in range(int(rng.integers(1, scheme.max_objects + 1))):
        box = _free_box(rng, width, height, [o.box_xyxy for o in objects])
        if box is not None:
            obj = DrawnObject(scheme.kind(rng), box)
            draw_object(image, obj)
            objects.append(obj)
    grain = rng.normal(0, 4, image.shape)
    return np.clip(image + grain, 0, 255).astype(np.uint8), objects


def background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A low-saturation gradient, noise or stripe texture, (height, width, 3) uint8 RGB."""
    colours = _dull_colour(rng), _dull_colour(rng)
    style = int(rng.integers(3))
    if style == 2:
        coarse = (max(1, height // 16), max(1, width // 16))
        # mostly brightness blotches: strongly coloured noise could pass for an object's colour
        noise = rng.normal(0, 30, (*coarse, 1)) + rng.normal(0, 8, (*coarse, 3))
        smooth = cv2.resize(noise, (width, height), interpolation=cv2.INTER_LINEAR)
        return np.clip(colours[0] + smooth, 0, 255).astype(np.uint8)
    angle = rng.uniform(0, np.pi)
    ys, xs = np.mgrid[0:height, 0:width]
    along = xs * np.cos(angle) + ys * np.sin(angle)                   # [H, W]
    if style == 0:
        t = (along - along.min()) / max(np.ptp(along), 1)
    else:
        t = np.floor(along / rng.uniform(6, 30)) % 2
    image = colours[0] * (1 - t[..., None]) + colours[1] * t[..., None]
    return image.astype(np.uint8)


def draw_object(image: np.ndarray, obj: DrawnObject) -> None:
    """Draw a filled shape exactly covering `obj.box_xyxy` into `image` (H, W, 3) uint8 RGB, in place."""
    x0, y0, x1, y1 = obj.box_xyxy
    right, bottom = x1 - 1, y1 - 1   # cv2 coordinates are inclusive
    cx, cy, rx, ry = (x0 + right) // 2, (y0 + bottom) // 2, (right - x0) // 2, (bottom - y0) // 2
    colour, aa = obj.kind.colour, cv2.LINE_AA
    thick = max(2, min(x1 - x0, y1 - y0) // 3)
    if obj.kind.shape == "circle":
        cv2.ellipse(image, (cx, cy), (rx, ry), 0, 0, 360, colour, -1, aa)
    elif obj.kind.shape == "ring":
        cv2.ellipse(image, (cx, cy), (rx - thick // 4, ry - thick // 4), 0, 0, 360, colour, thick // 2, aa)
    elif obj.kind.shape == "square":
        cv2.rectangle(image, (x0, y0), (right, bottom), colour, -1)
    elif obj.kind.shape == "triangle":
        cv2.fillPoly(image, [np.array([(cx, y0), (x0, bottom), (right, bottom)], np.int32)], colour, aa)
    elif obj.kind.shape == "cross":
        cv2.rectangle(image, (cx - thick // 2, y0), (cx + thick // 2, bottom), colour, -1)
        cv2.rectangle(image, (x0, cy - thick // 2), (right, cy + thick // 2), colour, -1)
    else:
        raise ValueError(f"unknown shape '{obj.kind.shape}'")


def write_split(out: Path, split: str, split_id: int, count: int, size: int, seed: int,
                 scheme: ShapeScheme, progress: bool = False, label_folder: Path | None = None) -> Path:
    paths = []
    for i in progress_of(range(count), desc=f"{split} images", unit="img", enabled=progress):
        image, objects = synth_image(np.random.default_rng([seed, split_id, i]), size, scheme)
        image_path = out / "images" / f"{split}_{i:05d}.jpg"
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise OSError(f"cannot encode {image_path}")
        image_path.write_bytes(encoded.tobytes())
        lines = scheme.label_lines(objects, image.shape[1], image.shape[0])
        (label_folder or out / "labels").joinpath(f"{split}_{i:05d}.txt").write_text("".join(f"{line}\n" for line in lines))
        paths.append(f"{image_path}\n")
    list_path = out / f"{split}.txt"
    list_path.write_text("".join(paths))
    return list_path


def _dull_colour(rng: np.random.Generator) -> np.ndarray:
    """A grey with a faint tint, so backgrounds never look like an object's saturated colour."""
    return rng.uniform(50, 205) + rng.uniform(-25, 25, 3)


def _free_box(rng: np.random.Generator, width: int, height: int,
              taken: list[tuple[int, int, int, int]]) -> tuple[int, int, int, int] | None:
    """A random box (xyxy pixels) inside the image overlapping no taken box by IoU > MAX_OVERLAP_IOU."""
    short = min(width, height)
    for _ in range(PLACEMENT_TRIES):
        side = rng.uniform(*SIZE_RANGE) * short
        aspect = rng.uniform(*ASPECT_RANGE)
        w = int(min(width, side * np.sqrt(aspect)))
        h = int(min(height, side / np.sqrt(aspect)))
        x0, y0 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        box = (x0, y0, x0 + w, y0 + h)
        if all(_iou(box, other) <= MAX_OVERLAP_IOU for other in taken):
            return box
    return None


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    inter_w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union
