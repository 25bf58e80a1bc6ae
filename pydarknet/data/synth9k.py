"""A hierarchical synthetic dataset for YOLO9000-style joint training (`make demo9000`).

The WordTree has the coarse shapes as roots and, under each, that shape in each of its colours (the
fine classes; see `SHAPE_FAMILIES`). As in YOLO9000, boxes are only ever labelled with COARSE classes, while the fine classes
are taught by classification-only images; the validation images carry boxes of FINE classes, so
their mAP measures detection of classes that never had a box in training.

Layout under OUT (lists and .data hold absolute paths, as in `synth.make_synth`)::

    images/{det,cls,valid}_NNNNN.jpg  labels/{det,cls,valid}_NNNNN.txt
    det.txt    detection images: 1-4 objects, `class x y w h` with COARSE class ids (synth9k.coarse.names),
               which the [region] layer maps to tree nodes through synth9k.map (like coco9k.map)
    cls.txt    classification-only images: one object, label line `<fine tree node> 0 0 0 0`
    train.txt  det.txt + cls.txt, the joint training list
    valid.txt  boxes with FINE class ids (synth9k.fine.names); synth9k.fine.map gives their tree nodes
    synth9k.tree  synth9k.names (one per tree node)  synth9k.map  synth9k.coarse.names
    synth9k.fine.names  synth9k.fine.map  synth9k.data  backup/

synth9k.data is laid out like combine9k.data: `classes` = tree nodes, `names` = the node names and
`map` = the evaluation classes' nodes (here the fine classes, there inet9k.map).
`data/synth9k.{tree,names,map}` ship with the repository for `cfg/synth9k-tiny.cfg`; they are what
`Hierarchy.write_files` writes for the default hierarchy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..tree import WordTree
from .synth import DrawnObject, ObjectKind, ShapeScheme, write_split

PREFIX = "synth9k"
# split name -> the split id that seeds its images (train 0 and valid 1 as in synth.make_synth)
SPLIT_IDS = {"det": 0, "valid": 1, "cls": 2}


RGB = tuple[int, int, int]
Family = tuple[str, tuple[tuple[str, RGB], ...]]   # a shape and its colours (name, RGB)

# Each shape comes in its own band of hues, 30 degrees apart (HSV s=.82, v=.9): the coarse classes can
# then be told apart by shape and by hue band, which a detector trained from scratch on a CPU learns
# in minutes, and the fine classes differ by hue, which the classification-only images teach.
SHAPE_FAMILIES: tuple[Family, ...] = (
    ("circle", (("crimson", (230, 41, 135)), ("red", (230, 41, 41)), ("orange", (230, 135, 41)))),
    ("square", (("yellow", (230, 230, 41)), ("lime", (135, 230, 41)), ("green", (41, 230, 41)))),
    ("triangle", (("jade", (41, 230, 135)), ("cyan", (41, 230, 230)), ("azure", (41, 135, 230)))),
    ("cross", (("blue", (41, 41, 230)), ("violet", (135, 41, 230)), ("magenta", (230, 41, 230)))),
)


@dataclass(frozen=True)
class Hierarchy:
    """Coarse shapes, the colours each comes in, and where every class sits in the WordTree.

    Detection (coarse) class ids follow `families`; fine class ids run over the families and then
    their colours. Tree nodes: the shapes as roots in alphabetical order (so that the detection
    map is not the identity, as coco9k.map is not), then each root's colours in family order.
    """

    families: tuple[Family, ...] = SHAPE_FAMILIES

    @property
    def shapes(self) -> list[str]:
        return [shape for shape, _ in self.families]

    @property
    def roots(self) -> list[str]:
        return sorted(self.shapes)

    @property
    def fine(self) -> list[tuple[str, str, RGB]]:
        """(shape, colour name, RGB) of every fine class id."""
        return [(shape, name, rgb) for shape, colours in self.families for name, rgb in colours]

    @property
    def fine_coarse(self) -> list[int]:
        """The coarse class id of every fine class id."""
        return [self.shapes.index(shape) for shape, _, _ in self.fine]

    @property
    def fine_names(self) -> list[str]:
        return [f"{colour} {shape}" for shape, colour, _ in self.fine]

    def _leaves(self) -> list[tuple[str, str]]:
        colours = dict(self.families)
        return [(shape, name) for shape in self.roots for name, _ in colours[shape]]

    def shape_node(self, shape: str) -> int:
        return self.roots.index(shape)

    def fine_node(self, shape: str, colour: str) -> int:
        return len(self.roots) + self._leaves().index((shape, colour))

    @property
    def coarse_map(self) -> list[int]:
        """Tree node of every coarse (detection) class id: the [region] `map=`."""
        return [self.shape_node(shape) for shape in self.shapes]

    @property
    def fine_map(self) -> list[int]:
        """Tree node of every fine class id: the .data `map=` used to evaluate fine classes."""
        return [self.fine_node(shape, colour) for shape, colour, _ in self.fine]

    def tree_lines(self) -> list[tuple[str, int, str]]:
        """(wnid, parent, readable name) of every tree node in node order."""
        roots = [(shape, -1, shape) for shape in self.roots]
        leaves = [(f"{colour}_{shape}", self.shape_node(shape), f"{colour} {shape}")
                  for shape, colour in self._leaves()]
        return roots + leaves

    def tree(self) -> WordTree:
        wnids, parents, names = zip(*self.tree_lines())
        return WordTree(list(wnids), list(parents), list(names))

    def write_files(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write the tree, names and map files into `folder`; returns their paths by suffix."""
        lines = self.tree_lines()
        contents = {
            "tree": [f"{wnid} {parent}" for wnid, parent, _ in lines],
            "names": [name for _, _, name in lines],
            "map": [str(node) for node in self.coarse_map],
            "coarse.names": self.shapes,
            "fine.names": self.fine_names,
            "fine.map": [str(node) for node in self.fine_map],
        }
        paths = {suffix: Path(folder) / f"{PREFIX}.{suffix}" for suffix in contents}
        for suffix, text in contents.items():
            paths[suffix].write_text("".join(f"{line}\n" for line in text))
        return paths


