"""Section options read ONE way: dataclasses whose fields declare their default, type and bounds.

No torch here. A field made with `opt(...)` says how its cfg key is read; `read_options(cls, section)`
reads every such field in declaration order (so a default may be derived from fields read before it)
with the matching `Section` getter, whose bounds turn a bad value into a CfgError naming file:line
and key. A field whose `when` is false is not read at all, exactly as Darknet skips the key, so the
key is then reported as an unused field. `cls.check(section)`, when defined, checks what spans
several fields.

    @dataclass
    class PoolOptions:
        stride: int = opt(1, minimum=1)
        size: int = opt(derived=lambda read: read["stride"], minimum=1)
"""
from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

from .cfg import _REQUIRED, Section

Read = dict[str, object]   # the fields read so far, by name

# DARKNET(parser.c:get_policy): the `policy=` names of `[net]` (engine/lr.py computes each one's rate);
# `sgdr` is AlexeyAB's only
POLICIES = ("constant", "step", "steps", "exp", "poly", "sigmoid", "random", "sgdr")


@dataclass(frozen=True)
class OptionSpec:
    minimum: float | None = None
    maximum: float | None = None
    nonzero: bool = False
    choices: tuple[str, ...] | None = None
    derived: Callable[[Read], object] | None = None   # the default, from fields read before this one
    when: Callable[[Read], bool] | None = None         # read the key only when this holds
    required: bool = False                              # (when read) the key must be present
    read: bool = True                                   # False: the builder fills the field itself


def opt(default=None, *, minimum: float | None = None, maximum: float | None = None, nonzero: bool = False,
        choices: tuple[str, ...] | None = None, derived: Callable[[Read], object] | None = None,
        when: Callable[[Read], bool] | None = None, required: bool = False, read: bool = True):
    """A dataclass field read from the cfg key of the same name (see the module docstring)."""
    spec = OptionSpec(minimum, maximum, nonzero, choices, derived, when, required, read)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"option": spec})
    return field(default=default, metadata={"option": spec})


def _getter(section: Section, annotation, spec: OptionSpec):
    bounds = {"minimum": spec.minimum, "maximum": spec.maximum}
    if annotation is int:
        return lambda key, default: section.get_int(key, default, **bounds)
    if annotation is float:
        return lambda key, default: section.get_float(key, default, nonzero=spec.nonzero, **bounds)
    if annotation == list[int]:
        return lambda key, default: section.get_ints(key, default, **bounds)
    if annotation == list[float]:
        return lambda key, default: section.get_floats(key, default, **bounds)
    return lambda key, default: section.get_str(key, default, choices=spec.choices)


def _default(f) -> object:
    return f.default_factory() if f.default is MISSING else f.default


@functools.cache
def _option_fields(cls) -> list[tuple[str, object, OptionSpec, object]]:
    """(name, type, spec, dataclass field) of each field of `cls` read from the cfg, in declaration order."""
    types = typing.get_type_hints(cls)
    return [(f.name, types[f.name], f.metadata["option"], f) for f in fields(cls)
            if "option" in f.metadata and f.metadata["option"].read]


def read_options(cls, section: Section):
    """An instance of the dataclass `cls` with every `opt` field read from `section`."""
    read: Read = {}
    for name, annotation, spec, f in _option_fields(cls):
        if spec.when is not None and not spec.when(read):
            continue
        if spec.required:
            default = _REQUIRED
        else:
            default = spec.derived(read) if spec.derived is not None else _default(f)
        read[name] = _getter(section, annotation, spec)(name, default)
    options = cls(**read)
    if hasattr(options, "check"):
        options.check(section)
    return options


def _policy_in(*policies: str) -> Callable[[Read], bool]:
    return lambda read: read["policy"] in policies


def _per_width(key: str) -> Callable[[Read], float]:
    # DARKNET(parser.c:parse_net_options): (float) crop / w; 0 when width is absent (Darknet: a NaN)
    return lambda read: read[key] / read["width"] if read["width"] else 0.0


