"""The live view over HTTP: a page, an MJPEG stream, the latest result as JSON, a health check.

``edge-classify --camera … --serve [HOST:]PORT`` starts a :class:`LiveServer`
and calls :meth:`LiveServer.publish` after every classified frame. A browser
on a phone or laptop then shows what the camera sees and what the model says,
on a Pi that has no screen.

Endpoints (every one needs ``?token=…`` when the server requires a token):

- ``GET /``: the page: the live picture, the top-k labels with scores, the
  frame rate and inference time, polling ``/predictions`` by itself.
- ``GET /stream.mjpg``: ``multipart/x-mixed-replace`` JPEG frames with the
  top-1 label and the frame rate drawn on them.
- ``GET /predictions``: the latest result, the keys of a ``--json`` line
  (``source``, ``top_k``, ``latency_ms``) plus ``frame`` and ``fps``.
- ``GET /healthz``: 200 while frames arrive, 503 before the first one, when
  none came for ``stale_s`` seconds, or once the run ends.

Design: the camera loop must never wait for a browser. :meth:`publish` only
stores the newest frame and result under a lock (copying the frame only while
someone watches the stream). Each stream client runs in its own handler thread
and takes the newest frame when it is ready for one, skipping the frames in
between; JPEG encoding happens in those threads, once per published frame
whatever the number of clients, and at most ``stream_fps`` times a second per
client. A stalled client blocks only its own thread, until the socket timeout
drops it.

Only the standard library's HTTP server and OpenCV's JPEG encoder are used;
OpenCV is imported when the first frame is encoded.
"""

from __future__ import annotations

import errno
import hmac
import html
import ipaddress
import json
import logging
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from string import Template
from urllib.parse import parse_qs, quote, urlsplit

import numpy as np

from edge_runtime.annotate import FrameRate, caption, draw_lines
from edge_runtime.errors import EdgeError

DEFAULT_HOST = "127.0.0.1"
BOUNDARY = "edge-classify-frame"

log = logging.getLogger(__name__)


class ServeError(EdgeError, RuntimeError):
    """The live view cannot be served (the port is in use, the address is not this machine's)."""


def parse_address(text: str) -> tuple[str, int]:
    """``--serve``'s ``[HOST:]PORT`` → ``(host, port)``; HOST defaults to 127.0.0.1.

    An IPv6 host is written in brackets (``[::]:8080``). Port 0 picks a free port.

    Raises:
        ValueError: not a port number in 0-65535, or an empty host.
    """
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host = ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [::]:8080")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: expected [HOST:]PORT with a port number 0-65535, "
                         "e.g. 8080 or 0.0.0.0:8080")
    return host or DEFAULT_HOST, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) is reachable from this machine only."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback
                               for info in infos)


def _names_loopback(host_header: str) -> bool:
    """Whether a request's Host header names this machine by a loopback name or address.

    Literal only, no DNS: a web page that re-points its own domain at 127.0.0.1 (DNS
    rebinding) sends its domain here, and must not read a token-less server.
    """
    if not host_header:
        return True  # not a browser: browsers always send Host
    name = urlsplit(f"//{host_header}").hostname or ""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _is_wildcard(host: str) -> bool:
    return host in ("", "0.0.0.0", "::")


