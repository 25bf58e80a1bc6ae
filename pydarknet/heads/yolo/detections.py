"""[yolo] outputs -> Darknet's detections: the one pipeline `detect`, evaluation, video and export use.

Every comparison with a threshold is done in float32 against ``float32(thresh)``, because Darknet passes
thresholds as C ``float``; products are float32 in Darknet's order, so the probabilities (and the printed
percentages) equal Darknet's up to its own float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from ...detections import NMS_KINDS, Detection, do_nms_sort
from ...dialect import PJREDDIE, Dialect
from .coder import COORDS, decode_boxes


@dataclass(frozen=True)
class YoloDecode:
    """What turning one [yolo] layer's output into detections needs, as plain values.

    anchors_wh: (A, 2) float32 w, h in network-input pixels of the layer's anchors, ``anchors[mask]``;
    new_coords: the [yolo] `new_coords` (sizes are ``4*t²`` times the anchor, not ``exp(t)``);
    nms_kind: one of `detections.NMS_KINDS`; beta_nms: diounms's exponent (both read from the last layer).
    """
    anchors_wh: Tensor
    new_coords: bool = False
    nms_kind: str = "default"
    beta_nms: float = 0.6

    @classmethod
    def from_options(cls, anchors: Sequence[float] | Tensor, mask: Sequence[int], new_coords: bool | int = False,
                     nms_kind: str | int = "default", beta_nms: float = 0.6) -> YoloDecode:
        """From the [yolo] keys: `anchors` flat ``w0, h0, w1, h1, ...`` (or (num, 2)), `mask` the indices used."""
        anchors_wh = torch.as_tensor(anchors, dtype=torch.float32).reshape(-1, 2)
        if len(mask) and max(mask) >= len(anchors_wh):
            raise ValueError(f"mask {list(mask)} names anchor {max(mask)}, only {len(anchors_wh)} anchors given")
        return cls(anchors_wh[list(mask)], bool(new_coords), nms_kind_name(nms_kind), float(beta_nms))

    @classmethod
    def of(cls, layer: Any) -> YoloDecode:
        """A `YoloDecode` as is, or read from a [yolo] layer: its `mask` and (num, 2) `anchors` (or those of its
        `options`), and `new_coords`, `nms_kind`, `beta_nms` of its `options` (Darknet's defaults without)."""
        if isinstance(layer, YoloDecode):
            return layer
        options = getattr(layer, "options", None)
        mask = getattr(layer, "mask", None)
        mask = getattr(options, "mask", None) if mask is None else mask
        anchors = getattr(layer, "anchors", None)
        anchors = getattr(options, "anchors", None) if anchors is None else anchors
        if mask is None or anchors is None:
            raise TypeError(f"{type(layer).__name__} has no [yolo] mask and anchors")
        return cls.from_options(anchors, mask, getattr(options, "new_coords", False),
                                getattr(options, "nms_kind", "default"), getattr(options, "beta_nms", 0.6))


def nms_kind_name(kind: str | int) -> str:
    """A [yolo] `nms_kind` as a name of `detections.NMS_KINDS`, from its cfg string or AlexeyAB's NMS_KIND number."""
    if isinstance(kind, str):
        # DARKNET(AlexeyAB parser.c:parse_yolo): an unknown name (cornersnms too) is the default NMS
        return kind if kind in NMS_KINDS else "default"
    return NMS_KINDS[kind] if 0 <= kind < len(NMS_KINDS) else "default"


def decode_yolo(output: Tensor, anchors_wh: Tensor, net_w: int, net_h: int, new_coords: bool = False,
                exact: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """A [yolo] output as per-cell-anchor boxes and probabilities, thresholded nowhere.

    output: (B, A, 5+C, H, W) activated output of `YoloLayer`; anchors_wh: (A, 2) ``anchors[mask]`` in pixels.
    Returns boxes (B, N, 4) cxcywh relative to the network input (before any letterbox correction),
    objectness (B, N) and probabilities objectness x P(class) (B, N, C), N = H*W*A; box ``(y*W + x)*A + a``
    is anchor ``a`` at cell (y, x): DARKNET(AlexeyAB yolo_layer.c:get_yolo_detections)'s cell-major order.
    exact: as `coder.decode_boxes` (True for Darknet's detections, False for the ONNX graph).
    """
    batch, num, entries, h, w = output.shape
    boxes = decode_boxes(output, anchors_wh, net_w, net_h, new_coords, exact)              # [B, A, H, W, 4]
    boxes = boxes.permute(0, 2, 3, 1, 4).reshape(batch, h * w * num, 4)
    objectness = output[:, :, COORDS]                                                       # [B, A, H, W]
    # DARKNET(AlexeyAB yolo_layer.c:get_yolo_detections): prob = objectness * P(class), float32
    probs = objectness.unsqueeze(2) * output[:, :, COORDS + 1:]                             # [B, A, C, H, W]
    probs = probs.permute(0, 3, 4, 1, 2).reshape(batch, h * w * num, entries - COORDS - 1)
    return boxes, objectness.permute(0, 2, 3, 1).reshape(batch, h * w * num), probs


def get_yolo_detections(outputs: Sequence[np.ndarray | Tensor], decodes: Sequence[YoloDecode], net_w: int,
                        net_h: int, im_w: int, im_h: int, thresh: float, letterbox: bool = True,
                        dialect: Dialect = PJREDDIE) -> list[Detection]:
    """DARKNET(AlexeyAB network.c:fill_network_boxes): one image's [yolo] outputs -> its candidate detections.

    outputs: one (A, 5+C, H, W) activated output per [yolo] layer, in network order; decodes: their
    `YoloDecode`s. Candidates are the (cell, anchor) pairs with objectness > thresh, cell-major within a
    layer, layers in order; each keeps its objectness, and prob[c] = objectness x P(c) where > thresh, else 0.
    Boxes are cxcywh relative to the `im_w` x `im_h` image (letterbox: whether it was letterboxed, else
    stretched), corrected as `dialect.correct_yolo` does.
    """
    if len(outputs) != len(decodes):
        raise ValueError(f"{len(outputs)} [yolo] outputs for {len(decodes)} [yolo] layers")
    boxes, objectness, probs = candidates(
        ((part[0].numpy() for part in decode_yolo(_check_yolo(output, decode)[None], decode.anchors_wh, net_w, net_h,
                                                  decode.new_coords, exact=True))
         for output, decode in zip(outputs, decodes)), thresh)
    corrected = dialect.correct_yolo(boxes, im_w, im_h, net_w, net_h, letterbox)
    return [Detection(box, float(obj), prob) for box, obj, prob in zip(corrected, objectness, probs)]


def candidates(layers: Iterable[Iterable[np.ndarray]], thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each layer's decoded (boxes (N, 4), objectness (N,), probabilities (N, C)) -> the candidates of all layers
    in order: the boxes with objectness > thresh, each probability kept where > thresh, else 0."""
    t = np.float32(thresh)
    boxes, objectness, probs = [], [], []
    for layer_boxes, layer_obj, layer_probs in layers:
        keep = layer_obj > t                                                               # [N]
        boxes.append(layer_boxes[keep])
        objectness.append(layer_obj[keep])
        probs.append(np.where(layer_probs[keep] > t, layer_probs[keep], np.float32(0)))
    if len({p.shape[1] for p in probs}) > 1:
        raise ValueError(f"the detection layers predict different numbers of classes: {[p.shape[1] for p in probs]}")
    return np.concatenate(boxes), np.concatenate(objectness), np.concatenate(probs)


def last_layer_nms(dets: list[Detection], nms: float, dialect: Dialect, nms_kind: str,
                   beta_nms: float) -> list[Detection]:
    """The NMS of `detector test` (none when nms=0): AlexeyAB's takes the NMS kind and beta_nms of the net's last
    [yolo] layer; pjreddie's always runs the IoU `do_nms_sort`."""
    if not nms or not dets:
        return dets
    if dialect.yolo_nms_kind:
        # DARKNET(AlexeyAB detector.c:test_detector): nms_kind and beta_nms of the net's last layer
        return do_nms_sort(dets, len(dets[0].probs), nms, nms_kind, beta_nms)
    return do_nms_sort(dets, len(dets[0].probs), nms)


def _check_yolo(output: np.ndarray | Tensor, decode: YoloDecode) -> Tensor:
    """The [yolo] output as a float32 (A, 5+C, H, W) CPU tensor, checked against its anchors."""
    output = torch.as_tensor(np.asarray(output.detach().cpu() if isinstance(output, Tensor) else output,
                                        dtype=np.float32))
    if output.dim() != 4 or output.shape[1] < COORDS + 2:
        raise ValueError(f"[yolo] output must be (anchors, 5+classes, H, W), got shape {tuple(output.shape)}")
    if output.shape[0] != len(decode.anchors_wh):
        raise ValueError(f"[yolo] output has {output.shape[0]} anchors, its mask names {len(decode.anchors_wh)}")
    return output


def yolo_detections(layers: Sequence[Any], outputs: Sequence[np.ndarray | Tensor], net_w: int, net_h: int,
                    im_w: int, im_h: int, thresh: float, nms: float, letterbox: bool = True,
                    dialect: Dialect = PJREDDIE) -> list[Detection]:
    """One image's [yolo] outputs -> its detections after the NMS (none when nms=0), in Darknet's array order.

    layers: the [yolo] layers in network order (`YoloLayer`s or `YoloDecode`s, see `YoloDecode.of`);
    outputs: their (A, 5+C, H, W) activated outputs for the image. im_w, im_h: the original image;
    letterbox: whether it was letterboxed (else stretched to the net). dialect: whose Darknet —
    AlexeyAB's takes the NMS kind and beta_nms from the last [yolo] layer (greedynms, diounms, default);
    pjreddie's always runs the IoU `do_nms_sort`.
    """
    decodes = [YoloDecode.of(layer) for layer in layers]
    dets = get_yolo_detections(outputs, decodes, net_w, net_h, im_w, im_h, thresh, letterbox, dialect)
    return last_layer_nms(dets, nms, dialect, decodes[-1].nms_kind, decodes[-1].beta_nms)
