"""AlexeyAB's `-mjpeg_port`: JPEG frames streamed as `multipart/x-mixed-replace`, which a browser shows in an <img>.

    with MjpegServer(8090) as server:        # http://127.0.0.1:8090/ in a browser
        server.publish(encode_jpeg(frame))   # every client gets this frame next
"""
from __future__ import annotations

import cv2
import numpy as np

from .stream import StreamServer

BOUNDARY = "mjpegstream"   # DARKNET(AlexeyAB http_stream.cpp:MJPG_sender::write)
DEMO_JPEG_QUALITY = 40     # DARKNET(AlexeyAB demo.c:demo): send_mjpeg(show_img, port, timeout, 40)
RESEND_SECONDS = 0.5       # a browser shows a part only once the next one comes: a still frame is sent again


class MjpegServer(StreamServer):
    """DARKNET(AlexeyAB http_stream.cpp:MJPG_sender): each client of http://host:port/ gets the published JPEG
    frames as one `multipart/x-mixed-replace; boundary=mjpegstream` response, each part with its
    Content-Type and Content-Length.

    DIVERGES: a new client gets the latest frame at once (AlexeyAB's waits for the next one), and the boundary
    that ends a part is sent with it (AlexeyAB sends it before the next frame), and the latest frame is sent
    again every RESEND_SECONDS while none comes, so that a browser shows the last frame published (the chart of
    a training run, the last frame of a video), however long until the next.
    """

    content_type = f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    resend_every = RESEND_SECONDS

    def publish(self, jpeg: bytes) -> None:
        """Send one JPEG image (its file's bytes) to every client."""
        super().publish(jpeg)

    def first_chunk(self, payload: bytes) -> bytes:
        return f"--{BOUNDARY}\r\n".encode("ascii") + self.next_chunk(payload)

    def next_chunk(self, payload: bytes) -> bytes:
        # the next part's boundary is sent right after each part: a browser shows a part once it sees its end
        head = f"Content-Type: image/jpeg\r\nContent-Length: {len(payload)}\r\n\r\n".encode("ascii")
        return head + payload + f"\r\n--{BOUNDARY}\r\n".encode("ascii")


def encode_jpeg(image_rgb: np.ndarray, quality: int = DEMO_JPEG_QUALITY) -> bytes:
    """A (H, W, 3) uint8 RGB image as the bytes of a JPEG file of this `quality` (1-100)."""
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"cannot encode a {image_rgb.shape} image as JPEG")
    return jpeg.tobytes()
