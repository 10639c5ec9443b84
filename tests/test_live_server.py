"""The browser live view: LiveServer's endpoints, its safety rules, --serve and --loop on the
command line, and the page rendered by a real headless Chromium. All traffic stays on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from common.labels import read_labels
from edge_runtime.commands.classify import main
from edge_runtime.live import BOUNDARY, LiveServer, ServeError, is_loopback, parse_address
from tests.helpers import demo_images, write_video

REPO = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
RESULT = {"source": "clip.avi#7", "top_k": [{"label": "tulips", "index": 4, "score": 0.875},
                                            {"label": "roses", "index": 2, "score": 0.125}],
          "latency_ms": 3.25}
# never a proxy: every request in this file goes to 127.0.0.1
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, timeout: float = 10.0) -> tuple[int, dict, bytes]:
    """``(status, headers, body)`` of a GET, whatever the status."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def grey_frame(height: int = 240, width: int = 320, value: int = 90) -> np.ndarray:
    return np.full((height, width, 3), value, np.uint8)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def server():
    """A started server on 127.0.0.1 that demands a token anyway (as on 0.0.0.0)."""
    live = LiveServer("127.0.0.1", 0, token=TOKEN, require_token=True, max_clients=2,
                      stream_fps=100, client_timeout_s=2.0).start()
    yield live
    live.close()


def url(live: LiveServer, path: str, token: str | None = TOKEN) -> str:
    return f"http://127.0.0.1:{live.port}{path}" + (f"?token={token}" if token else "")


def open_stream(live: LiveServer, token: str = TOKEN) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    connection.request("GET", f"/stream.mjpg?token={token}")
    return connection.getresponse()


def read_part(response: http.client.HTTPResponse) -> bytes:
    """The next JPEG of a multipart/x-mixed-replace response."""
    line = b""
    for _ in range(10):  # blank lines may precede the boundary
        line = response.readline()
        if line.strip():
            break
    assert line.strip() == f"--{BOUNDARY}".encode(), line
    headers = {}
    while (line := response.readline().strip()):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    assert headers["content-type"] == "image/jpeg"
    body = response.read(int(headers["content-length"]))
    assert response.read(2) == b"\r\n"
    return body


def decode(jpeg: bytes) -> np.ndarray:
    import cv2

    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


# ----------------------------------------------------------------------------- addresses, token

@pytest.mark.parametrize("text, expected", [("8080", ("127.0.0.1", 8080)),
                                            ("0.0.0.0:80", ("0.0.0.0", 80)),
                                            ("localhost:0", ("localhost", 0)),
                                            ("[::1]:9000", ("::1", 9000)),
                                            (":8080", ("127.0.0.1", 8080))])
def test_parse_address(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["", "x", "host:", "70000", "::1:80", "127.0.0.1:-1"])
def test_parse_address_rejects_bad_values(text):
    with pytest.raises(ValueError, match="PORT|brackets"):
        parse_address(text)


def test_a_token_is_made_up_off_loopback_only():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    assert LiveServer("127.0.0.1").token is None
    first, second = LiveServer("0.0.0.0").token, LiveServer("0.0.0.0").token
    assert first and second and first != second and len(first) >= 20
    assert LiveServer("0.0.0.0", token="mine").token == "mine"
    assert LiveServer("127.0.0.1", token="mine").token == "mine"  # given: always asked for


@pytest.mark.parametrize("path", ["/", "/stream.mjpg", "/predictions", "/healthz", "/nope"])
def test_every_request_needs_the_token(server, path):
    server.publish(1, grey_frame(), RESULT)
    for token in (None, "wrong", TOKEN[:-1]):
        status, _, body = get(url(server, path, token))
        assert status == 403, (path, token)
        assert b"token" in body and TOKEN.encode() not in body
    if path != "/stream.mjpg":  # the stream never ends: its turn is below
        assert get(url(server, path))[0] == (404 if path == "/nope" else 200)


def test_loopback_without_a_token_serves_everyone():
    with LiveServer("127.0.0.1", 0) as live:
        live.publish(1, grey_frame(), RESULT)
        assert live.urls() == [f"http://127.0.0.1:{live.port}/"]
        assert get(url(live, "/predictions", None))[0] == 200


