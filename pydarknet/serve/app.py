"""`pydarknet serve`: one loaded detector answering HTTP requests.

    GET  /             a page to upload an image and see its detections drawn (`page.PAGE`)
    GET  /sample.jpg   an image to try (the shipped data/dog.jpg), which the page's sample link (`/?sample`) sends
    POST /detect       body: an image file's bytes -> Darknet's detections as JSON (`detections_response`)

Requests are served concurrently (a thread each); the image is decoded in the request's thread, and one
lock lets a single request at a time run the net, which PyTorch does not promise to be safe for
concurrent forwards. A body above `max_bytes` is refused before it is read (413); an empty, truncated
or undecodable one gets 400 with a one-line reason; no request can stop the server.
"""
from __future__ import annotations

import json
import logging
import tempfile
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._resources import shipped_root
from ..detections import DetectedObject
from ..dialect import PJREDDIE, Dialect
from ..errors import DarknetError
from ..heads.detector import HIER_THRESH
from ..image import load_image
from ..predict import NMS, detect
from .page import PAGE
from .stream import DEFAULT_HOST, ServerThread, listening_server

log = logging.getLogger("pydarknet")

DEFAULT_PORT = 8080
DEFAULT_MAX_BYTES = 20 * 1024 * 1024   # the largest request body read
REQUEST_TIMEOUT = 30.0                 # seconds a client may take to send its request
UPLOAD_NAME = "the request body"       # how error messages name the uploaded image
SAMPLE_IMAGE = "dog.jpg"               # data/dog.jpg, Darknet's first example


class BadRequest(Exception):
    """A request answered with an HTTP error: its status and a one-line reason."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class DetectionService:
    """What every request shares: the net, its class names, the detection settings and the lock around it."""
    net: Any                         # a Darknet or an InferenceNetwork
    names: Sequence[str]
    thresh: float = 0.5
    hier_thresh: float = HIER_THRESH
    nms: float = NMS
    letterbox: bool | None = None    # None: the dialect's choice for this net
    dialect: Dialect = PJREDDIE

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def detect_image_bytes(self, body: bytes) -> dict[str, Any]:
        """The JSON-ready answer for one image file's bytes; BadRequest when they are not a readable image."""
        image = self._decode(body)
        with self._lock:
            objects = detect(self.net, image, self.thresh, self.hier_thresh, self.nms, self.names, self.letterbox,
                             self.dialect)
        return detections_response(objects, image.shape[1], image.shape[0])


    def _decode(self, body: bytes) -> np.ndarray:
        """The (H, W, 3) uint8 RGB pixels of an image file's bytes, as `load_image` reads them from a file."""
        if not body:
            raise BadRequest(HTTPStatus.BAD_REQUEST, "empty body: send the bytes of an image file")
        # the JPEG decoder reads libjpeg's coefficients from a file: the body is written to a private one
        with tempfile.TemporaryDirectory(prefix="pydarknet-serve-") as folder:
            path = Path(folder) / "upload"
            path.write_bytes(body)
            try:
                return load_image(path, stb_version=self.dialect.stb_version)
            except DarknetError as error:
                reason = str(error).replace(repr(str(path)), UPLOAD_NAME)   # load_image names the file so
                raise BadRequest(HTTPStatus.BAD_REQUEST, " ".join(reason.split())) from None


def detections_response(objects: Sequence[DetectedObject], width: int, height: int) -> dict[str, Any]:
    """POST /detect's answer: the image size and one object per (box, class) above the threshold, in Darknet's
    printing order, with its name, class id, probability, Darknet's printed line, the box relative to the image
    (cxcywh, as Darknet's and AlexeyAB's JSON) and in pixels as Darknet draws it (left, top, right, bottom)."""
    return {"width": width, "height": height, "objects": [
        {"name": obj.name, "class_id": obj.class_id, "confidence": obj.prob, "line": obj.line(),
         "relative_coordinates": dict(zip(("center_x", "center_y", "width", "height"), obj.box_rel)),
         "pixel_box": dict(zip(("left", "top", "right", "bottom"), obj.box_px))} for obj in objects]}


