"""A detector's head, whichever it is: the layers that output detections and the one pipeline from their
output(s) for one image to Darknet's detections. `predict`, `evaluate` and the CLI go through this, so a
new head is added here once and nowhere after it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from torch import Tensor

from ..detections import Detection
from ..dialect import PJREDDIE, Dialect
from ..errors import CfgError
from .detection.detections import detection_detections
from .detection.layer import DetectionLayer
from .region.detections import HIER_THRESH, region_detections
from .region.layer import RegionLayer
from .yolo.gaussian import GaussianYoloLayer, gaussian_yolo_detections
from .yolo.detections import yolo_detections
from .yolo.layer import YoloLayer

HeadOutput = Tensor | Sequence[Tensor]   # one layer's (.., A, 5+C, H, W), or one per [yolo] layer


@dataclass(frozen=True)
class DetectionHead:
    """kind: the section name ("region", "yolo", "Gaussian_yolo", "detection"); layers: the head's layers in network order (the
    last [region] or [detection], or every [yolo] / [Gaussian_yolo]); classes: the classes it predicts."""
    kind: str
    layers: tuple
    classes: int

    @staticmethod
    def image_output(output: HeadOutput, index: int) -> HeadOutput:
        """Image `index` of a batch forward's output (a tensor, or a list of them for several [yolo] layers)."""
        return output[index] if isinstance(output, Tensor) else [layer_output[index] for layer_output in output]

    def detections(self, output: HeadOutput, net_w: int, net_h: int, im_w: int, im_h: int, thresh: float,
                   nms: float, hier_thresh: float = HIER_THRESH, letterbox: bool = True, dialect: Dialect = PJREDDIE,
                   class_map: np.ndarray | None = None, classes: int | None = None) -> list[Detection]:
        """One image's head output -> its detections after the NMS (none when nms=0), in Darknet's array order;
        boxes cxcywh relative to the `im_w` x `im_h` image (letterbox: whether it was letterboxed, else stretched).
        class_map, classes: [region] only (see `region_detections`). `output` may be a list of one layer's output
        for the one-layer heads too."""
        outputs = [output] if isinstance(output, Tensor) else list(output)
        if self.kind == "detection":
            return detection_detections(self.layers[0], outputs[0], net_w, net_h, im_w, im_h, thresh, nms, letterbox)
        if self.kind == "region":
            return region_detections(self.layers[0], outputs[0], net_w, net_h, im_w, im_h, thresh, nms, hier_thresh,
                                     letterbox, class_map, classes, dialect)
        if self.kind == "Gaussian_yolo":
            return gaussian_yolo_detections(self.layers, outputs, net_w, net_h, im_w, im_h, thresh, nms, letterbox,
                                            dialect)
        return yolo_detections(self.layers, outputs, net_w, net_h, im_w, im_h, thresh, nms, letterbox, dialect)


def float_on_cpu(output: HeadOutput) -> HeadOutput:
    """A head output (a tensor, or a list of them) as float32 CPU tensors, what the pipelines read."""
    return output.float().cpu() if isinstance(output, Tensor) else [layer_output.float().cpu() for layer_output in output]


def detection_head(net, purpose: str) -> DetectionHead:
    """The detection head of `net` (a Darknet or an InferenceNetwork), or a CfgError saying that `purpose`
    (e.g. "detection") needs one."""
    yolo = tuple(layer for layer in net.layers if isinstance(layer, YoloLayer))
    if yolo:
        return DetectionHead("yolo", yolo, yolo[-1].classes)
    gaussian = tuple(layer for layer in net.layers if isinstance(layer, GaussianYoloLayer))
    if gaussian:
        return DetectionHead("Gaussian_yolo", gaussian, gaussian[-1].classes)
    region = next((layer for layer in reversed(net.layers) if isinstance(layer, RegionLayer)), None)
    if region is not None:
        return DetectionHead("region", (region,), region.options.classes)
    detection = next((layer for layer in reversed(net.layers) if isinstance(layer, DetectionLayer)), None)
    if detection is not None:
        return DetectionHead("detection", (detection,), detection.options.classes)
    raise CfgError(f"{net.cfg_path}: {purpose} needs a detection layer ([region], [yolo], [Gaussian_yolo] or "
                   f"[detection]); this cfg has none")