class FineScheme(ShapeScheme):
    """Objects of random fine classes (any shape, any colour), labelled with their fine class id."""

    def __init__(self, hierarchy: Hierarchy):
        self.hierarchy = hierarchy
        self.names = tuple(hierarchy.fine_names)

    def class_id(self, fine: int) -> int:
        return fine

    def kind(self, rng: np.random.Generator) -> ObjectKind:
        fine = int(rng.integers(len(self.hierarchy.fine)))
        shape, _, rgb = self.hierarchy.fine[fine]
        jittered = np.clip(np.array(rgb) + rng.integers(-self.colour_jitter, self.colour_jitter + 1, 3), 0, 255)
        return ObjectKind(shape, tuple(int(c) for c in jittered), self.class_id(fine))


class CoarseScheme(FineScheme):
    """Detection images: boxes labelled with the coarse (shape) class only."""

    def class_id(self, fine: int) -> int:
        return self.hierarchy.fine_coarse[fine]


class ClassificationScheme(FineScheme):
    """Classification-only images: one object, labelled by its fine tree node without a box."""

    max_objects = 1

    def class_id(self, fine: int) -> int:
        return self.hierarchy.fine_map[fine]

    def label_lines(self, objects: list[DrawnObject], width: int, height: int) -> list[str]:
        # DARKNET(data.c:correct_boxes): x == 0 and y == 0 marks a label without a box (a tree node,
        # not mapped)
        return [f"{obj.kind.class_id} 0 0 0 0" for obj in objects]


def make_synth9k(out: str | os.PathLike, det: int, cls: int, valid: int, size: int = 160, seed: int = 0,
                 hierarchy: Hierarchy = Hierarchy()) -> Path:
    """Write the dataset under `out` (see the module docstring) and return the path of its synth9k.data.

    Image sides are drawn from [size // 2, size]; image i of a split depends only on (seed, split, i).
    """
    if min(det, cls, valid) < 1:
        raise DataError(f"need at least one image of each kind, got det={det} cls={cls} valid={valid}")
    out = Path(out).resolve()
    for folder in ("images", "labels", "backup"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    files = hierarchy.write_files(out)
    schemes = {"det": CoarseScheme(hierarchy), "cls": ClassificationScheme(hierarchy), "valid": FineScheme(hierarchy)}
    counts = {"det": det, "cls": cls, "valid": valid}
    lists = {split: write_split(out, split, SPLIT_IDS[split], counts[split], size, seed, schemes[split])
             for split in schemes}
    train = out / "train.txt"
    train.write_text(lists["det"].read_text() + lists["cls"].read_text())
    data_file = out / f"{PREFIX}.data"
    data_file.write_text(f"classes={len(hierarchy.tree_lines())}\ntrain={train}\nvalid={lists['valid']}\n"
                         f"names={files['names']}\nbackup={out / 'backup'}\nmap={files['fine.map']}\n")
    return data_file