@dataclass
class NetOptions:
    """The `[net]` section, read as DARKNET(parser.c:parse_net_options): same names, defaults,
    derived defaults (inputs, min/max_crop, min/max_ratio) and the same keys skipped per policy."""

    batch: int = opt(1, minimum=1)
    learning_rate: float = opt(0.001)
    momentum: float = opt(0.9)
    decay: float = opt(0.0001)
    subdivisions: int = opt(1, minimum=1)
    time_steps: int = opt(1, minimum=1)
    notruth: int = opt(0)
    random: int = opt(0)
    adam: int = opt(0)
    B1: float = opt(0.9, when=lambda read: read["adam"])
    B2: float = opt(0.999, when=lambda read: read["adam"])
    # DIVERGES: pjreddie's default (AlexeyAB's is 1e-6)
    eps: float = opt(1e-7, when=lambda read: read["adam"])
    height: int = opt(0, minimum=1)
    width: int = opt(0, minimum=1)
    channels: int = opt(0, minimum=1)
    inputs: int = opt(derived=lambda read: read["height"] * read["width"] * read["channels"], minimum=1)
    max_crop: int = opt(derived=lambda read: 2 * read["width"], minimum=1)
    min_crop: int = opt(derived=lambda read: read["width"], minimum=1)
    max_ratio: float = opt(derived=_per_width("max_crop"), minimum=0)
    min_ratio: float = opt(derived=_per_width("min_crop"), minimum=0)
    center: int = opt(0)
    clip: float = opt(0.0)
    letter_box: int = opt(0, minimum=0, maximum=1)   # AlexeyAB's key: letterbox in its `-ab` mode (pjreddie always does)
    angle: float = opt(0.0)
    aspect: float = opt(1.0)
    saturation: float = opt(1.0)
    exposure: float = opt(1.0)
    hue: float = opt(0.0)
    policy: str = opt("constant", choices=POLICIES)
    burn_in: int = opt(0, minimum=0)
    power: float = opt(4.0)
    step: int = opt(1, minimum=1, when=_policy_in("step", "sigmoid"))
    scale: float = opt(1.0, when=_policy_in("step"))
    steps: list[int] = opt([], required=True, when=_policy_in("steps"))
    scales: list[float] = opt([], required=True, when=_policy_in("steps"))
    gamma: float = opt(1.0, when=_policy_in("exp", "sigmoid"))
    max_batches: int = opt(0, minimum=0)
    # DARKNET(AlexeyAB parser.c:parse_net_options): read whatever the policy; only `sgdr` uses them
    learning_rate_min: float = opt(0.00001)
    sgdr_cycle: int = opt(derived=lambda read: read["max_batches"])
    sgdr_mult: int = opt(2)
    max_chart_loss: float = opt(20.0, minimum=0, nonzero=True)   # AlexeyAB: the loss axis of chart.png
    # DARKNET(AlexeyAB parser.c:parse_net_options): its training-time augmentation keys, nothing at inference;
    # data/augment_ab.py and data/mosaic.py apply them to [yolo] nets trained under AlexeyAB's dialect
    flip: int = opt(1)
    blur: int = opt(0, minimum=0)
    gaussian_noise: int = opt(0)
    mixup: int = opt(0, minimum=0, maximum=4)   # AlexeyAB's codes: 1 mixup, 2 cutmix, 3 mosaic, 4 both
    cutmix: int = opt(0)
    mosaic: int = opt(0)
    mosaic_bound: int = opt(0)
    # DARKNET(AlexeyAB parser.c:parse_net_options): multi-scale sizes are multiples of it (read as a float into an int)
    resize_step: float = opt(32.0, minimum=1)
    ema_alpha: float = opt(0.0)   # DARKNET(AlexeyAB parser.c:parse_net_options): an EMA of the weights in training

    @classmethod
    def from_section(cls, section: Section) -> "NetOptions":
        return read_options(cls, section)

    def check(self, section: Section) -> None:
        if self.batch < self.subdivisions:
            raise section.error(f"batch={self.batch} must be at least subdivisions={self.subdivisions} >= 1")
        if len(self.steps) != len(self.scales):
            # DIVERGES: Darknet reads as many scales as there are steps, past the end of a shorter list
            raise section.error(f"steps= lists {len(self.steps)} values but scales= lists {len(self.scales)}",
                                "scales")

    @property
    def mini_batch(self) -> int:
        """DARKNET(parser.c:parse_net_options): Darknet's net->batch is batch/subdivisions*time_steps."""
        return self.batch // self.subdivisions * self.time_steps

    @property
    def images_per_update(self) -> int:
        """Images per weight update: one training iteration, the unit of `max_batches` and `steps`.

        DARKNET(network.c:get_current_batch): net->batch * net->subdivisions, i.e. the cfg batch rounded
        down to a multiple of subdivisions (batch=10, subdivisions=3 gives 9), times time_steps.
        """
        return self.mini_batch * self.subdivisions


