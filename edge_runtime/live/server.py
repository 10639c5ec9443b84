"""The live view's HTTP server: the page, an MJPEG stream, the latest result as JSON, health.

``edge-classify --camera … --serve [HOST:]PORT`` starts a :class:`LiveServer`
and calls :meth:`LiveServer.publish` after every classified frame. A browser
on a phone or laptop then shows what the camera sees and what the model says,
on a Pi that has no screen.

Endpoints (every one needs ``?token=…`` when the server requires a token):

- ``GET /``: the page (``static/index.html``, package data): the live picture, the top-k
  labels with scores, the frame rate and inference time, polling ``/predictions`` by itself.
- ``GET /stream.mjpg``: ``multipart/x-mixed-replace`` JPEG frames with the
  top-1 label and the frame rate drawn on them, at most ``stream_fps`` a second.
- ``GET /predictions``: the latest result, the keys of a ``--json`` line
  (``source``, ``top_k``, ``latency_ms``) plus ``frame`` and ``fps``, and ``shadow``
  (``{"candidate", "frames", "agreement"}``) while a shadow candidate runs; the page shows it.
- ``GET /healthz``: 200 while frames arrive, 503 before the first one, when
  none came for ``stale_s`` seconds, or once the run ends.
- With a capture panel (``--capture-to DIR``; :mod:`edge_runtime.live.capture_panel`):
  ``GET /capture`` (the labels to offer, pictures per label) and ``POST
  /capture?label=L&count=N`` (save the newest frame, or a burst of N, into ``DIR/L/``: 400
  for a bad label, 507 when ``--max-mb`` or the disk's reserve is reached). Saving writes to
  the device's disk, so a server with a panel always requires the token, even on loopback.

The frames are handed over by a :class:`~edge_runtime.live.publisher.FramePublisher`, so the
camera loop never waits for a browser; a stalled client blocks only its own handler thread,
until the socket timeout drops it. Only the standard library's HTTP server is used.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np

from edge_runtime.errors import EdgeError
from edge_runtime.live.http_server import OwnedHTTPServer, serve_in_background
from edge_runtime.live.network import (
    DEFAULT_HOST,
    is_loopback,
    is_wildcard,
    machine_addresses,
    names_loopback,
)
from edge_runtime.live.publisher import FramePublisher

BOUNDARY = "edge-classify-frame"
"""The multipart boundary between two JPEGs of ``/stream.mjpg``."""

PAGE = "static/index.html"
"""The page, inside this package (installed as package data)."""


class ServeError(EdgeError, RuntimeError):
    """The live view cannot be served (the port is in use, the address is not this machine's)."""


@functools.cache
def page() -> bytes:
    """The HTML of ``GET /``, read once from the installed package."""
    return resources.files(__package__).joinpath(PAGE).read_bytes()


class LiveServer:
    """Serves the live view of a camera run over HTTP (see the module docstring).

    Args:
        host: the address to listen on (127.0.0.1: this machine only; 0.0.0.0: every
            interface).
        port: the TCP port (0: any free one; :attr:`port` says which).
        token: the secret every request must carry as ``?token=``; None: a random one when
            a token is required.
        require_token: None (default): required unless ``host`` is a loopback address, or
            when ``token`` is given. True/False force it (tests use True on 127.0.0.1).
        max_clients: streams served at once; more get 503.
        stream_fps: the most frames a second sent to one stream client.
        stale_s: ``/healthz`` says 503 when no frame came for this long.
        jpeg_quality: OpenCV's JPEG quality, 0-100.
        client_timeout_s: a client that takes no data for this long is dropped.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None,
                 require_token: bool | None = None, max_clients: int = 4,
                 stream_fps: float = 15.0, stale_s: float = 5.0, jpeg_quality: int = 80,
                 client_timeout_s: float = 10.0, capture=None) -> None:
        if token is not None and not token:
            raise ValueError("the token is empty")
        if stream_fps <= 0:
            raise ValueError("stream_fps must be positive")
        self.host = host
        self.port = port
        if require_token is None:
            require_token = token is not None or not is_loopback(host)
        self.capture = capture
        """The capture panel (:class:`~edge_runtime.live.capture_panel.CapturePanel`), or None."""
        if capture is not None:  # saving writes to the disk: never without the token
            require_token = True
        self.token = (token or secrets.token_urlsafe(16)) if require_token else None
        """The token requests need, None when none is needed."""
        self.stream_interval = 1.0 / stream_fps
        self.client_timeout_s = client_timeout_s
        self.publisher = FramePublisher(max_clients, stale_s, jpeg_quality)
        """The newest frame and result, shared by every client."""
        self._connections_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd: OwnedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LiveServer:
        """Bind and serve on a background thread; returns self.

        Raises:
            ServeError: the port is in use, or the address is not one of this machine's.
        """
        self._httpd, self._thread = serve_in_background(self.host, self.port, _Handler, self,
                                                         "live view", ServeError)
        self.port = self._httpd.server_address[1]
        return self

    def urls(self, hide_token: bool = False) -> list[str]:
        """The URLs to open, token included; on a wildcard address one per machine address.

        Args:
            hide_token: write ``?token=…`` instead of the token (for a log that others read,
                when the user has the token already: a file, an environment variable).
        """
        hosts = [self.host]
        if is_wildcard(self.host):
            hosts = machine_addresses() + [socket.gethostname()]
        query = "?token=…" if hide_token and self.token else self.query()
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}/{query}" for h in hosts]

    def query(self) -> str:
        """``?token=…`` for URLs when a token is required, else ``""``."""
        return f"?token={quote(self.token, safe='')}" if self.token else ""

    def publish(self, number: int, frame_bgr: np.ndarray, result: dict) -> None:
        """Show frame ``number`` and its result (see :meth:`FramePublisher.publish`)."""
        if self.capture is not None:  # before anything draws on the frame
            self.capture.offer(frame_bgr)
        self.publisher.publish(number, frame_bgr, result)

    def authorized(self, token: str | None) -> bool:
        """Whether a request carrying ``token`` (None: none) may be served."""
        if self.token is None:
            return True
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def close(self) -> None:
        """Stop serving and close every client connection; safe to call twice."""
        if self.publisher.closed:
            return
        self.publisher.close()
        if self.capture is not None:
            self.capture.close()
        with self._connections_lock:
            connections = list(self._connections)
        if self._httpd is not None:
            if self._thread is not None and self._thread.is_alive():
                self._httpd.shutdown()  # returns once serve_forever's loop has stopped
            for connection in connections:
                try:
                    # wakes a handler blocked writing to a stalled client
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # that client already went
            self._httpd.server_close()

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    server_version = "edge-classify"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads

    def setup(self) -> None:
        self.timeout = self.server.owner.client_timeout_s  # applied to the socket by setup()
        super().setup()
        self.server.owner._track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, False)

    def log_message(self, format: str, *args) -> None:
        pass  # stdout/stderr belong to the classifier's output

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _text(self, status: HTTPStatus, text: str) -> None:
        self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        live = self.server.owner
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path != "/capture" or live.capture is None:
            self._text(HTTPStatus.NOT_FOUND, "404 not found: POST /capture needs a capture "
                                             "panel (--capture-to DIR)")
            return
        # saving writes to the disk: the token, always (a panel makes the server require one)
        if live.token is None or not live.authorized(query.get("token", [None])[0]):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: saving pictures needs ?token=...")
            return
        from edge_runtime.capture.writer import CaptureError, CaptureLimit

        try:
            count = int(query.get("count", ["1"])[0])
            saved = live.capture.save(query.get("label", [""])[0], count)
        except ValueError:
            self._json(HTTPStatus.BAD_REQUEST, {"error": "count must be an integer"})
        except CaptureLimit as exc:
            self._json(HTTPStatus.INSUFFICIENT_STORAGE, {"error": str(exc)})
        except CaptureError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        else:
            self._json(HTTPStatus.OK, {"saved": [p.name for p in saved],
                                       **live.capture.state()})

    def do_GET(self) -> None:
        live = self.server.owner
        url = urlsplit(self.path)
        token = parse_qs(url.query).get("token", [None])[0]
        if not live.authorized(token):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: open the URL with ?token=... that "
                                             "edge-classify printed when it started")
            return
        if live.token is None and not names_loopback(self.headers.get("Host", "")):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: without a token this server answers "
                                             "requests for localhost or 127.0.0.1 only")
            return
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
        elif url.path == "/predictions":
            result = live.publisher.latest_result()
            if result is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
            else:
                self._json(HTTPStatus.OK, result)
        elif url.path == "/healthz":
            healthy, body = live.publisher.health()
            self._json(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif url.path == "/stream.mjpg":
            self._stream()
        elif url.path == "/capture" and live.capture is not None:
            self._json(HTTPStatus.OK, live.capture.state())
        else:
            self._text(HTTPStatus.NOT_FOUND, "404 not found: try /, /stream.mjpg, /predictions "
                                             "or /healthz")

    def _stream(self) -> None:
        live = self.server.owner
        publisher = live.publisher
        if not publisher.add_viewer():
            self._text(HTTPStatus.SERVICE_UNAVAILABLE,
                       f"503: {publisher.max_viewers} viewers already watch; try again later")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            sent = 0
            while not publisher.closed:
                item = publisher.next_jpeg(sent, timeout=1.0)
                if item is None:
                    continue
                started = time.monotonic()
                sent, jpeg = item
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                # the frame-rate cap: frames published meanwhile are skipped, not queued
                pause = started + live.stream_interval - time.monotonic()
                if pause > 0:
                    publisher.wait_closed(pause)
        except OSError:
            pass  # the client went away, stalled past the timeout, or close() shut the socket
        finally:
            publisher.remove_viewer()
