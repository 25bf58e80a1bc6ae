"""`pydarknet serve`: POST /detect under load and with malformed requests, the page in headless Chromium,
and the MJPEG stream of `detector demo` in headless Chromium.

Every server listens on 127.0.0.1 and is stopped by its test; every request has a timeout and every loop a
bound. The browser tests need Debian's `chromium` package (`apt-get install -y chromium`) and skip without it.
"""
from __future__ import annotations

import http.client
import json
import lzma
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import FIXTURES, interruptible_by_ctrl_c
from pydarknet import detect
from pydarknet.cli import main
from pydarknet.data.files import read_list, read_names
from pydarknet.data.synth import make_synth
from pydarknet.evaluate.video import annotate_video
from pydarknet.network import load_network
from pydarknet.serve.app import DetectionServer, DetectionService, detections_response
from pydarknet.serve.mjpeg import MjpegServer, encode_jpeg

REPO = Path(__file__).resolve().parent.parent
IMAGES = [REPO / "data" / f"{name}.jpg" for name in ("dog", "horses", "person", "giraffe", "eagle")]
REQUESTS, THREADS = 200, 8
REQUEST_TIMEOUT = 60.0
MAX_BYTES = 1 << 20   # a small limit, so that "too large" is cheap to send
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed "
                                                             "(Debian: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def service(reference):
    net = load_network(reference / "mini" / "mini-yolov2-tiny-voc.cfg",
                       reference / "mini" / "mini-yolov2-tiny-voc.weights", "cpu")
    return DetectionService(net, (REPO / "data" / "voc.names").read_text().split(), thresh=.3)


@pytest.fixture
def server(service):
    with DetectionServer(service, port=0, max_bytes=MAX_BYTES) as running:
        yield running