class DetectionServer:
    """`service` over HTTP at host:port (0: a free port, `.port` says which): a context manager (a server
    thread), or `serve_forever` in this thread. `sample`: the image GET /sample.jpg answers (default data/dog.jpg)."""

    def __init__(self, service: DetectionService, port: int = DEFAULT_PORT, host: str = DEFAULT_HOST,
                 max_bytes: int = DEFAULT_MAX_BYTES, sample: str | Path | None = None) -> None:
        self.service, self.host, self.max_bytes = service, host, max_bytes
        self.sample = Path(sample) if sample is not None else shipped_root() / "data" / SAMPLE_IMAGE
        self._server: ThreadingHTTPServer = listening_server(host, port, _handler(self))
        self._thread: ServerThread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def __enter__(self) -> DetectionServer:
        self._thread = ServerThread(self._server, f"pydarknet serve:{self.port}")
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def serve_forever(self) -> None:
        """Serve in this thread until KeyboardInterrupt (Ctrl-C), then close."""
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def close(self) -> None:
        if self._thread is not None:
            self._thread.close()
            self._thread = None
        else:
            self._server.server_close()


def _handler(app: DetectionServer) -> type[BaseHTTPRequestHandler]:
    class DetectHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"   # keep-alive: a program sending many images reuses its connection
        timeout = REQUEST_TIMEOUT

        def do_GET(self) -> None:
            self._answer(self._get)

        def do_POST(self) -> None:
            self._answer(self._post)

        def do_PUT(self) -> None:
            self._answer(self._refuse_method)

        do_DELETE = do_PATCH = do_PUT

        def do_HEAD(self) -> None:
            self._answer(self._refuse_method)

        def _get(self) -> tuple[str, bytes]:
            path = self.path.split("?", 1)[0]
            if path == "/":
                return "text/html; charset=utf-8", PAGE.encode("utf-8")
            if path == "/sample.jpg":
                return "image/jpeg", app.sample.read_bytes()
            if path == "/detect":
                raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, "POST the image bytes to /detect")
            raise BadRequest(HTTPStatus.NOT_FOUND, f"no page {path}: GET / or POST /detect")

        def _post(self) -> tuple[str, bytes]:
            if self.path.split("?", 1)[0] != "/detect":
                raise BadRequest(HTTPStatus.NOT_FOUND if self.path != "/" else HTTPStatus.METHOD_NOT_ALLOWED,
                                 f"POST goes to /detect, not {self.path}")
            answer = app.service.detect_image_bytes(self._body())
            return "application/json", json.dumps(answer).encode("utf-8")

        def _refuse_method(self) -> tuple[str, bytes]:
            raise BadRequest(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served: GET / or POST /detect")

        def handle_expect_100(self) -> bool:
            """`Expect: 100-continue` (curl's way with large bodies): refuse an oversized one before it is sent."""
            length = self.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > app.max_bytes:
                self._answer(self._body)
                return False
            return super().handle_expect_100()

        def _body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length, not a chunked body")
            length = self.headers.get("Content-Length")
            if length is None:
                raise BadRequest(HTTPStatus.LENGTH_REQUIRED, "no Content-Length: send the image bytes as the body")
            if not length.strip().isdigit():
                raise BadRequest(HTTPStatus.BAD_REQUEST, f"Content-Length {length!r} is not a byte count")
            if int(length) > app.max_bytes:
                raise BadRequest(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 f"body of {int(length)} bytes is above the limit of {app.max_bytes} bytes")
            body = self.rfile.read(int(length))
            if len(body) < int(length):
                raise BadRequest(HTTPStatus.BAD_REQUEST,
                                 f"body ended after {len(body)} of its {int(length)} bytes")
            return body

        def _answer(self, route) -> None:
            try:
                content_type, payload = route()
                status = HTTPStatus.OK
            except BadRequest as refused:
                status, content_type = refused.status, "application/json"
                payload = json.dumps({"error": str(refused)}).encode("utf-8")
                self.close_connection = True   # the body of a refused request may not have been read
            except Exception as error:   # a bug must not take the server down: answer 500 and log it
                log.exception(f"pydarknet serve: {self.command} {self.path} failed")
                status, content_type = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
                payload = json.dumps({"error": f"internal error: {type(error).__name__}: {error}"}).encode("utf-8")
                self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            if status == HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "POST" if self.path.startswith("/detect") else "GET")
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        def log_message(self, format: str, *args) -> None:
            log.debug(f"serve: {self.address_string()} {format % args}")

    return DetectHandler
