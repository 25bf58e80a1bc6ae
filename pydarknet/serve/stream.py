"""One HTTP server thread that streams the latest published payload to every client (AlexeyAB's senders).

AlexeyAB's `http_stream.cpp` (`MJPG_sender`, `JSON_sender`) answers every connection with `HTTP/1.0 200 OK`
and a few no-cache headers, then writes each new frame to every connected client. `StreamServer` does the
same from a thread per client, so that a slow client only misses frames (it always gets the latest one)
and never slows the publisher; a subclass says how the stream is framed.
"""
from __future__ import annotations

import logging
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO

from ..errors import DarknetError

log = logging.getLogger("pydarknet")

DEFAULT_HOST = "127.0.0.1"   # DIVERGES: AlexeyAB listens on every interface (INADDR_ANY); here only this machine
CLIENT_SEND_TIMEOUT = 10.0   # seconds a client may take to accept one frame before it is dropped

# DARKNET(AlexeyAB http_stream.cpp:MJPG_sender::write): the headers every stream client gets
SERVER_NAME = "Mozarella/2.2"
STREAM_HEADERS = (("Accept-Range", "bytes"), ("Connection", "close"),
                  ("Max-Age", "0"), ("Expires", "0"), ("Cache-Control", "no-cache, private"), ("Pragma", "no-cache"))


class ServeError(DarknetError, OSError):
    """A server that cannot start (port taken, address not here); names the address."""


def listening_server(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer bound to host:port (0: a free port), or a ServeError naming the address."""
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    server.daemon_threads = True   # a client still connected never keeps the program alive
    return server


class ServerThread:
    """A started ThreadingHTTPServer and the thread that runs it; `close()` stops both."""

    def __init__(self, server: ThreadingHTTPServer, name: str) -> None:
        self.server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name=name,
                                        daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


class StreamServer:
    """Streams the latest `publish`ed payload to every client of http://host:port/ (any path).

    A context manager: entering starts the server thread (`port=0` picks a free port, `.port` says
    which), leaving it ends every client's stream and stops the server. `publish` never blocks on a client.
    Subclasses define `content_type` and the framing: `first_chunk`, `next_chunk`, `closing_chunk`.
    """

    content_type = "application/octet-stream"
    resend_every: float | None = None   # seconds without a new payload after which the latest is sent again

    def __init__(self, port: int, host: str = DEFAULT_HOST) -> None:
        self.host = host
        self._requested_port = port
        self._changed = threading.Condition()
        self._published = 0           # how many payloads were published; the latest is `_latest`
        self._latest = b""
        self._closing = False
        self._thread: ServerThread | None = None

    def __enter__(self) -> StreamServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        self._thread = ServerThread(listening_server(self.host, self._requested_port, self._handler()),
                                    f"{type(self).__name__}:{self._requested_port}")
        log.info(f"{type(self).__name__}: http://{self.host}:{self.port}/")

    @property
    def port(self) -> int:
        if self._thread is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._thread.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def publish(self, payload: bytes) -> None:
        """Make `payload` the latest frame: every client gets it next (a client still busy skips to it)."""
        with self._changed:
            self._published += 1
            self._latest = payload
            self._changed.notify_all()

    def close(self) -> None:
        """End every client's stream (with `closing_chunk`) and stop the server."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.close()
            self._thread = None

    def first_chunk(self, payload: bytes) -> bytes:
        return self.next_chunk(payload)

    def next_chunk(self, payload: bytes) -> bytes:
        return payload

    def closing_chunk(self, started: bool) -> bytes:
        """What ends a client's stream; `started`: whether it got a payload."""
        return b""

    def stream_to(self, out: BinaryIO) -> None:
        """Write the latest payload to `out`, then each newer one (or, every `resend_every` seconds without
        one, the latest again), until the server closes."""
        sent = 0
        while True:
            with self._changed:
                news = self._changed.wait_for(partial(self._has_news, sent), timeout=self.resend_every)
                closing = self._closing   # read once, under the lock: the chunk written is the one decided here
                if closing:
                    chunk = self.closing_chunk(started=sent > 0)
                elif news or sent:
                    chunk = self.next_chunk(self._latest) if sent else self.first_chunk(self._latest)
                    sent = self._published
                else:
                    continue   # nothing published yet
            out.write(chunk)
            out.flush()
            if closing:   # a close after this chunk was chosen still gets its closing chunk next round
                return

    def _has_news(self, sent: int) -> bool:
        """Whether a client that got `sent` payloads has something to write (called under `_changed`)."""
        return self._closing or self._published > sent

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stream = self

        class StreamHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"
            server_version, sys_version = SERVER_NAME, ""
            timeout = CLIENT_SEND_TIMEOUT

            def do_GET(self) -> None:
                self.send_response(200)   # the Server header: `server_version`
                for key, value in STREAM_HEADERS:
                    self.send_header(key, value)
                self.send_header("Content-Type", stream.content_type)
                self.end_headers()
                log.debug(f"{type(stream).__name__}: new client {self.client_address[0]}:{self.client_address[1]}")
                try:
                    stream.stream_to(self.wfile)
                except OSError:   # the client went away or stopped reading: AlexeyAB's "kill client"
                    log.debug(f"{type(stream).__name__}: client {self.client_address[1]} dropped")

            def log_message(self, format: str, *args) -> None:
                log.debug(f"{type(stream).__name__}: {format % args}")

        return StreamHandler
