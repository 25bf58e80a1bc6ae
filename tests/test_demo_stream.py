"""`detector demo`'s AlexeyAB options: -mjpeg_port / -json_port streams, -ext_output, -prefix, -c, stream URLs.

Every server here listens on 127.0.0.1 (port 0 or a port just found free), every client read is bounded by a
socket timeout and every loop by a count; the servers are closed by the tests.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FIXTURES
from pydarknet.cli import main
from pydarknet.detections import Detection
from pydarknet.evaluate.video import FrameRate, annotate_video, ext_output_lines, open_capture
from pydarknet.errors import DataError
from pydarknet.network import load_network
from pydarknet.serve.json_stream import JsonStreamServer, detection_json
from pydarknet.serve.mjpeg import BOUNDARY, MjpegServer, encode_jpeg
from pydarknet.serve.stream import ServeError

REPO = Path(__file__).resolve().parent.parent
JSON_FIXTURES = FIXTURES / "alexeyab_json"
CLIENT_TIMEOUT = 30.0   # seconds any client read may wait


def mini(reference: Path, name: str = "mini-yolov2-tiny-voc") -> tuple[Path, Path]:
    return reference / "mini" / f"{name}.cfg", reference / "mini" / f"{name}.weights"


def voc_names() -> list[str]:
    return (REPO / "data" / "voc.names").read_text().split()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---------------------------------------------------------------- AlexeyAB's JSON objects

def read_boxes(path: Path) -> tuple[list[Detection], int]:
    """The detections and frame id of a fixture input (see tests/fixtures/alexeyab_json/README.md)."""
    rows = path.read_text().split("\n")
    classes, _count, frame_id = (int(v) for v in rows[0].split())
    dets = []
    for row in filter(None, rows[1:]):
        values = np.array(row.split(), np.float32)
        dets.append(Detection(values[:4], 1.0, values[4:4 + classes]))
    return dets, frame_id


@pytest.mark.parametrize("boxes, names, filename, expected", [
    ("boxes.txt", ["person", "dont_show_x", "car"], None, "frame7.json"),
    ("boxes.txt", ["a", "b", "c"], "data/dog.jpg", "frame7_filename.json"),
    ("empty.txt", ["a", "b"], None, "empty.json"),
])
def test_detection_json_is_alexeyab_detection_to_json_byte_for_byte(boxes, names, filename, expected):
    dets, frame_id = read_boxes(JSON_FIXTURES / boxes)
    text = detection_json(dets, names, frame_id, filename)
    assert text == (JSON_FIXTURES / expected).read_text()
    json.loads(text)   # and it is JSON


def test_detection_json_escapes_names_alexeyab_would_break_on():
    det = Detection(np.array([.5, .5, .1, .1], np.float32), 1.0, np.array([.9], np.float32))
    assert json.loads(detection_json([det], ['say "hi"'], 3))["objects"][0]["name"] == 'say "hi"'


# ---------------------------------------------------------------- the stream servers

def stream_body(url: str) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    host, port = url.removeprefix("http://").strip("/").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=CLIENT_TIMEOUT)
    connection.request("GET", "/")
    return connection.getresponse(), connection


def read_mjpeg_part(response: http.client.HTTPResponse) -> bytes:
    """One part of a multipart/x-mixed-replace response: its JPEG bytes."""
    assert response.readline() == f"--{BOUNDARY}\r\n".encode()
    headers = {}
    while (line := response.readline()) != b"\r\n":
        key, value = line.decode().split(":", 1)
        headers[key.lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    jpeg = response.read(int(headers["content-length"]))
    assert response.readline() == b"\r\n"
    return jpeg


def frame(level: int) -> np.ndarray:
    image = np.full((48, 64, 3), level, np.uint8)
    image[10:30, 20:40] = (255, 0, 0)
    return image


def decoded(jpeg: bytes) -> np.ndarray:
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def shows(jpeg: bytes, image: np.ndarray) -> bool:
    """Whether a JPEG (quality 40) is `image`, up to its compression."""
    return np.abs(decoded(jpeg).astype(int) - image).mean() < 10


def test_mjpeg_server_streams_the_latest_frame_to_every_client_as_multipart():
    with MjpegServer(0) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}/"
        server.publish(encode_jpeg(frame(10)))
        first, first_connection = stream_body(server.url)
        assert first.status == 200
        assert first.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=mjpegstream"
        assert first.getheader("Cache-Control") == "no-cache, private"
        # a client gets the latest frame as soon as it connects (AlexeyAB's waits for the next)
        assert shows(read_mjpeg_part(first), frame(10))
        server.publish(encode_jpeg(frame(200)))
        late, late_connection = stream_body(server.url)
        for response in (first, late):
            assert shows(read_mjpeg_part(response), frame(200))
        # a still stream sends its last frame again, so that a browser shows it
        started = time.perf_counter()
        assert shows(read_mjpeg_part(late), frame(200))
        assert time.perf_counter() - started < 5
    for response, connection in ((first, first_connection), (late, late_connection)):
        response.read()   # the server closed: the stream ends (bounded by the socket timeout otherwise)
        connection.close()


def test_json_stream_server_sends_one_json_array_of_frames():
    det = Detection(np.array([.5, .5, .2, .2], np.float32), 1.0, np.array([0, .8], np.float32))
    with JsonStreamServer(0) as server:
        server.publish_detections([det], ["a", "b"], 1)
        response, connection = stream_body(server.url)
        assert response.getheader("Content-Type") == "application/json"
        assert response.read(2) == b"[\n"
        first = detection_json([det], ["a", "b"], 1).encode()
        assert response.read(len(first)) == first
        for frame_id in (2, 3):
            server.publish_detections([det], ["a", "b"], frame_id)
            following = b", \n" + detection_json([det], ["a", "b"], frame_id).encode()
            assert response.read(len(following)) == following
    rest = response.read()
    connection.close()
    assert rest == b"\n]"


def test_a_port_in_use_is_one_error_naming_the_address():
    with MjpegServer(0) as server:
        with pytest.raises(ServeError, match=f"cannot listen on 127.0.0.1:{server.port}: "):
            JsonStreamServer(server.port).start()


class StreamReader(threading.Thread):
    """Connects to http://127.0.0.1:port/ as soon as it listens (tries for at most 60 s) and reads to the end."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.body, self.error = port, b"", None
        self.connected = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=CLIENT_TIMEOUT) as client:
                    client.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    self.connected.set()
                    while chunk := client.recv(65536):
                        self.body += chunk
                return
            except ConnectionRefusedError:
                time.sleep(0.02)
            except OSError as error:
                self.error = error
                return