def test_loopback_without_a_token_refuses_other_host_names():
    # a web page that re-points its own domain at 127.0.0.1 (DNS rebinding) must read nothing
    with LiveServer("127.0.0.1", 0) as live:
        live.publish(1, grey_frame(), RESULT)
        for host, expected in [("evil.example:80", 403), (f"localhost:{live.port}", 200),
                               (f"127.0.0.1:{live.port}", 200), ("[::1]:8080", 200)]:
            connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=5)
            connection.request("GET", "/predictions", headers={"Host": host})
            assert connection.getresponse().status == expected, host
            connection.close()


def test_wildcard_address_prints_a_url_with_the_token():
    live = LiveServer("0.0.0.0", 8123)
    urls = live.urls()
    assert urls and all(u.endswith(f":8123/?token={live.token}") for u in urls)
    assert not any("0.0.0.0" in u for u in urls)


# ----------------------------------------------------------------------------- endpoints

def test_predictions_are_the_json_line_plus_frame_and_fps(server):
    assert get(url(server, "/predictions"))[0] == 503  # nothing classified yet
    for number in (5, 6, 7):
        server.publish(number, grey_frame(), RESULT)
    status, headers, body = get(url(server, "/predictions"))
    assert status == 200 and headers["Content-Type"] == "application/json"
    result = json.loads(body)
    assert set(result) == {"source", "top_k", "latency_ms", "frame", "fps"}
    assert result["top_k"] == RESULT["top_k"] and result["source"] == RESULT["source"]
    assert result["frame"] == 7 and result["fps"] > 0


def test_healthz_follows_the_camera(monkeypatch):
    now = [100.0]  # the publisher's clock, moved by hand: no sleeping, no race with the load
    with LiveServer("127.0.0.1", 0, stale_s=5.0) as live:
        monkeypatch.setattr(live.publisher, "clock", lambda: now[0])
        status, _, body = get(url(live, "/healthz", None))
        assert status == 503 and json.loads(body)["reason"] == "no frame yet"
        live.publish(1, grey_frame(), RESULT)
        now[0] += 5.0  # as old as may be
        status, _, body = get(url(live, "/healthz", None))
        assert status == 200 and json.loads(body) == {"ok": True, "frame": 1,
                                                       "seconds_since_frame": 5.0}
        now[0] += 0.5  # the camera stopped delivering
        status, _, body = get(url(live, "/healthz", None))
        assert status == 503 and json.loads(body)["reason"] == "no frame for 5.5 s"
        live.publish(2, grey_frame(), RESULT)
        assert get(url(live, "/healthz", None))[0] == 200