@dataclass
class LayerFlags:
    """Options any section may carry (DARKNET(parser.c:parse_network_cfg), after each layer)."""

    stopbackward: int = opt(0)
    dontsave: int = opt(0)
    dontload: int = opt(0)
    learning_rate: float = opt(1.0)   # a per-layer learning-rate scale
    onlyforward: int = opt(0)

    UNSUPPORTED = ("numload", "truth", "smooth", "dontloadscales")

    @classmethod
    def from_section(cls, section: Section) -> "LayerFlags":
        return read_options(cls, section)

    def check(self, section: Section) -> None:
        for key in self.UNSUPPORTED:
            if section.get_float(key, 0):
                raise section.error(f"'{key}' is not supported", key)


@dataclass
class RegionOptions:
    """Every `[region]` key, named as in the cfg (DARKNET(parser.c:parse_region) defaults)."""

    coords: int = opt(4)
    classes: int = opt(20, minimum=1)
    num: int = opt(1, minimum=1)
    log: int = opt(0)
    sqrt: int = opt(0)
    softmax: int = opt(0)
    background: int = opt(0)
    max: int = opt(30, minimum=0)   # DARKNET(parser.c:parse_region): `max` truths per image
    jitter: float = opt(0.2, minimum=0)
    rescore: int = opt(0)
    thresh: float = opt(0.5)
    classfix: int = opt(0)
    absolute: int = opt(0)
    random: int = opt(0)
    coord_scale: float = opt(1.0)
    object_scale: float = opt(1.0)
    noobject_scale: float = opt(1.0)
    mask_scale: float = opt(1.0)
    class_scale: float = opt(1.0)
    bias_match: int = opt(0)
    tree: str | None = opt(read=False)   # path of a WordTree file (resolved by the builder)
    map: str | None = opt(read=False)    # path of a class map file (resolved by the builder)
    # flat w0,h0,w1,h1,... in grid cells; the builder fills Darknet's .5 default once num is checked
    anchors: list[float] = opt([])

    @classmethod
    def from_section(cls, section: Section) -> "RegionOptions":
        return read_options(cls, section)

    def check(self, section: Section) -> None:
        if self.coords < 4:
            raise section.error(f"coords={self.coords}: the region layer needs at least x, y, w, h", "coords")
        if self.background:
            raise section.error("background=1 region layers are not supported", "background")
        check_anchors(section, self.anchors, self.num)


def check_anchors(section: Section, anchors: list[float], num: int) -> None:
    """A CfgError when `anchors=` lists fewer than the 2*num numbers a detection layer reads (none: defaults)."""
    if anchors and len(anchors) < 2 * num:
        raise section.error(f"anchors lists {len(anchors)} numbers, need 2*num = {2 * num}", "anchors")


FLT_MAX = 3.4028234663852886e38   # C's FLT_MAX: AlexeyAB's "no limit" default of max_delta