def post(port: int, body: bytes, path: str = "/detect", method: str = "POST",
         headers: dict[str, str] | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


def expected_answer(service: DetectionService, path: Path) -> dict:
    """What POST /detect must answer for an image file: `pydarknet.detect` on the same file, through JSON."""
    objects = detect(service.net, path, service.thresh, names=service.names)
    image = cv2.imread(str(path))
    return json.loads(json.dumps(detections_response(objects, image.shape[1], image.shape[0])))


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> list[Path]:
    """data/*.jpg at a third of their size (JPEG quality 90): the requests of the load test."""
    folder = tmp_path_factory.mktemp("small")
    paths = []
    for path in IMAGES:
        image = cv2.imread(str(path))
        small = folder / path.name
        cv2.imwrite(str(small), cv2.resize(image, (image.shape[1] // 3, image.shape[0] // 3), cv2.INTER_AREA),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        paths.append(small)
    return paths


@pytest.mark.slow
def test_200_concurrent_requests_answer_what_pydarknet_detect_finds(service, server, small_images):
    expected = {path: expected_answer(service, path) for path in small_images}
    assert sum(len(answer["objects"]) for answer in expected.values()) > 0   # the comparison is not empty
    bodies = {path: path.read_bytes() for path in small_images}

    def client(thread: int) -> list[tuple[Path, int, dict, float]]:
        """One keep-alive connection sending its share of the requests."""
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
        results = []
        for i in range(thread, REQUESTS, THREADS):
            path = small_images[i % len(small_images)]
            start = time.perf_counter()
            connection.request("POST", "/detect", body=bodies[path], headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            answer = json.loads(response.read())
            results.append((path, response.status, answer, time.perf_counter() - start))
        connection.close()
        return results

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        results = [result for share in pool.map(client, range(THREADS)) for result in share]
    seconds = time.perf_counter() - start
    latencies = np.array([latency for *_, latency in results]) * 1000
    errors = sum(status != 200 for _, status, _, _ in results)
    print(f"\nPOST /detect: {len(results)} requests from {THREADS} threads in {seconds:.1f} s, {errors} errors, "
          f"latency p50 {np.percentile(latencies, 50):.0f} ms, p99 {np.percentile(latencies, 99):.0f} ms")
    assert len(results) == REQUESTS and errors == 0
    for path, _, answer, _ in results:
        assert answer == expected[path], path


def test_malformed_requests_get_a_4xx_and_a_one_line_reason_and_the_server_goes_on(server, tmp_path):
    jpeg = IMAGES[0].read_bytes()
    cases = {
        "empty body": (post(server.port, b""), 400, "empty body"),
        "not an image": (post(server.port, b"hello, I am text\n" * 10), 400, "not a readable image"),
        "truncated JPEG": (post(server.port, jpeg[:len(jpeg) // 2]), 400, "truncated JPEG"),
        "no JPEG frame": (post(server.port, jpeg[:3000]), 400, "Cannot load image the request body"),
        "wrong method on /detect": (post(server.port, b"", method="GET"), 405, "POST the image bytes"),
        "PUT": (post(server.port, jpeg, method="PUT"), 405, "PUT is not served"),
        "DELETE": (post(server.port, b"", path="/", method="DELETE"), 405, "DELETE is not served"),
        "POST on the page": (post(server.port, jpeg, path="/"), 405, "POST goes to /detect"),
        "unknown path": (post(server.port, jpeg, path="/upload"), 404, "POST goes to /detect"),
        "unknown page": (post(server.port, b"", path="/admin", method="GET"), 404, "no page /admin"),
        "bad Content-Length": (_raw(server.port, b"POST /detect HTTP/1.1\r\nContent-Length: lots\r\n\r\n"), 400,
                               "is not a byte count"),
        "no Content-Length": (_raw(server.port, b"POST /detect HTTP/1.1\r\nHost: x\r\n\r\n"), 411,
                              "no Content-Length"),
        "chunked": (_raw(server.port, b"POST /detect HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0"
                                      b"\r\n\r\n"), 411, "chunked"),
        # the limit is checked on the header, before a byte of the body is read
        "too large": (_raw(server.port, f"POST /detect HTTP/1.1\r\nContent-Length: {MAX_BYTES + 1}\r\n\r\n".encode()),
                      413, f"body of {MAX_BYTES + 1} bytes is above the limit of {MAX_BYTES} bytes"),
        "too large, Expect: 100-continue": (
            _raw(server.port, f"POST /detect HTTP/1.1\r\nContent-Length: {MAX_BYTES * 50}\r\n"
                              f"Expect: 100-continue\r\n\r\n".encode()), 413, "above the limit"),
        "body shorter than said": (_raw(server.port, b"POST /detect HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc",
                                        shut=True), 400, "body ended after 3 of its 100 bytes"),
    }
    for name, ((status, answer), want_status, reason) in cases.items():
        assert status == want_status, (name, status, answer)
        assert set(answer) == {"error"} and reason in answer["error"] and "\n" not in answer["error"], (name, answer)
    status, answer = post(server.port, jpeg)   # still serving
    assert status == 200 and answer["width"] == 768


def _raw(port: int, request: bytes, shut: bool = False) -> tuple[int, dict]:
    """Send bytes http.client would not send; read one response (`shut`: end the request body early)."""
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as client:
        client.sendall(request)
        if shut:
            client.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(client)
        response.begin()
        return response.status, json.loads(response.read())


def test_the_page_and_the_sample_image_are_served(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    connection.request("GET", "/")
    page = connection.getresponse()
    html = page.read().decode()
    assert page.status == 200 and page.getheader("Content-Type").startswith("text/html")
    assert '<input type="file"' in html and 'fetch("/detect", { method: "POST"' in html
    connection.request("GET", "/sample.jpg")
    sample = connection.getresponse()
    assert sample.status == 200 and sample.read() == (REPO / "data" / "dog.jpg").read_bytes()
    connection.close()


def test_serve_command_listens_answers_and_stops_on_ctrl_c(reference, service):
    command = [sys.executable, "-m", "pydarknet", "serve", reference / "mini" / "mini-yolov2-tiny-voc.cfg",
               reference / "mini" / "mini-yolov2-tiny-voc.weights", "--data", REPO / "cfg" / "voc.data",
               "--port", "0", "-thresh", ".3"]
    process = subprocess.Popen([str(part) for part in command], stderr=subprocess.PIPE, text=True, cwd=REPO,
                               preexec_fn=interruptible_by_ctrl_c)
    try:
        url = None
        for _ in range(200):   # the layer table, then the line with the address
            line = process.stderr.readline()
            if match := re.search(r"Serving \S+ on (http://127\.0\.0\.1:(\d+)/)", line):
                url = match.group(1)
                break
        assert url is not None, "no 'Serving ... on http://...' line"
        status, answer = post(int(match.group(2)), IMAGES[0].read_bytes())
        expected = expected_answer(service, IMAGES[0])   # service: the same net, at .3
        # the command runs the net as every command does, batch norm folded (`InferenceNetwork`): same objects,
        # probabilities and boxes within float32 rounding
        assert status == 200 and [o["line"] for o in answer["objects"]] == [o["line"] for o in expected["objects"]]
        for got, want in zip(answer["objects"], expected["objects"]):
            assert got["confidence"] == pytest.approx(want["confidence"], abs=1e-4)
            assert list(got["relative_coordinates"].values()) == pytest.approx(
                list(want["relative_coordinates"].values()), abs=1e-4)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert "Stopped." in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


# ---------------------------------------------------------------- headless Chromium

def chromium(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--disable-dev-shm-usage", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`make demo`'s trained synth-tiny net (tests/fixtures/demo) and two of its validation images."""
    folder = tmp_path_factory.mktemp("synth")
    weights = folder / "synth-tiny_final.weights"
    weights.write_bytes(lzma.decompress((FIXTURES / "demo" / "synth-tiny_final.weights.xz").read_bytes()))
    data = make_synth(folder / "data", train=1, valid=2, size=256, seed=0)
    names = read_names(data.parent / "synth.names")
    cfg = FIXTURES / "demo" / "synth-tiny.cfg"   # the net those weights were trained as, not today's demo cfg
    return load_network(cfg, weights, "cpu"), names, [Path(p) for p in read_list(data.parent / "valid.txt")]


@pytest.mark.slow
@needs_chromium
def test_chromium_shows_the_page_with_the_detections_of_the_sample(trained, tmp_path):
    net, names, images = trained
    service = DetectionService(net, names, thresh=.5)
    expected = expected_answer(service, images[0])
    assert expected["objects"], "the trained net finds the shapes"
    with DetectionServer(service, port=0, sample=images[0]) as server:
        dom = chromium("--virtual-time-budget=20000", "--dump-dom", f"{server.url}?sample").stdout
        shot = tmp_path / "page.png"
        chromium("--virtual-time-budget=20000", f"--screenshot={shot}", "--window-size=800,700",
                 f"{server.url}?sample")
    assert f'data-detections="{len(expected["objects"])}"' in dom, dom[-2000:]
    assert f"sample.jpg: {len(expected['objects'])} detection(s)" in dom
    for obj in expected["objects"]:
        assert obj["line"] in dom
    print(f"\npage screenshot: {shot}")
    page = cv2.imread(str(shot))
    assert page is not None and page.shape[:2] == (700, 800)
    # the canvas holds the image with the boxes: the page is not only white and text
    assert (np.abs(page.astype(int) - 255).sum(axis=2) > 100).mean() > 0.05


@pytest.mark.slow
@needs_chromium
def test_chromium_shows_the_demo_mjpeg_stream_with_its_boxes(trained, tmp_path):
    net, names, images = trained
    frame = cv2.imread(str(images[0]))
    video = tmp_path / "still.avi"   # one validation image, 5 frames: the 3-frame average has settled
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (frame.shape[1], frame.shape[0]))
    for _ in range(5):
        writer.write(frame)
    writer.release()
    shown = []
    with MjpegServer(0) as mjpeg:
        def send(demo_frame) -> None:
            shown.append(demo_frame)
            mjpeg.publish(encode_jpeg(demo_frame.image))
        annotate_video(net, video, None, names, thresh=.5, sinks=[send])
        page = tmp_path / "stream.html"
        page.write_text(f'<html><body style="margin:0;background:#fff"><img src="{mjpeg.url}"></body></html>')
        shot = tmp_path / "stream.png"
        done = chromium(f"--screenshot={shot}", f"--window-size={frame.shape[1] + 40},{frame.shape[0] + 40}",
                        "--timeout=5000", page.as_uri())
    assert shot.exists(), done.stderr[-2000:]
    print(f"\nstream screenshot: {shot}")
    drawn = shown[-1].image   # the last frame the demo drew, which the stream keeps showing
    assert any((det.probs > .5).any() for det in shown[-1].detections)   # it has boxes drawn
    screen = cv2.cvtColor(cv2.imread(str(shot)), cv2.COLOR_BGR2RGB)[:drawn.shape[0], :drawn.shape[1]]
    assert np.abs(screen.astype(int) - drawn).mean() < 10   # the browser shows the drawn frame (JPEG quality 40)


def test_serve_command_on_a_port_in_use_is_one_error_line(reference):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", str(reference / "mini" / "mini-yolov2-tiny-voc.cfg"),
                                           str(reference / "mini" / "mini-yolov2-tiny-voc.weights"),
                                           "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