class _PageLinks(HTMLParser):
    """The endpoints a page names: ``src``/``href`` attributes and ``data-*`` of its tags."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if value and (name in ("src", "href") or name.startswith("data-")):
                self.links[f"{tag} {name}"] = value


def test_the_page_names_endpoints_the_server_has_and_carries_no_token(server):
    server.publish(1, grey_frame(), RESULT)
    status, headers, body = get(url(server, "/"))
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    parser = _PageLinks()
    parser.feed(body.decode())
    endpoints = {key: value for key, value in parser.links.items()
                 if not value.startswith("data:")}  # the favicon is inline
    assert endpoints == {"body data-stream": "stream.mjpg",
                         "body data-predictions": "predictions"}
    # each one, relative to the page, answers with what the page's script expects of it
    status, headers, body = get(url(server, "/" + endpoints["body data-predictions"]))
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["frame"] == 1
    response = open_stream(server)  # /stream.mjpg
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    response.close()
    # the page is a static file: the token reaches the endpoints from the page's own URL
    assert TOKEN.encode() not in body


@contextlib.contextmanager
def camera_publishing(live: LiveServer, interval_s: float, frame: np.ndarray | None = None):
    """A stand-in camera thread publishing ``frame`` (default: a grey one) every ``interval_s``
    until the block ends."""
    stop = threading.Event()
    frame = grey_frame() if frame is None else frame

    def camera():
        number = 0
        while not stop.is_set():
            number += 1
            live.publish(number, frame, RESULT)
            time.sleep(interval_s)

    producer = threading.Thread(target=camera, daemon=True)
    producer.start()
    try:
        yield
    finally:
        stop.set()
        producer.join()


def test_stream_sends_jpegs_with_the_top_label_drawn(server):
    with camera_publishing(server, 0.01):
        response = open_stream(server)
        assert response.status == 200
        assert response.headers["Content-Type"] == (
            f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        images = [decode(read_part(response)) for _ in range(3)]
        response.close()
    for image in images:
        assert image.shape == (240, 320, 3)
        # white caption text in the top-left corner; the rest stays the grey of the frame
        assert image[:70, :200].max() > 200
        assert abs(float(image[150:, 200:].mean()) - 90) < 3


def wait_for_viewers(live: LiveServer, count: int) -> None:
    """Until ``count`` stream handlers are counted in (their streams get every frame after)."""
    deadline = time.monotonic() + 30  # a hang guard, not a speed target
    while live.publisher.viewers != count:
        assert time.monotonic() < deadline, f"{live.publisher.viewers} viewers, not {count}"
        time.sleep(0.01)


def test_one_encoding_per_frame_whatever_the_number_of_clients(server):
    server.publish(1, grey_frame(), RESULT)  # nobody watches: not even copied
    first, second = open_stream(server), open_stream(server)
    wait_for_viewers(server, 2)
    server.publish(2, grey_frame(), RESULT)
    assert read_part(first) == read_part(second)
    assert server.publisher.frames_encoded == 1
    first.close()
    second.close()


@pytest.mark.parametrize("failure", ["returns False", "raises"])
def test_a_frame_that_fails_to_encode_is_skipped_not_retried(server, monkeypatch, failure):
    import cv2

    real, calls = cv2.imencode, []

    def imencode(ext, image, params=None):
        calls.append(int(image[-1, -1, 0]))
        if image[-1, -1, 0] == 13:  # the broken frame (below the caption)
            if failure == "raises":
                raise cv2.error("broken frame")
            return False, None
        return real(ext, image, params)

    monkeypatch.setattr(cv2, "imencode", imencode)
    response = open_stream(server)
    wait_for_viewers(server, 1)
    server.publish(1, grey_frame(value=13), RESULT)
    time.sleep(1.0)  # a stream that retried the frame would encode it thousands of times here
    assert calls == [13] and server.publisher.encode_failures == 1
    server.publish(2, grey_frame(value=90), RESULT)  # the stream goes on with the next frame
    assert abs(float(decode(read_part(response))[150:, 200:].mean()) - 90) < 3
    assert calls == [13, 90] and server.publisher.frames_encoded == 1
    response.close()


def test_stream_rate_is_capped():
    with LiveServer("127.0.0.1", 0, stream_fps=5) as live, camera_publishing(live, 0.005):
        response = open_stream(live)
        read_part(response)
        started = time.monotonic()
        for _ in range(4):
            read_part(response)
        elapsed = time.monotonic() - started
        response.close()
    assert elapsed >= 4 * 0.2 * 0.9  # 5 fps, not the ~100 published


def test_clients_beyond_the_cap_get_503(server):
    server.publish(1, grey_frame(), RESULT)
    streams = [open_stream(server) for _ in range(server.publisher.max_viewers)]
    assert all(s.status == 200 for s in streams)
    status, _, body = get(url(server, "/stream.mjpg"))
    assert status == 503 and b"viewers" in body
    assert get(url(server, "/predictions"))[0] == 200  # the cap is on streams only
    streams[0].close()
    for _ in range(50):  # the handler notices the closed socket at its next write
        server.publish(2, grey_frame(), RESULT)
        time.sleep(0.05)
        response = open_stream(server)
        if response.status == 200:
            response.close()
            break
        response.close()
    else:
        pytest.fail("a closed stream never freed its slot")
    for s in streams[1:]:
        s.close()


def test_a_client_stuck_writing_never_holds_up_the_publisher(monkeypatch):
    # a client's socket write held until the end of the test: the camera goes on publishing
    # meanwhile, and the client then gets the newest frame, not the ones in between
    writing, release = threading.Event(), threading.Event()
    real_write = socketserver._SocketWriter.write

    def write(self, data):
        if bytes(data).startswith(f"--{BOUNDARY}".encode()):  # a frame of the stream
            writing.set()
            release.wait(60)
        return real_write(self, data)

    monkeypatch.setattr(socketserver._SocketWriter, "write", write)
    with LiveServer("127.0.0.1", 0, max_clients=1, stream_fps=100) as live:
        try:
            response = open_stream(live)
            wait_for_viewers(live, 1)
            live.publish(1, grey_frame(value=10), RESULT)
            assert writing.wait(30)  # the handler is stuck writing frame 1

            def camera() -> None:
                for number in range(2, 101):
                    live.publish(number, grey_frame(value=number + 100), RESULT)

            producer = threading.Thread(target=camera, daemon=True)
            producer.start()
            producer.join(timeout=30)  # a hang guard: a publish that waits would wait for good
            assert not producer.is_alive() and not release.is_set()
            # the newest result is served meanwhile
            status, _, body = get(url(live, "/predictions", None))
            assert status == 200 and json.loads(body)["frame"] == 100
        finally:
            release.set()
        first, after = decode(read_part(response)), decode(read_part(response))
        response.close()
    assert abs(float(first[150:, 200:].mean()) - 10) < 3  # frame 1, then ...
    assert abs(float(after[150:, 200:].mean()) - 200) < 3  # ... frame 100, the newest


def test_a_stalled_client_is_dropped_and_its_slot_given_to_the_next():
    # one stream slot, taken by a client that asks for the stream and never reads it
    # big noisy frames: each JPEG is hundreds of kB, far beyond the socket buffers
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    with LiveServer("127.0.0.1", 0, max_clients=1, stream_fps=100,
                    client_timeout_s=1.0) as live, camera_publishing(live, 0.01, frame):
        stalled = socket.create_connection(("127.0.0.1", live.port), timeout=5)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(b"GET /stream.mjpg HTTP/1.0\r\n\r\n")
        wait_for_viewers(live, 1)
        # the stalled client is dropped after its timeout, and its slot goes to the next one
        deadline = time.monotonic() + 30  # a hang guard
        while time.monotonic() < deadline:
            response = open_stream(live)
            if response.status == 200:
                assert decode(read_part(response)).shape == frame.shape
                response.close()
                break
            response.close()
            time.sleep(0.2)
        else:
            pytest.fail("the stalled client kept its slot")
        stalled.close()


def test_close_ends_every_connection_and_the_port(server):
    response = open_stream(server)
    wait_for_viewers(server, 1)
    server.publish(1, grey_frame(), RESULT)  # a stream gets the frames published after it began
    read_part(response)
    closing = threading.Thread(target=server.close, daemon=True)
    closing.start()
    closing.join(timeout=30)  # a hang guard
    assert not closing.is_alive()
    # the stream ends: the connection is closed (end of file), no part comes after frame 1;
    # a connection left open would time out here instead (the client waits 10 s)
    try:
        rest = response.read()
    except ConnectionResetError:
        rest = b""
    except http.client.IncompleteRead as exc:
        rest = exc.partial
    assert rest == b""
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    server.close()  # twice is fine


def test_a_busy_port_is_a_serve_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ServeError, match="in use"):
            LiveServer("127.0.0.1", taken.getsockname()[1]).start()


# ----------------------------------------------------------------------------- command line

@pytest.fixture()
def images(demo_dir) -> list[Path]:
    return demo_images(demo_dir)


@pytest.fixture()
def video(tmp_path, images) -> Path:
    return write_video(tmp_path / "clip.avi", images, frames=12)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_busy_port_exits_2_with_one_line(capfd, bundle, video):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["--model", str(bundle / "model_int8.tflite"), "--camera", str(video),
                     "--headless", "--serve", f"127.0.0.1:{port}"])
    out, err = capfd.readouterr()
    assert code == 2 and out == ""
    assert f"127.0.0.1:{port}" in _one_line(err) and "in use" in err


@pytest.mark.parametrize("extra, message", [
    (["IMAGE", "--serve", "8080"], "--camera only"),
    (["IMAGE", "--loop"], "--camera only"),
    (["--camera", "0", "--loop"], "video file"),
    (["--camera", "VIDEO", "--serve-token", "x"], "--serve only"),
    (["--camera", "VIDEO", "--serve", "8080", "--serve-token", ""], "empty"),
    (["--camera", "VIDEO", "--serve", "host:port"], "[HOST:]PORT"),
    (["--camera", "VIDEO", "--serve", "8080", "--serve-fps", "0"], "positive"),
    (["--camera", "VIDEO", "--serve-token-file", "TOKEN_FILE"], "--serve only"),
    (["--camera", "VIDEO", "--serve", "8080", "--serve-token", "x", "--serve-token-file",
      "TOKEN_FILE"], "not both"),
    (["--camera", "VIDEO", "--serve", "8080", "--serve-token-file", "MISSING"], "cannot read"),
    (["--camera", "VIDEO", "--serve", "8080", "--serve-token-file", "EMPTY"], "is empty"),
])
def test_serve_usage_errors_exit_2(capfd, bundle, images, video, tmp_path, extra, message):
    files = {"TOKEN_FILE": tmp_path / "token", "EMPTY": tmp_path / "empty",
             "MISSING": tmp_path / "missing"}
    files["TOKEN_FILE"].write_text(TOKEN + "\n")
    files["EMPTY"].write_text(" \n")
    extra = [str(images[0]) if a == "IMAGE" else str(video) if a == "VIDEO"
             else str(files[a]) if a in files else a for a in extra]
    code = main(["--model", str(bundle / "model_int8.tflite"), *extra])
    _, err = capfd.readouterr()
    assert code == 2 and message in _one_line(err)


class _Recorded(LiveServer):
    """A LiveServer that keeps every instance the command line makes, to look at its token."""

    made: list[LiveServer] = []

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.made.append(self)


@pytest.mark.parametrize("given", ["file", "environment"])
def test_a_token_from_a_file_or_the_environment_stays_out_of_the_log(capfd, bundle, video,
                                                                      tmp_path, monkeypatch,
                                                                      given):
    from edge_runtime.stream import camera_run

    monkeypatch.setattr(camera_run, "LiveServer", _Recorded)
    monkeypatch.setattr(_Recorded, "made", [])
    argv = ["--model", str(bundle / "model_int8.tflite"), "--camera", str(video), "--headless",
            "--json", "--max-frames", "2", "--serve", "127.0.0.1:0"]
    if given == "file":
        token_file = tmp_path / "serve-token"
        token_file.write_text(f"{TOKEN}\n")
        token_file.chmod(0o600)
        argv += ["--serve-token-file", str(token_file)]
        source = str(token_file)
    else:
        source = "$EDGE_SERVE_TOKEN"
    monkeypatch.setenv("EDGE_SERVE_TOKEN", TOKEN)  # the file wins over the variable
    code = main(argv)
    out, err = capfd.readouterr()
    assert code == 0 and [live.token for live in _Recorded.made] == [TOKEN]
    assert TOKEN not in out + err
    assert f"live view: http://127.0.0.1:{_Recorded.made[0].port}/?token=…" in err
    assert f"the token (…) is the one in {source}" in err


def test_an_empty_token_variable_is_a_usage_error(capfd, bundle, video, monkeypatch):
    monkeypatch.setenv("EDGE_SERVE_TOKEN", " ")
    code = main(["--model", str(bundle / "model_int8.tflite"), "--camera", str(video),
                 "--headless", "--serve", "127.0.0.1:0"])
    _, err = capfd.readouterr()
    assert code == 2 and "EDGE_SERVE_TOKEN is set but empty" in _one_line(err)


def test_a_token_file_others_can_read_is_warned_about(capfd, bundle, video, tmp_path):
    token_file = tmp_path / "serve-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    code = main(["--model", str(bundle / "model_int8.tflite"), "--camera", str(video),
                 "--headless", "--max-frames", "1", "--serve", "127.0.0.1:0",
                 "--serve-token-file", str(token_file)])
    _, err = capfd.readouterr()
    assert code == 0 and f"chmod 600 {token_file}" in err and TOKEN not in err


@pytest.mark.parametrize("loop, expected", [(False, 12), (True, 30)])
def test_loop_replays_a_video(capfd, bundle, video, loop, expected):
    argv = ["--model", str(bundle / "model_int8.tflite"), "--camera", str(video), "--headless",
            "--json", "--max-frames", "30"] + (["--loop"] if loop else [])
    code = main(argv)
    out, _ = capfd.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and lines[-1]["summary"]["frames"] == expected
    assert [line["source"] for line in lines[:-1]] == [f"{video}#{n}"
                                                       for n in range(1, expected + 1)]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _start_serving(bundle: Path, video: Path, port: int) -> tuple[subprocess.Popen, list[str]]:
    """``edge-classify --camera VIDEO --serve … --headless --loop --json`` as a child; waits for
    /healthz to say 200 and returns the child with the stderr lines read so far."""
    launcher = ("import sys, runpy; sys.argv = ['edge-classify'] + sys.argv[1:];"
                "runpy.run_module('edge_runtime.commands.classify', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", launcher, "--model",
                              str(bundle / "model_int8.tflite"), "--camera", str(video),
                              "--serve", f"127.0.0.1:{port}", "--serve-token", TOKEN,
                              "--headless", "--loop", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err = [child.stderr.readline() for _ in range(2)]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and child.poll() is None:
        try:
            if get(f"http://127.0.0.1:{port}/healthz?token={TOKEN}", timeout=2)[0] == 200:
                return child, err
        except OSError:
            pass
        time.sleep(0.2)
    child.kill()
    pytest.fail(f"the server never became healthy: {err} {child.stderr.read()}")


def _stop(child: subprocess.Popen) -> tuple[int, str, str]:
    child.send_signal(signal.SIGTERM)
    try:
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    return child.returncode, out, err


def test_page_in_headless_chromium_shows_the_models_labels(bundle, images, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    labels = read_labels(bundle / "labels.txt")
    video = write_video(tmp_path / "clip.avi", images, frames=20, size=(320, 240), fps=10.0)
    port = free_port()
    child, err = _start_serving(bundle, video, port)
    try:
        page = f"http://127.0.0.1:{port}/?token={TOKEN}"
        assert err[0].strip() == f"edge-classify: live view: {page}"
        assert f"ssh -L {port}:127.0.0.1:{port}" in err[1]
        browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                   "--no-proxy-server", f"--user-data-dir={tmp_path / 'profile'}",
                   "--virtual-time-budget=3000"]
        dom = subprocess.run(browser + ["--dump-dom", page], capture_output=True, text=True,
                             timeout=120)
        assert dom.returncode == 0, dom.stderr[-2000:]
        shot = tmp_path / "page.png"
        subprocess.run(browser + [f"--screenshot={shot}", "--window-size=900,600", page],
                       capture_output=True, timeout=120, check=True)
        assert shot.stat().st_size > 10_000
        predictions = json.loads(get(f"http://127.0.0.1:{port}/predictions?token={TOKEN}")[2])
        # --loop plays the 20-frame clip at its own 10 fps: wait until it has started over
        deadline = time.monotonic() + 60
        while predictions["frame"] <= 20 and time.monotonic() < deadline:
            time.sleep(0.2)
            predictions = json.loads(
                get(f"http://127.0.0.1:{port}/predictions?token={TOKEN}")[2])
    finally:
        code, out, rest = _stop(child)
    # the page was filled in by its own script, which passed the page's token on to
    # /predictions (403 without it): the model's labels, the rate, the timing
    top_k = dom.stdout.split('<ol id="topk">')[1].split("</ol>")[0]
    shown = [label for label in labels if f'class="label">{label}<' in top_k]
    assert len(shown) == 3, top_k
    assert " FPS</dd>" in dom.stdout and " ms</dd>" in dom.stdout
    assert re.search(rf'<img id="live"[^>]* src="stream\.mjpg\?t=\d+&amp;token={TOKEN}"',
                     dom.stdout), dom.stdout
    assert predictions["top_k"][0]["label"] in labels
    # SIGTERM ends the run like Ctrl-C: a summary, exit 0, nothing left listening
    assert code == 0 and "Traceback" not in rest, rest
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert summary["frames"] > 20  # it looped over the 20-frame video
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
