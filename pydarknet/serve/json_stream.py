"""AlexeyAB's `-json_port`: each frame's detections as a JSON object, streamed as one growing JSON array.

A client of http://host:port/ reads `[` then one object per frame, separated by `, `, and `]` when the
demo ends: the objects of `detection_json`, which AlexeyAB's network.c:detection_to_json writes.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np

from ..detections import Detection
from ..dialect import DONT_SHOW
from .stream import StreamServer

# DARKNET(AlexeyAB network.c:detection_to_json): get_network_boxes has already applied the real threshold
JSON_THRESH = 0.005


class JsonStreamServer(StreamServer):
    """DARKNET(AlexeyAB http_stream.cpp:JSON_sender): `Content-Type: application/json`, `[\\n` and the current
    frame's object for a new client, then `, \\n` and each later object, `\\n]` when the server closes."""

    content_type = "application/json"

    def first_chunk(self, payload: bytes) -> bytes:
        return b"[\n" + payload

    def next_chunk(self, payload: bytes) -> bytes:
        return b", \n" + payload

    def closing_chunk(self, started: bool) -> bytes:
        return b"\n]" if started else b"[\n]"

    def publish_detections(self, dets: Sequence[Detection], names: Sequence[str], frame_id: int) -> None:
        self.publish(detection_json(dets, names, frame_id).encode("utf-8"))


def detection_json(dets: Sequence[Detection], names: Sequence[str], frame_id: int, filename: str | None = None) -> str:
    """DARKNET(AlexeyAB network.c:detection_to_json): the text of one frame's JSON object, byte for byte.

    One object per (box, class) whose probability is above .005 and whose name does not start with `dont_show`,
    box by box in array order and by class index within a box, with the box relative to the image (cxcywh) and
    `%f` numbers.
    DIVERGES: names and the filename are escaped as JSON strings (AlexeyAB copies them verbatim, so a `"` or a
    Windows path's `\\` broke its JSON).
    """
    head = f'{{\n "frame_id":{frame_id}, \n'
    if filename is not None:
        head += f' "filename":{json.dumps(filename)}, \n'
    objects = [_object_json(j, names[j], det.bbox, det.probs[j]) for det in dets
               for j in np.flatnonzero(det.probs > np.float32(JSON_THRESH)) if not names[j].startswith(DONT_SHOW)]
    return head + ' "objects": [ \n' + ", \n".join(objects) + "\n ] \n}"


def _object_json(class_id: int, name: str, bbox_cxcywh: np.ndarray, prob: float) -> str:
    x, y, w, h = (float(np.float32(v)) for v in bbox_cxcywh)
    return (f'  {{"class_id":{class_id}, "name":{json.dumps(name)}, "relative_coordinates":{{"center_x":{x:f}, '
            f'"center_y":{y:f}, "width":{w:f}, "height":{h:f}}}, "confidence":{float(np.float32(prob)):f}}}')
