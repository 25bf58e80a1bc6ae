"""pjreddie's Darknet or AlexeyAB's: how one fork answers the same command, as one `Dialect` object each.

pjreddie's Darknet is the default everywhere; the commands' `-ab` switch selects `ALEXEYAB`. What
AlexeyAB's Darknet does differently (checked against src/ of github.com/AlexeyAB/darknet, built for CPU):
- the image is stretched to the net (`resize_image`) unless `-letter_box` or `letter_box=1` in [net];
- every [region] box gets objectness 1 (network.c:custom_get_region_detections), so `do_nms_sort` ranks all;
  a map-less WordTree box gets the last tree node whose absolute probability is above .5 (region_layer.c:get_region_boxes);
- its CPU build computes what its GPU build does (`-darknet_build cpu` changes nothing under `-ab`);
- the last [yolo] layer's `nms_kind` and `beta_nms` choose the NMS (detector.c:test_detector), and [yolo] boxes of
  a stretched image are not corrected (yolo_layer.c:correct_yolo_boxes);
- `detector test` prints the best class of each box first, boxes sorted by their left edge, and with
  `-ext_output` each box in pixels;
- labels lie beside the images except under JPEGImages/ and COCO's folders (utils.c:replace_image_to_label);
- `detector valid` keeps boxes above .001 with NMS .6;
- `detector map` matches unclipped boxes as it finds them and prints its own report (`evaluate.alexeyab_map`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .data.files import alexeyab_label_path, label_path
from .detections import Detection, box_by_box_pairs, correct_boxes, correct_yolo_boxes, printed_line
from .evaluate import alexeyab_map, metrics
from .imdecode import STB_ALEXEYAB, STB_PJREDDIE

DONT_SHOW = "dont_show"  # DARKNET(AlexeyAB image.c:get_actual_detections): names never chosen as a box's class

PrintedPairs = Callable[[Sequence[Detection], Sequence[str], float], "list[tuple[Detection, int]]"]
# (detections, ground truths, classes, iou_thresh, points, conf_thresh) -> a result with `mean_ap`
MapEvaluation = Callable[..., Any]
MapFormat = Callable[[Any, Sequence[str]], "list[str]"]   # (that result, names) -> the report's lines
# (N, 4) boxes relative to the net input, im_w, im_h, net_w, net_h, letterbox -> (N, 4) relative to the image
BoxCorrection = Callable[[np.ndarray, int, int, int, int, bool], np.ndarray]


@dataclass(frozen=True)
class Dialect:
    """How one Darknet fork answers the same command.

    test_thresh: `detector test`'s -thresh default; valid_thresh, valid_nms: `detector valid`'s box
    threshold and NMS; unit_objectness: every [region] box's objectness is 1 before the NMS; letterbox_always: the
    image is always letterboxed (else only with -letter_box or letter_box=1 in [net]); label_rule: image
    path -> label path; label_rule_text: that rule in words, for messages; cli_choice: how a command line chooses
    this dialect (`dialect_for`), for messages; printed_pairs: the (box, class) pairs `detector test` prints, in its order;
    map_evaluation: (detections, ground truths, classes, iou_thresh, points, conf_thresh) -> the mAP result of
    `detector map` (`mean_ap`, per class AP, TP, FP); map_format: (that result, names) -> the lines `detector map`
    prints on stdout from `detections_count` on (`map_report` does both); map_counts_unlabelled: an image without
    a label file counts with no object in the mAP (else it is skipped); map_clips_boxes: detections are clipped to the image
    before they are matched; map_report_extended: pydarknet's lines may follow the report (COCO AP for
    eval=coco), else it is printed line for line as the C program prints it; yolo_nms_kind: the last [yolo]
    layer's `nms_kind`/`beta_nms` choose the NMS (else always IoU `do_nms_sort`); correct_yolo: how [yolo] boxes
    are brought back to the image (`BoxCorrection`); tree_last_above_half: a [region] WordTree box without a class
    map gets the probability of the last (highest-index) tree node whose absolute probability is above .5 (else
    tree.c:hierarchy_top_prediction's node, with the objectness); cpu_build: the `Darknet.darknet_build` whose numbers
    this fork's CPU build computes (`darknet_build_for`); stb_version: the stb_image this fork ships, which decides
    which malformed JPEGs `image.load_image` accepts (`imdecode.STB_VERSIONS`); predicted_line: `detector test`'s
    line after each image's forward, (path, seconds) -> text.
    """
    name: str
    test_thresh: float
    valid_thresh: float
    valid_nms: float
    unit_objectness: bool
    letterbox_always: bool
    label_rule: Callable[[str], str]
    label_rule_text: str
    cli_choice: str
    printed_pairs: PrintedPairs
    map_evaluation: MapEvaluation
    map_format: MapFormat
    map_counts_unlabelled: bool
    map_clips_boxes: bool
    map_report_extended: bool
    yolo_nms_kind: bool
    correct_yolo: BoxCorrection
    tree_last_above_half: bool
    cpu_build: str
    stb_version: str
    predicted_line: Callable[[str, float], str]

    def map_report(self, detections, ground_truths, names: Sequence[str], iou_thresh: float, points: int,
                   conf_thresh: float) -> list[str]:
        """The lines `detector map` prints for the classes `names`."""
        return self.map_format(self.map_evaluation(detections, ground_truths, len(names), iou_thresh, points,
                                                   conf_thresh), names)

    def darknet_build_for(self, build: str) -> str:
        """The `Darknet.darknet_build` that computes what this fork's `build` ("gpu" or "cpu") computes."""
        return self.cpu_build if build == "cpu" else build

    def letterbox(self, net, letter_box_flag: bool = False) -> bool:
        """Whether images are letterboxed for `net` (a Darknet or an InferenceNetwork) given `-letter_box`."""
        return self.letterbox_always or letter_box_flag or bool(net.options.letter_box)

    def label_path(self, image_path: str) -> str:
        """The label file this Darknet reads for an image."""
        return self.label_rule(image_path)

    def label_file(self, image_path: str) -> str | None:
        """The label file of an image, None where no rule applies (pjreddie's `label_path` raises) or the rule
        gives the image itself: Darknet would read the image as its labels."""
        try:
            label = self.label_rule(image_path)
        except ValueError:   # DARKNET(data.c:fill_truth_detection): no rule applies
            return None
        return None if label == image_path else label

    def objectness_rule(self, dets: Sequence[Detection]) -> list[Detection]:
        """[region] detections as this Darknet hands them to its NMS."""
        if not self.unit_objectness:
            return list(dets)
        # DARKNET(AlexeyAB network.c:custom_get_region_detections): objectness = 1 for every box
        return [Detection(det.bbox, 1.0, det.probs) for det in dets]

    def printed_lines(self, dets: Sequence[Detection], names: Sequence[str], thresh: float, im_w: int, im_h: int,
                      ext_output: bool = False) -> list[str]:
        """The `name: NN%` lines of `detector test` in this Darknet's order; `ext_output` adds AlexeyAB's
        `(left_x: ...)` box in pixels of the `im_w` x `im_h` image."""
        return [printed_line(names[j], det.probs[j]) + (ext_output_box(det.bbox, im_w, im_h) if ext_output else "")
                for det, j in self.printed_pairs(dets, names, thresh)]


def _best_class_first(dets: Sequence[Detection], names: Sequence[str], thresh: float) -> list[tuple[Detection, int]]:
    """DARKNET(AlexeyAB image.c:draw_detections_v3): each box's best class, then its others; boxes by left edge."""
    t = np.float32(thresh)
    showable = np.array([not name.startswith(DONT_SHOW) for name in names[:len(dets[0].probs)]]) if dets else None
    selected = []
    for det in dets:
        candidates = np.where((det.probs > t) & showable, det.probs, -np.inf)
        if np.isfinite(candidates).any():
            selected.append((det, int(np.argmax(candidates))))   # the first of equal probs, as its strict >
    # DARKNET(AlexeyAB image.c:compare_by_lefts): glibc's stable qsort on the float32 left edge
    selected.sort(key=lambda pair: float(pair[0].bbox[0] - pair[0].bbox[2] / np.float32(2)))
    pairs = []
    for det, best in selected:
        pairs.append((det, best))
        pairs.extend((det, int(j)) for j in np.flatnonzero(det.probs > t) if j != best)
    return pairs


def ext_output_box(bbox_cxcywh: np.ndarray, im_w: int, im_h: int) -> str:
    """DARKNET(AlexeyAB image.c:draw_detections_v3): `\\t(left_x: %4.0f   top_y: %4.0f   width: %4.0f
    height: %4.0f)` of round() of the float32 pixel values (halves away from zero)."""
    x, y, w, h = (np.float32(v) for v in bbox_cxcywh)
    values = ((x - w / np.float32(2)) * np.float32(im_w), (y - h / np.float32(2)) * np.float32(im_h),
              w * np.float32(im_w), h * np.float32(im_h))
    left, top, width, height = (_c_round(float(v)) for v in values)
    return f"\t(left_x: {left:4.0f}   top_y: {top:4.0f}   width: {width:4.0f}   height: {height:4.0f})"


def _c_round(value: float) -> float:
    return math.copysign(math.floor(abs(value) + 0.5), value) if math.isfinite(value) else value


PJREDDIE = Dialect(
    name="pjreddie",
    test_thresh=0.5,     # DARKNET(darknet.c:main): detector test -thresh default
    valid_thresh=0.005,  # DARKNET(detector.c:validate_detector): keep nearly every box for the AP curve
    valid_nms=0.45,      # DARKNET(detector.c:validate_detector)
    unit_objectness=False,
    letterbox_always=True,  # DARKNET(detector.c:test_detector): letterbox_image
    label_rule=label_path,
    label_rule_text=("the first images, JPEGImages and raw in the path each become labels, the first .jpg, .png, "
                     ".JPG and .JPEG each become .txt"),
    cli_choice="leave out -ab",
    printed_pairs=box_by_box_pairs,
    map_evaluation=metrics.evaluate_detections,
    map_format=metrics.format_map_report,   # pjreddie's Darknet has no `detector map`: AlexeyAB's layout
    map_counts_unlabelled=False,
    map_clips_boxes=True,                  # as the boxes of `detector valid`'s result files
    map_report_extended=True,
    yolo_nms_kind=False,   # DARKNET(pjreddie detector.c:test_detector): do_nms_sort; [yolo] has no nms_kind
    correct_yolo=correct_boxes,   # DARKNET(pjreddie yolo_layer.c:correct_yolo_boxes): the region correction
    tree_last_above_half=False,   # DARKNET(pjreddie region_layer.c:get_region_detections): hierarchy_top_prediction
    # DARKNET(pjreddie blas.c:normalize_cpu, region_layer.c:forward_region_layer): its own batch norm and tree softmax
    cpu_build="cpu",
    stb_version=STB_PJREDDIE,   # DARKNET(pjreddie src/stb_image.h): v2.19
    # DARKNET(detector.c:test_detector): "%s: Predicted in %f seconds.\n"
    predicted_line=lambda path, seconds: f"{path}: Predicted in {seconds:f} seconds.",
)

ALEXEYAB = Dialect(
    name="alexeyab",
    test_thresh=0.25,    # DARKNET(AlexeyAB darknet.c / detector.c:run_detector): -thresh default
    valid_thresh=0.001,  # DARKNET(AlexeyAB detector.c:validate_detector)
    valid_nms=0.6,       # DARKNET(AlexeyAB detector.c:validate_detector)
    unit_objectness=True,
    letterbox_always=False,  # DARKNET(AlexeyAB detector.c:test_detector): resize_image unless letter_box
    label_rule=alexeyab_label_path,
    label_rule_text=("a .txt beside the image, except under JPEGImages/ and COCO's "
                     "images/train2014|val2014|train2017|val2017/ folders, which become labels/"),
    cli_choice="add -ab",
    printed_pairs=_best_class_first,
    map_evaluation=alexeyab_map.evaluate_map,
    map_format=alexeyab_map.format_map_report,
    # DARKNET(AlexeyAB detector.c:validate_detector_map): read_boxes warns, the image counts with no object
    map_counts_unlabelled=True,
    map_clips_boxes=False,
    map_report_extended=False,
    yolo_nms_kind=True,   # DARKNET(AlexeyAB detector.c:test_detector): the last layer's nms_kind, beta_nms
    correct_yolo=correct_yolo_boxes,
    tree_last_above_half=True,   # DARKNET(AlexeyAB region_layer.c:get_region_boxes), via custom_get_region_detections
    # DARKNET(AlexeyAB network.c:fuse_conv_batchnorm): detector test/map/valid fold batch norm with sqrt(var + .00001)
    # (normalize_cpu too), the GPU formula; DARKNET(AlexeyAB region_layer.c:forward_region_layer): on the CPU it
    # flattens the output to [cell][anchor][entry] and softmaxes each WordTree group of each box there, as its GPU
    # build does (forward_region_layer_gpu): no broken CPU tree path to reproduce
    cpu_build="gpu",
    stb_version=STB_ALEXEYAB,   # DARKNET(AlexeyAB 3rdparty/stb/include/stb_image.h): v2.30
    # DARKNET(AlexeyAB detector.c:test_detector): "%s: Predicted in %lf milli-seconds.\n"
    predicted_line=lambda path, seconds: f"{path}: Predicted in {seconds * 1000:f} milli-seconds.",
)


def dialect_for(alexeyab: bool) -> Dialect:
    """The dialect the `-ab` switch selects."""
    return ALEXEYAB if alexeyab else PJREDDIE


def other_dialect(dialect: Dialect) -> Dialect:
    """The other Darknet's dialect (where a message suggests switching)."""
    return dialect_for(dialect.name != ALEXEYAB.name)
