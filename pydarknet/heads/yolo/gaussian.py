"""AlexeyAB's `[Gaussian_yolo]` (Gaussian YOLOv3): a [yolo] layer that also predicts an uncertainty (sigma) for each
of x, y, w, h and lowers every class probability by their mean.

Entries per anchor: 0 x, 1 sigma_x, 2 y, 3 sigma_y, 4 w, 5 sigma_w, 6 h, 7 sigma_h, 8 objectness, 9.. classes
(DARKNET(AlexeyAB gaussian_yolo_layer.c:entry_gaussian_index)), memory layout `[B][n][entry][h][w]`.
"""
from __future__ import annotations

from dataclasses import field, fields, make_dataclass
from typing import Sequence

import torch
from torch import Tensor

from ...cfg import Section
from ...boxes import grid_centres
from ...detections import Detection, correct_boxes
from ...dialect import PJREDDIE, Dialect
from ...layers.base import DarknetLayer
from ...options import YoloOptions, opt, read_options
from ...registry import BuildContext, Shape, register
from ..region.layer import default_anchors
from .detections import candidates, last_layer_nms, nms_kind_name

ENTRIES = 9        # DARKNET(AlexeyAB gaussian_yolo_layer.c:make_gaussian_yolo_layer): 4 means, 4 sigmas, objectness
OBJECTNESS = 8
MEANS = (0, 2, 4, 6)     # x, y, w, h
SIGMAS = (1, 3, 5, 7)    # their uncertainties


# DARKNET(AlexeyAB parser.c:parse_gaussian_yolo): the [yolo] keys it reads too, with the same defaults (training keys
# change nothing at inference; they are read so that they are not reported as unused) ...
_YOLO_KEYS = ("classes", "num", "mask", "max", "max_delta", "counters_per_class", "label_smooth_eps", "scale_x_y",
              "objectness_smooth", "iou_normalizer", "obj_normalizer", "cls_normalizer", "delta_normalizer", "iou_loss",
              "iou_thresh_kind", "beta_nms", "nms_kind", "jitter", "resize", "ignore_thresh", "truth_thresh",
              "iou_thresh", "random", "map", "anchors")
# ... and its own: uc_normalizer, and yolo_point (DIVERGES: AlexeyAB takes any other name as "center"; an error here)
GaussianYoloOptions = make_dataclass(
    "GaussianYoloOptions",
    [(f.name, f.type, field(default=f.default, default_factory=f.default_factory, metadata=f.metadata))
     for f in fields(YoloOptions) if f.name in _YOLO_KEYS]
    + [("uc_normalizer", float, opt(1.0)),
       ("yolo_point", str, opt("center", choices=("center", "left_top", "right_bottom")))],
    namespace={"check": YoloOptions.check, "__doc__": "Every `[Gaussian_yolo]` key, named as in the cfg."},
    frozen=True)
GaussianYoloOptions.__module__ = __name__   # (make_dataclass's own `module=` needs Python 3.12)