@dataclass(frozen=True)
class YoloOptions:
    """Every `[yolo]` key, named as in the cfg, with AlexeyAB's defaults (DARKNET(AlexeyAB parser.c:parse_yolo);
    pjreddie's parse_yolo reads the first keys only, with max=90). Keys for training, tracking and printing
    change nothing at inference; they are read so that they are not reported as unused."""

    classes: int = opt(20, minimum=0)
    num: int = opt(1, minimum=1)            # anchors in `anchors` (all [yolo] layers together)
    mask: list[int] = opt([], minimum=0)    # the anchors this layer predicts; empty: all `num`
    max: int = opt(200, minimum=0)          # truths per image (pjreddie: 90)
    show_details: int = opt(1)
    max_delta: float = opt(FLT_MAX)
    counters_per_class: list[int] = opt([])
    label_smooth_eps: float = opt(0.0)
    scale_x_y: float = opt(1.0)
    objectness_smooth: int = opt(0)
    new_coords: int = opt(0, minimum=0, maximum=1)
    iou_normalizer: float = opt(0.75)
    obj_normalizer: float = opt(1.0)
    cls_normalizer: float = opt(1.0)
    delta_normalizer: float = opt(1.0)
    # DIVERGES: AlexeyAB takes any other name as "iou" (and iou_thresh_kind as "iou" after a message); here an error
    iou_loss: str = opt("mse", choices=("mse", "iou", "giou", "diou", "ciou"))
    iou_thresh_kind: str = opt("iou", choices=("iou", "giou", "diou", "ciou"))
    beta_nms: float = opt(0.6)
    # DARKNET(AlexeyAB parser.c:parse_yolo): only greedynms and diounms differ; cornersnms runs the default NMS
    nms_kind: str = opt("default", choices=("default", "greedynms", "diounms", "cornersnms"))
    jitter: float = opt(0.2)
    resize: float = opt(1.0)
    focal_loss: int = opt(0)
    ignore_thresh: float = opt(0.5)
    truth_thresh: float = opt(1.0)
    iou_thresh: float = opt(1.0)
    random: float = opt(0.0)
    track_history_size: int = opt(5)
    sim_thresh: float = opt(0.8)
    dets_for_track: int = opt(1)
    dets_for_show: int = opt(1)
    track_ciou_norm: float = opt(0.01)
    embedding_layer: int = opt(999999)      # DARKNET(AlexeyAB parser.c:parse_yolo): 999999 = none
    map: str = opt("")                      # a class map file (name only; detections do not use it)
    anchors: list[float] = opt([])          # flat w0,h0,w1,h1,... in pixels of the net input

    @classmethod
    def from_section(cls, section: Section) -> "YoloOptions":
        return read_options(cls, section)

    def check(self, section: Section) -> None:
        if any(m >= self.num for m in self.mask):
            raise section.error(f"mask={','.join(map(str, self.mask))} names an anchor past num={self.num}", "mask")
        check_anchors(section, self.anchors, self.num)
        if self.counters_per_class and len(self.counters_per_class) != self.classes:
            # DARKNET(AlexeyAB parser.c:get_classes_multipliers): one counter per class, else an error
            raise section.error(f"counters_per_class lists {len(self.counters_per_class)} numbers, need "
                                f"classes = {self.classes}", "counters_per_class")

    @property
    def used_mask(self) -> list[int]:
        """DARKNET(parser.c:parse_yolo): without `mask` the layer predicts every anchor."""
        return list(self.mask) if self.mask else list(range(self.num))


@dataclass
class DetectionOptions:
    """Every YOLOv1 `[detection]` key, named as in the cfg (DARKNET(parser.c:parse_detection) defaults)."""

    coords: int = opt(1)
    classes: int = opt(1, minimum=1)
    rescore: int = opt(0)
    num: int = opt(1, minimum=1)
    side: int = opt(7, minimum=1)
    softmax: int = opt(0)
    sqrt: int = opt(0)
    max: int = opt(90, minimum=0)   # DARKNET(parser.c:parse_detection): read quietly, as `max_boxes`
    coord_scale: float = opt(1.0)
    forced: int = opt(0)
    object_scale: float = opt(1.0)
    noobject_scale: float = opt(1.0)
    class_scale: float = opt(1.0)
    jitter: float = opt(0.2, minimum=0)
    random: int = opt(0)
    reorg: int = opt(0)

    @classmethod
    def from_section(cls, section: Section) -> "DetectionOptions":
        return read_options(cls, section)

    def check(self, section: Section) -> None:
        if self.coords != 4:
            # DIVERGES: Darknet builds it, but detection_layer.c:get_detection_detections steps over the boxes 4 by 4
            raise section.error(f"coords={self.coords}: a [detection] layer's boxes are x, y, w, h (coords=4)",
                                "coords")

    @property
    def outputs(self) -> int:
        """DARKNET(detection_layer.c:make_detection_layer): side*side*((1+coords)*num + classes) values."""
        return self.side * self.side * ((1 + self.coords) * self.num + self.classes)