def machine_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses, best effort, for the URLs to print."""
    found: set[str] = set()
    try:
        found.update(info[4][0] for info in
                     socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET))
    except OSError:
        pass
    # the address of the interface the default route uses: connect() on a UDP socket
    # only picks a route, it sends nothing
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.254.254.254", 9))
            found.add(probe.getsockname()[0])
    except OSError:
        pass
    return sorted(a for a in found if not ipaddress.ip_address(a).is_loopback)


@dataclass
class _Published:
    seq: int
    """Publish count, from 1: a client compares it with the last one it sent."""
    at: float
    """``time.monotonic()`` when it was published."""
    result: dict
    """The ``/predictions`` object."""
    frame: np.ndarray | None
    """A copy of the BGR frame; None when nobody watched the stream as it came."""


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
        title: the page's title.
    """

    def __init__(self, host: str = DEFAULT_HOST, port: int = 0, token: str | None = None,
                 require_token: bool | None = None, max_clients: int = 4,
                 stream_fps: float = 15.0, stale_s: float = 5.0, jpeg_quality: int = 80,
                 client_timeout_s: float = 10.0, title: str = "edge-classify") -> None:
        if token is not None and not token:
            raise ValueError("the token is empty")
        if max_clients < 1 or stream_fps <= 0:
            raise ValueError("max_clients and stream_fps must be positive")
        self.host = host
        self.port = port
        if require_token is None:
            require_token = token is not None or not is_loopback(host)
        self.token = (token or secrets.token_urlsafe(16)) if require_token else None
        """The token requests need, None when none is needed."""
        self.max_clients = max_clients
        self.stream_interval = 1.0 / stream_fps
        self.stale_s = stale_s
        self.jpeg_quality = jpeg_quality
        self.client_timeout_s = client_timeout_s
        self.title = title
        self._cond = threading.Condition()  # guards everything below, and wakes stream clients
        self._latest: _Published | None = None
        self._closed = False
        self._closing = threading.Event()  # set with _closed; streams sleep on it between frames
        self._streams = 0
        self._connections: set[socket.socket] = set()
        self._rate = FrameRate(30)
        self._encode_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] | None = None  # (seq, JPEG) of the last frame encoded
        self.frames_encoded = 0
        """JPEG encodings done so far (one per published frame at most)."""
        self.encode_failures = 0
        """Frames whose JPEG encoding failed (each tried once, then skipped)."""
        self._unencodable = 0  # seq of the newest frame that failed to encode
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> LiveServer:
        """Bind and serve on a background thread; returns self.

        Raises:
            ServeError: the port is in use, or the address is not one of this machine's.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        server_class = type("_Server", (_HTTPServer,), {"address_family": family})
        try:
            self._httpd = server_class((self.host, self.port), _Handler, self)
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            if exc.errno == errno.EADDRINUSE:
                raise ServeError(f"cannot serve on {where}: the port is in use (pick another "
                                 "with --serve [HOST:]PORT)") from None
            if exc.errno == errno.EACCES:
                raise ServeError(f"cannot serve on {where}: permission denied (ports below "
                                 "1024 need root; pick one above, e.g. 8080)") from None
            raise ServeError(f"cannot serve on {where}: {exc.strerror or exc}") from None
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name=f"live view :{self.port}", daemon=True)
        self._thread.start()
        return self

    def urls(self, hide_token: bool = False) -> list[str]:
        """The URLs to open, token included; on a wildcard address one per machine address.

        Args:
            hide_token: write ``?token=…`` instead of the token (for a log that others read,
                when the user has the token already: a file, an environment variable).
        """
        hosts = [self.host]
        if _is_wildcard(self.host):
            hosts = machine_addresses() + [socket.gethostname()]
        query = "?token=…" if hide_token and self.token else self.query()
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}/{query}" for h in hosts]

    def query(self) -> str:
        """``?token=…`` for URLs when a token is required, else ``""``."""
        return f"?token={quote(self.token, safe='')}" if self.token else ""

    def close(self) -> None:
        """Stop serving and close every client connection; safe to call twice."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            self._cond.notify_all()
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

    # ------------------------------------------------------------------------- producer side

    def publish(self, number: int, frame_bgr: np.ndarray, result: dict) -> None:
        """Make frame ``number`` and its ``--json`` result the latest; never waits on clients.

        Args:
            number: the frame's number in its source.
            frame_bgr: the frame, BGR as OpenCV gives it. It is copied (only while a
                stream is watched) so the caller may draw on it afterwards.
            result: the frame's ``result_json`` object (``source``, ``top_k``, ``latency_ms``).
        """
        self._rate.tick()
        fps = self._rate.fps()
        copy = frame_bgr.copy() if self._streams else None  # a racy read is fine: one frame late
        with self._cond:
            seq = self._latest.seq + 1 if self._latest else 1
            self._latest = _Published(seq, time.monotonic(),
                                      {**result, "frame": number, "fps": round(fps, 2)}, copy)
            self._cond.notify_all()

    # ------------------------------------------------------------------------- client side

    def authorized(self, token: str | None) -> bool:
        """Whether a request carrying ``token`` (None: none) may be served."""
        if self.token is None:
            return True
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def health(self) -> tuple[bool, dict]:
        """``(healthy, the /healthz object)``."""
        with self._cond:
            latest, closed = self._latest, self._closed
        if closed:
            return False, {"ok": False, "reason": "the stream ended"}
        if latest is None:
            return False, {"ok": False, "reason": "no frame yet"}
        age = time.monotonic() - latest.at
        body = {"ok": age <= self.stale_s, "frame": latest.result["frame"],
                "seconds_since_frame": round(age, 3)}
        if age > self.stale_s:
            body["reason"] = f"no frame for {age:.1f} s"
        return age <= self.stale_s, body

    def latest_result(self) -> dict | None:
        """The ``/predictions`` object, None before the first frame."""
        with self._cond:
            return self._latest.result if self._latest else None

    def _enter_stream(self) -> bool:
        with self._cond:
            if self._streams >= self.max_clients or self._closed:
                return False
            self._streams += 1
            return True

    def _leave_stream(self) -> None:
        with self._cond:
            self._streams -= 1

    def next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest frame published after ``after`` as ``(seq, JPEG bytes)``, waiting for one.

        Returns None after ``timeout`` seconds without a new frame, or once closed.
        Each frame is encoded once, by the first client that asks, and shared. A frame
        that cannot be encoded is skipped, for every client, and never tried again: the
        clients wait for the next one instead of retrying it in a loop.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                def ready() -> bool:
                    return self._closed or (self._latest is not None
                                            and self._latest.seq > max(after, self._unencodable)
                                            and self._latest.frame is not None)
                if (not self._cond.wait_for(ready, deadline - time.monotonic())
                        or self._closed):
                    return None
                latest = self._latest
            with self._encode_lock:
                if self._jpeg is not None and self._jpeg[0] >= latest.seq:
                    return self._jpeg  # another client encoded it (or a newer one) meanwhile
                if self._unencodable >= latest.seq:
                    continue  # another client failed to encode it meanwhile
                jpeg = self._encode(latest)
                if jpeg is None:
                    self._unencodable = latest.seq
                    continue
                self._jpeg = (latest.seq, jpeg)
                self.frames_encoded += 1
                return self._jpeg

    def _encode(self, latest: _Published) -> bytes | None:
        """``latest``'s frame, captioned, as JPEG; None (said once in the log) when that fails."""
        try:
            import cv2

            top = latest.result["top_k"][0] if latest.result["top_k"] else None
            # the stored copy is this server's own and encoded once, so draw on it directly
            image = draw_lines(latest.frame, caption(top["label"] if top else None,
                                                     top["score"] if top else 0.0,
                                                     latest.result["fps"]))
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise ValueError("cv2.imencode returned no image")
            return jpeg.tobytes()
        except Exception as exc:  # cv2.error, a frame of an odd shape or type, no OpenCV
            self.encode_failures += 1
            if self.encode_failures == 1:  # once: the journal is no place for a line a frame
                log.warning(f"live view: frame {latest.result['frame']} could not be encoded "
                            f"as JPEG ({type(exc).__name__}: {exc}); such frames are skipped")
            return None

    def page(self) -> str:
        """The HTML of ``GET /``."""
        return _PAGE.substitute(title=html.escape(self.title), query=self.query())


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a handler still writing must not keep the program alive

    def __init__(self, address: tuple[str, int], handler: type, live: LiveServer) -> None:
        self.live = live
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        # a browser closing its tab mid-stream is normal, not a traceback on stderr
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            print(f"live view: serving {client_address[0]} failed: "
                  f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "edge-classify"
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads

    def setup(self) -> None:
        self.timeout = self.server.live.client_timeout_s  # applied to the socket by setup()
        super().setup()
        with self.server.live._cond:
            self.server.live._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.live._cond:
                self.server.live._connections.discard(self.connection)

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

    def do_GET(self) -> None:
        live = self.server.live
        url = urlsplit(self.path)
        token = parse_qs(url.query).get("token", [None])[0]
        if not live.authorized(token):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: open the URL with ?token=... that "
                                             "edge-classify printed when it started")
            return
        if live.token is None and not _names_loopback(self.headers.get("Host", "")):
            self._text(HTTPStatus.FORBIDDEN, "403 forbidden: without a token this server answers "
                                             "requests for localhost or 127.0.0.1 only")
            return
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, live.page().encode(), "text/html; charset=utf-8")
        elif url.path == "/predictions":
            result = live.latest_result()
            if result is None:
                self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no frame yet"})
            else:
                self._json(HTTPStatus.OK, result)
        elif url.path == "/healthz":
            healthy, body = live.health()
            self._json(HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE, body)
        elif url.path == "/stream.mjpg":
            self._stream()
        else:
            self._text(HTTPStatus.NOT_FOUND, "404 not found: try /, /stream.mjpg, /predictions "
                                             "or /healthz")

    def _stream(self) -> None:
        live = self.server.live
        if not live._enter_stream():
            self._text(HTTPStatus.SERVICE_UNAVAILABLE,
                       f"503: {live.max_clients} viewers already watch; try again later")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            sent = 0
            while not live._closed:
                item = live.next_jpeg(sent, timeout=1.0)
                if item is None:
                    continue
                started = time.monotonic()
                sent, jpeg = item
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                                 f"Content-Length: {len(jpeg)}\r\n\r\n".encode() + jpeg + b"\r\n")
                # the frame-rate cap: frames published meanwhile are skipped, not queued
                pause = started + live.stream_interval - time.monotonic()
                if pause > 0:
                    live._closing.wait(pause)
        except OSError:
            pass  # the client went away, stalled past the timeout, or close() shut the socket
        finally:
            live._leave_stream()


_PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>$title</title>
<style>
  :root { color-scheme: dark; --accent: #4fc3f7; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 16px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         background: #111; color: #eee; }
  header { padding: .6rem 1rem; background: #1c1c1c; display: flex; flex-wrap: wrap;
           gap: .3rem 1rem; align-items: baseline; }
  header h1 { font-size: 1.1rem; margin: 0; }
  #source { color: #aaa; font-size: .9rem; overflow-wrap: anywhere; }
  #status { margin-left: auto; font-size: .9rem; }
  #status.live::before { content: "\\25CF "; color: #66bb6a; }
  #status.down::before { content: "\\25CF "; color: #ef5350; }
  main { display: flex; flex-wrap: wrap; gap: 1rem; padding: 1rem; align-items: flex-start; }
  #view { flex: 1 1 420px; max-width: 960px; }
  #view img { width: 100%; height: auto; display: block; background: #000; border-radius: 6px;
              image-rendering: auto; min-height: 120px; }
  #panel { flex: 1 1 260px; max-width: 480px; }
  ol { list-style: none; padding: 0; margin: 0 0 1rem; }
  li { margin: 0 0 .7rem; }
  .row { display: flex; justify-content: space-between; gap: .5rem; }
  .label { font-weight: 600; overflow-wrap: anywhere; }
  li:first-child .label { font-size: 1.35rem; color: var(--accent); }
  .score { font-variant-numeric: tabular-nums; color: #ccc; }
  .bar { height: 6px; background: #333; border-radius: 3px; margin-top: .25rem; }
  .bar span { display: block; height: 100%; background: var(--accent); border-radius: 3px; }
  dl { display: grid; grid-template-columns: auto 1fr; gap: .2rem 1rem; margin: 0;
       font-variant-numeric: tabular-nums; }
  dt { color: #aaa; }
  dd { margin: 0; }
</style>
</head>
<body>
<header><h1>$title</h1><span id="source"></span><span id="status">connecting…</span></header>
<main>
  <div id="view"><img id="live" alt="live camera picture"></div>
  <section id="panel">
    <ol id="topk"></ol>
    <dl>
      <dt>frame rate</dt><dd id="fps">-</dd>
      <dt>inference</dt><dd id="ms">-</dd>
      <dt>frame</dt><dd id="frame">-</dd>
    </dl>
  </section>
</main>
<script>
const query = "$query";
const $$ = (id) => document.getElementById(id);
function status(text, ok) { $$("status").textContent = text; $$("status").className = ok ? "live" : "down"; }
function show(r) {
  const source = r.source.replace(/#\\d+$$/, "");
  if ($$("source").textContent !== source) {
    $$("source").textContent = source;
    document.title = "$title · " + source;
  }
  $$("fps").textContent = r.fps.toFixed(1) + " FPS";
  $$("ms").textContent = r.latency_ms.toFixed(1) + " ms";
  $$("frame").textContent = r.frame;
  const list = $$("topk");
  list.replaceChildren(...r.top_k.map((p) => {
    const li = document.createElement("li"), row = document.createElement("div");
    const label = document.createElement("span"), score = document.createElement("span");
    const bar = document.createElement("div"), fill = document.createElement("span");
    row.className = "row"; label.className = "label"; score.className = "score"; bar.className = "bar";
    label.textContent = p.label; score.textContent = (100 * p.score).toFixed(1) + " %";
    fill.style.width = (100 * p.score).toFixed(1) + "%";
    row.append(label, score); bar.append(fill); li.append(row, bar);
    return li;
  }));
}
async function poll() {
  try {
    const response = await fetch("predictions" + query, {cache: "no-store"});
    if (response.ok) { show(await response.json()); status("live", true); }
    else status(response.status === 503 ? "waiting for the camera…" : "error " + response.status, false);
  } catch (e) { status("disconnected", false); }
  setTimeout(poll, 500);
}
function connect() { $$("live").src = "stream.mjpg" + query + (query ? "&" : "?") + "t=" + Date.now(); }
// reconnect the picture after the server restarts or the network drops
$$("live").addEventListener("error", () => setTimeout(connect, 2000));
// start the endless stream after the page has loaded, so "load" is not held up by it
window.addEventListener("load", () => { connect(); poll(); });
</script>
</body>
</html>
""")