class GaussianYoloLayer(DarknetLayer):
    """DARKNET(AlexeyAB gaussian_yolo_layer.c:forward_gaussian_yolo_layer), CPU build: logistic on x, sigma_x, y,
    sigma_y, sigma_w, sigma_h, objectness and the classes (w, h raw); then x, y <- x·scale_x_y − (scale_x_y − 1)/2.
    Shapes: (B, n·(9+classes), H, W) -> (B, n, 9+classes, H, W), n = len(mask).
    """

    outputs_detections = True

    def __init__(self, options: GaussianYoloOptions, mask: list[int], anchors: list[float]):
        super().__init__()
        self.options, self.classes, self.mask = options, options.classes, mask
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(-1, 2), persistent=False)
        raw = torch.zeros(ENTRIES + options.classes, dtype=torch.bool)
        raw[[MEANS[2], MEANS[3]]] = True
        # w, h: no logistic; kept 1-D so that moving the net to channels_last (4-D buffers only) leaves it alone
        self.register_buffer("raw_entries", raw, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        x = x.reshape(b, len(self.mask), ENTRIES + self.classes, h, w)
        out = torch.where(self.raw_entries.view(1, 1, -1, 1, 1), x, torch.sigmoid(x))
        scale = self.options.scale_x_y
        if scale != 1:
            # DARKNET(AlexeyAB gaussian_yolo_layer.c:forward_gaussian_yolo_layer): scal_add_cpu on the x, y means only
            xy = out[:, :, [MEANS[0], MEANS[1]]] * scale + (-0.5 * (scale - 1))
            out = torch.cat((xy[:, :, :1], out[:, :, 1:2], xy[:, :, 1:], out[:, :, 3:]), dim=2)
        return out

    def extra_repr(self) -> str:
        return f"classes={self.classes}, mask={self.mask}, scale_x_y={self.options.scale_x_y}"

    def summary_line(self, net, index: int, before: Shape) -> str:
        return "Gaussian_yolo"   # DARKNET(AlexeyAB parser.c:parse_network_cfg): the layer prints no line of its own


@register("Gaussian_yolo")
def build_gaussian_yolo(s: Section, ctx: BuildContext) -> tuple[GaussianYoloLayer, Shape]:
    shape = ctx.input_shape
    options = read_options(GaussianYoloOptions, s)
    # DARKNET(AlexeyAB parser.c:parse_gaussian_yolo_mask): without `mask` the layer predicts every anchor
    mask = list(options.mask) if options.mask else list(range(options.num))
    expected = len(mask) * (ENTRIES + options.classes)
    if shape.c != expected:
        raise s.error(f"input has {shape.c} channels, but len(mask)*(9+classes) = {expected}")
    ctx.reserve(s, 2 * options.num, f"num={options.num} anchors", "num")
    return GaussianYoloLayer(options, mask, default_anchors(options.anchors, options.num)), shape


def decode_gaussian_yolo(output: Tensor, anchors_wh: Tensor, net_w: int, net_h: int,
                         yolo_point: str = "center") -> tuple[Tensor, Tensor, Tensor]:
    """One image's activated output (A, 9+C, H, W) -> boxes (N, 4) cxcywh relative to the net input, objectness (N,)
    and probabilities (N, C), N = H*W*A in DARKNET(AlexeyAB gaussian_yolo_layer.c:get_gaussian_yolo_detections)'s
    cell-major order (box ``(y*W + x)*A + a``), unthresholded; float64 where C promotes to double.

    DARKNET(AlexeyAB gaussian_yolo_layer.c:get_gaussian_yolo_box): x = (i + tx)/W, w = exp(tw)·anchor_w/net_w (double),
    left_top/right_bottom move the centre by half the size. prob = float(obj·P(c) · (1.0 − mean of the 4 sigmas)).
    """
    num, entries, h, w = output.shape
    x, y = grid_centres(output[:, [MEANS[0], MEANS[1]]])            # [A, H, W] float32, as C's (i + x)/lw
    anchor = anchors_wh.double().view(num, 2, 1, 1)
    # DARKNET: exp() of a float and the anchor product are double, stored in the float box fields
    net_wh = torch.tensor([net_w, net_h], device=output.device).view(2, 1, 1)
    sizes = torch.exp(output[:, [MEANS[2], MEANS[3]]].double()) * anchor / net_wh
    bw, bh = sizes[:, 0].float(), sizes[:, 1].float()                                    # [A, H, W]
    if yolo_point != "center":
        sign = 1 if yolo_point == "left_top" else -1
        x, y = x + sign * bw / 2, y + sign * bh / 2
    boxes = torch.stack((x, y, bw, bh), dim=-1).permute(1, 2, 0, 3).reshape(h * w * num, 4)   # [N, 4]
    objectness = output[:, OBJECTNESS]                                                   # [A, H, W] float32
    sigmas = output[:, list(SIGMAS)]                                                     # [A, 4, H, W]
    # DARKNET: (uc0 + uc1 + uc2 + uc3) in float, / 4.0 in double, stored in a float
    uc_mean = ((((sigmas[:, 0] + sigmas[:, 1]) + sigmas[:, 2]) + sigmas[:, 3]).double() / 4.0).float()
    products = objectness.unsqueeze(1) * output[:, ENTRIES:]                             # [A, C, H, W] float32
    probs = (products.double() * (1.0 - uc_mean.double()).unsqueeze(1)).float()
    probs = probs.permute(2, 3, 0, 1).reshape(h * w * num, entries - ENTRIES)
    return boxes, objectness.permute(1, 2, 0).reshape(h * w * num), probs


def gaussian_yolo_detections(layers: Sequence[GaussianYoloLayer], outputs: Sequence[Tensor], net_w: int, net_h: int,
                             im_w: int, im_h: int, thresh: float, nms: float, letterbox: bool = True,
                             dialect: Dialect = PJREDDIE) -> list[Detection]:
    """One image's [Gaussian_yolo] outputs (one (A, 9+C, H, W) per layer, network order) -> its detections after the
    NMS (none when nms=0), as DARKNET(AlexeyAB network.c:fill_network_boxes) then detector.c:test_detector: candidates
    with objectness > thresh, prob[c] kept where > thresh; the NMS kind and beta_nms of the last layer."""
    if len(outputs) != len(layers):
        raise ValueError(f"{len(outputs)} [Gaussian_yolo] outputs for {len(layers)} [Gaussian_yolo] layers")
    boxes, objectness, probs = candidates(
        ((part.numpy() for part in decode_gaussian_yolo(output.detach().float().cpu(), layer.anchors[layer.mask],
                                                        net_w, net_h, layer.options.yolo_point))
         for layer, output in zip(layers, outputs)), thresh)
    # DIVERGES: Gaussian_yolo is AlexeyAB's layer; its box correction is used under either dialect
    # DARKNET(AlexeyAB gaussian_yolo_layer.c:correct_gaussian_yolo_boxes): the region correction
    corrected = correct_boxes(boxes, im_w, im_h, net_w, net_h, letterbox)
    dets = [Detection(box, float(obj), prob) for box, obj, prob in zip(corrected, objectness, probs)]
    last = layers[-1].options
    return last_layer_nms(dets, nms, dialect, nms_kind_name(last.nms_kind), last.beta_nms)