# ---------------------------------------------------------------- demo outputs

def test_ext_output_lines_are_alexeyab_draw_detections_cv_v3():
    names = ["cat", "dog", "dont_show_me"]
    dets = [Detection(np.array([.5, .5, .25, .5], np.float32), .9, np.array([.6, .7, 0], np.float32)),
            Detection(np.array([.05, .9, .3, .4], np.float32), .9, np.array([0, 0, .8], np.float32)),   # not shown
            Detection(np.array([.05, .9, .3, 1.4], np.float32), .9, np.array([0, .345, 0], np.float32))]
    # 640x480 frame: left = (.5-.125)*640 = 240, top = 120, width 160, height 240; the third box starts left of
    # the frame (left clamped to 0), its height is clamped to 1 (480), top = (float32(.9)-.5)*480 = 191.99998,
    # truncated to 191 as C's int conversion does
    assert ext_output_lines(dets, names, .3, 640, 480) == [
        "cat: 60% , dog: 70% \t(left_x:  240   top_y:  120   width:  160   height:  240)",
        "dog: 34% \t(left_x:    0   top_y:  191   width:  192   height:  480)"]


def test_frame_rate_is_alexeyab_running_fps_and_three_second_average():
    now = [0.0]
    rate = FrameRate(clock=lambda: now[0])
    ticks = []
    for _ in range(4):
        now[0] += 1.0   # one frame a second
        ticks.append(rate.tick())
    assert [round(fps, 4) for fps, _ in ticks] == [0.1, 0.19, 0.271, 0.3439]   # .9 fps + .1 * 1
    assert [avg for _, avg in ticks] == [0, 0, 1.0, 1.0]   # 3 frames in the first 3 s


@pytest.fixture(scope="module")
def mini_net(reference):
    return load_network(*mini(reference), "cpu")


def test_demo_sinks_get_every_frame_numbered_from_one_and_drawn(mini_net, video):
    received = []
    stats = annotate_video(mini_net, video, None, voc_names(), thresh=.02, sinks=[received.append])
    assert stats.frames == 10 and [f.frame_id for f in received] == list(range(1, 11))
    assert all(f.image.shape == (120, 160, 3) and f.thresh == .02 for f in received)
    assert any(any((d.probs > .02).any() for d in f.detections) for f in received)   # boxes to draw


def test_demo_streams_frames_and_json_to_clients_connected_before_it_starts(mini_net, video):
    names = voc_names()
    received = []
    with MjpegServer(0) as mjpeg, JsonStreamServer(0) as json_stream:
        readers = [StreamReader(json_stream.port), StreamReader(mjpeg.port)]
        for reader in readers:
            reader.start()
        for reader in readers:
            assert reader.connected.wait(CLIENT_TIMEOUT)
        sinks = [received.append, lambda f: mjpeg.publish(encode_jpeg(f.image)),
                 lambda f: json_stream.publish_detections(f.detections, names, f.frame_id)]
        annotate_video(mini_net, video, None, names, thresh=.05, sinks=sinks)
    for reader in readers:
        reader.join(timeout=CLIENT_TIMEOUT)
    stream = json.loads(readers[0].body.split(b"\r\n\r\n", 1)[1])   # the server closed the array
    ids = [entry["frame_id"] for entry in stream]
    assert ids == sorted(set(ids)) and ids[-1] == 10   # a slow client skips frames, never repeats them
    assert stream[-1] == json.loads(detection_json(received[-1].detections, names, 10))
    assert len(stream[-1]["objects"]) > 0
    parts = readers[1].body.split(f"--{BOUNDARY}\r\n".encode())[1:]
    last = parts[-2].split(b"\r\n\r\n", 1)[1].removesuffix(b"\r\n")   # the last part is empty: the stream ended
    assert last == encode_jpeg(received[-1].image)   # the last frame drawn, as sent


