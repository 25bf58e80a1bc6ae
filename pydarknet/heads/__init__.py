"""Detection heads: one package per Darknet head, each owning its whole concept.

`region/` is YOLOv2's `[region]` (and YOLO9000's WordTree variant), `yolo/` is YOLOv3's `[yolo]` and AlexeyAB's
`[Gaussian_yolo]`,
`detection/` YOLOv1's `[detection]`.
Importing this package registers their section builders.
"""
from .detection import layer as _detection_layer  # noqa: F401  (registers [detection])
from .region import layer as _region_layer  # noqa: F401  (registers [region])
from .yolo import gaussian as _gaussian_yolo  # noqa: F401  (registers [Gaussian_yolo])
from .yolo import layer as _yolo_layer  # noqa: F401  (registers [yolo])
