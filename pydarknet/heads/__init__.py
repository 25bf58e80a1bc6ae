"""Detection heads: one package per Darknet head, each owning its whole concept.

`region/` is YOLOv2's `[region]` (and YOLO9000's WordTree variant), `yolo/` is YOLOv3's `[yolo]`.
Importing this package registers their section builders.
"""
from .region import layer as _region_layer  # noqa: F401  (registers [region])
from .yolo import layer as _yolo_layer  # noqa: F401  (registers [yolo])
