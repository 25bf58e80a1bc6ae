"""`detector train -map`: mAP on the `valid=` list while training, as AlexeyAB's train_detector measures it.

DARKNET(AlexeyAB detector.c:train_detector): the mAP@iou_thresh of the whole `valid=` list (the train list
without one) every `-mAP_epochs` epochs, never more often than every 100 iterations nor before `burn_in`, and at
the last iteration; its report, `mean_average_precision (mAP@0.50) = ...`, and `New best mAP!` with
`<backup>/<cfg>_best.weights` whenever a mAP is at least the best so far (the first one always is).
The detections and the report are those of the run's dialect (`detector map` with or without `-ab`).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data.files import DataConfig, read_list, read_names
from ..dialect import Dialect
from ..errors import DarknetError, DataError
from ..evaluate import metrics
from ..evaluate.scoring import MissingLabelWarning, collect_map_inputs
from ..network import Darknet, network_mode
from ..heads.detector import detection_head

MAP_EVERY_AT_LEAST = 100   # DARKNET(AlexeyAB detector.c:train_detector): calc_map_for_each = fmax(.., 100)
MAP_THRESH = 0.25          # DARKNET(AlexeyAB detector.c:run_detector): -thresh .25, the TP/FP line's threshold
MAP_IOU_THRESH = 0.5       # DARKNET(AlexeyAB detector.c:run_detector): -iou_thresh .5
MAP_POINTS = metrics.ALL_POINTS   # DARKNET(AlexeyAB detector.c:train_detector): validate_detector_map(.., 0, ..)
NOT_MEASURED = -1.0        # DARKNET(AlexeyAB detector.c:train_detector): mean_average_precision = -1


@dataclass(frozen=True)
class MapSchedule:
    """When AlexeyAB measures the mAP: `every` iterations after the last measure (`iter_map`), not before
    `burn_in`, and at `max_batches`."""

    every: int
    burn_in: int
    max_batches: int

    @classmethod
    def of(cls, epochs: int, train_images: int, images_per_update: int, burn_in: int, max_batches: int
           ) -> "MapSchedule":
        # DARKNET(AlexeyAB detector.c:train_detector): mAP_epochs * train_images_num / (batch * subdivisions),
        # an int division
        return cls(max(epochs * train_images // images_per_update, MAP_EVERY_AT_LEAST), burn_in, max_batches)

    def next_at(self, last_measured: int) -> int:
        """next_map_calc: the first iteration measured after `last_measured` (the run's first iteration at first)."""
        return max(last_measured + self.every, self.burn_in)

    def due(self, iteration: int, last_measured: int) -> bool:
        return iteration >= self.next_at(last_measured) or iteration == self.max_batches


class MapDuringTraining:
    """The mAP side of one training run: the schedule, the measure, its printed lines and the best so far.

    Made before the weights are loaded (it reads the lists and names); `last_measured` is then set to the
    iteration the run starts from. `log` prints a line. `measure` returns whether the mAP is a new best (the
    caller writes `_best.weights`).
    """

    def __init__(self, net: Darknet, data: DataConfig, dialect: Dialect, *, epochs: int,
                 log: Callable[[str], None], workers: int = 2, decoder: str = "stb"):
        self.net, self.dialect, self.log, self.workers, self.decoder = net, dialect, log, workers, decoder
        train_list = data.get_path("train")
        self.valid_list, self.paths = _valid_list(data, train_list)
        self.classes = detection_head(net, "detector train -map").classes
        self.names = _names(data, self.classes)
        options = net.options
        self.schedule = MapSchedule.of(epochs, len(read_list(train_list)),
                                       options.images_per_update, options.burn_in, options.max_batches)
        self.last_measured = 0              # iter_map: set to the run's first iteration once the weights are loaded
        self.last = NOT_MEASURED            # mean_average_precision
        self.best = NOT_MEASURED            # best_map
        self.measured: list[tuple[int, float]] = []   # (iteration, mAP) of this run, for the chart

    def status_lines(self) -> list[str]:
        """What AlexeyAB prints before each iteration line under -map."""
        lines = [f" (next mAP calculation at {self.schedule.next_at(self.last_measured)} iterations) "]
        if self.last > 0:
            lines.append(f" Last accuracy mAP@{MAP_IOU_THRESH:0.2f} = {self.last * 100:2.2f} %, "
                         f"best = {self.best * 100:2.2f} % ")
        return lines

    def due(self, iteration: int) -> bool:
        return self.schedule.due(iteration, self.last_measured)

    def measure(self, iteration: int) -> bool:
        """Measure the mAP (eval mode, then back to training), print it as AlexeyAB; True if it is a new best."""
        self.last_measured = iteration
        with warnings.catch_warnings(record=True) as missing, network_mode(self.net, False):
            warnings.simplefilter("always", MissingLabelWarning)
            inputs = collect_map_inputs(self.net, self.paths, self.workers, dialect=self.dialect,
                                        letterbox=self.dialect.letterbox(self.net), decoder=self.decoder)
        if missing:
            self.log(f"Warning: {len(missing)} of {len(self.paths)} images of {self.valid_list} have no label file")
        result = self.dialect.map_evaluation(inputs.detections, inputs.ground_truths, self.classes, MAP_IOU_THRESH, MAP_POINTS,
                          MAP_THRESH)
        for line in self.dialect.map_format(result, self.names):
            self.log(line)
        self.last = result.mean_ap
        self.measured.append((iteration, self.last))
        # DARKNET(AlexeyAB detector.c:train_detector): "\n mean_average_precision (mAP@%0.2f) = %f \n"
        self.log("")
        self.log(f" mean_average_precision (mAP@{MAP_IOU_THRESH:0.2f}) = {self.last:f} ")
        if math.isnan(self.last) or self.last < self.best:
            return False
        self.best = self.last
        self.log("New best mAP!")
        return True


def _valid_list(data: DataConfig, train_list: Path) -> tuple[Path | str, list[str]]:
    """The list -map measures on and its images, or AlexeyAB's advice in a DataError when it cannot be read."""
    # DARKNET(AlexeyAB detector.c:train_detector): valid defaults to the train list
    name = data.get_str("valid", str(train_list))
    try:
        path = data.get_path("valid", str(train_list))
        return path, read_list(path)
    except DarknetError as error:
        # DARKNET(AlexeyAB detector.c:train_detector): "There is no %s file for mAP calculation! Don't use -map flag"
        raise DataError(f"{error}; -map measures the mAP on the list of valid= in {data.path} (the train list "
                        f"without one): set it to a readable list ({name} is not), or leave -map out") from None


def _names(data: DataConfig, classes: int) -> Sequence[str]:
    """The class names of the report; numbers where the .data file names fewer than the net's classes."""
    names_file = data.get_str("names", None)
    names = read_names(data.get_path("names")) if names_file else []
    # DARKNET(AlexeyAB detector.c:train_detector): a names count that differs from classes is printed, not fatal
    return [*names[:classes], *map(str, range(len(names), classes))]