def test_open_capture_names_a_missing_camera_or_stream_in_one_line():
    with pytest.raises(DataError, match=r"^Couldn't connect to stream http://127\.0\.0\.1:\d+/none$"):
        open_capture(f"http://127.0.0.1:{free_port()}/none")
    if not Path("/dev/video7").exists():
        with pytest.raises(DataError, match="^Couldn't connect to webcam 7: OpenCV cannot open camera index 7 "):
            open_capture(7)


# ---------------------------------------------------------------- the command

def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_demo_command_serves_mjpeg_and_json_prints_ext_output_and_saves_prefix_frames(reference, video, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    json_port, mjpeg_port = free_port(), free_port()
    readers = [StreamReader(json_port), StreamReader(mjpeg_port)]
    for reader in readers:
        reader.start()
    result = invoke("detector", "demo", REPO / "cfg" / "voc.data", *mini(reference), video, "-thresh", ".02",
                    "-json_port", json_port, "-mjpeg_port", mjpeg_port, "-prefix", tmp_path / "frame", "-ext_output",
                    "-dont_show")
    for reader in readers:
        reader.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert re.search(r"^10 frames in [\d.]+ s: FPS:[\d.]+$", result.output, re.M)   # no video file named
    assert not (tmp_path / "out.mp4").exists()   # -prefix and the ports replace the default video
    assert sorted(p.name for p in tmp_path.glob("frame_*.jpg")) == [f"frame_{i:08d}.jpg" for i in range(10)]
    assert result.output.count("Objects:\n\n") == 10
    assert re.search(r"^\w+: \d+% .*\t\(left_x: +-?\d+   top_y: +-?\d+   width: +\d+   height: +\d+\)$",
                     result.output, re.M)
    assert re.search(r"^FPS:[\d.]+ \t AVG_FPS:[\d.]+$", result.output, re.M)
    json_body = readers[0].body.split(b"\r\n\r\n", 1)[1]
    assert json.loads(json_body)[-1]["frame_id"] == 10
    mjpeg_head = readers[1].body.split(b"\r\n\r\n", 1)[0].decode()
    assert "Content-Type: multipart/x-mixed-replace; boundary=mjpegstream" in mjpeg_head
    assert readers[1].body.count(b"Content-Type: image/jpeg") >= 1


def test_demo_command_without_camera_is_one_error_line(reference, tmp_path):
    if Path("/dev/video3").exists():
        pytest.skip("this machine has a camera 3")
    result = invoke("detector", "demo", REPO / "cfg" / "voc.data", *mini(reference), "-c", "3",
                    "-out_filename", tmp_path / "cam.mp4")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: Couldn't connect to webcam 3:")
    assert not (tmp_path / "cam.mp4").exists()


def test_demo_command_refuses_a_video_and_a_camera_and_names_a_missing_video(reference, video, tmp_path):
    both = invoke("detector", "demo", REPO / "cfg" / "voc.data", *mini(reference), video, "-c", "0")
    assert both.exit_code == 2 and "both name the frames to read" in both.output
    missing = invoke("detector", "demo", REPO / "cfg" / "voc.data", *mini(reference), tmp_path / "none.mp4")
    assert missing.exit_code == 1 and "none.mp4" in missing.output.splitlines()[-1]


def test_demo_reads_a_stream_url(mini_net, tmp_path):
    """An MJPEG stream over HTTP (our own server), read with OpenCV as a camera's stream would be."""
    names = voc_names()
    received = []
    stop = threading.Event()
    with MjpegServer(0) as source:
        def publish() -> None:
            for i in range(600):   # at most 30 s of frames
                if stop.is_set():
                    return
                source.publish(encode_jpeg(frame(40 + i % 100)))
                time.sleep(0.05)
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()

        def enough(demo_frame) -> None:
            received.append(demo_frame)
            if len(received) == 5:
                source.close()   # the stream closes: the demo ends as AlexeyAB's does ("Stream closed.")
        try:
            stats = annotate_video(mini_net, source.url, tmp_path / "stream.avi", names, sinks=[enough])
        finally:
            stop.set()
            publisher.join(timeout=10)
    assert stats.frames >= 5 and received[0].image.shape == (48, 64, 3)
