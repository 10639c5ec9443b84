"""The labelling page's HTTP server (``edge-label``), with the live view's address rules.

It listens on this machine only unless told otherwise (:mod:`edge_runtime.live.network`:
``[HOST:]PORT``, loopback), and every request needs the token the printed URL carries, on
loopback too: labelling moves files, so no other page open in the browser (a request it forges
to 127.0.0.1) and no other user of the machine may do it. Endpoints, each with ``?token=…``:

- ``GET /``: the page (``static/index.html``, package data).
- ``GET /state``: the classes and their keys, the groups left to label (most uncertain first),
  the counts, what undo would undo (:meth:`deploy.label.pending.Pending.state`).
- ``GET /picture?sha=…``: a pending picture's bytes.
- ``POST /label?group=SHA&label=L``: the group whose first picture is SHA into ``INTO/L/``
  (a new class when L is new: its folder is made); ``POST /discard?group=SHA``: into
  ``DIR/discarded/``; ``POST /undo``: the last action put back. Each answers the new state,
  or 400 (a bad label), 404 (no such group: the page reloads its state), 409 (nothing to
  undo, a picture moved away by hand).

Actions are done one at a time (:class:`deploy.label.journal.Journal` journals each first).
"""

from __future__ import annotations

import functools
import hmac
import json
import mimetypes
import secrets
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from importlib import resources
from urllib.parse import parse_qs, quote, urlsplit

from deploy.label.journal import BadLabel, LabelError
from deploy.label.pending import Pending
from edge_runtime.live.http_server import OwnedHTTPServer, serve_in_background
from edge_runtime.live.network import DEFAULT_HOST, is_wildcard, machine_addresses

PAGE = "static/index.html"


class LabelServeError(OSError):
    """The page cannot be served (the port is in use, the address is not this machine's)."""


@functools.cache
def page() -> bytes:
    """The HTML of ``GET /``, read once from the installed package."""
    return resources.files(__package__).joinpath(PAGE).read_bytes()


class LabelServer:
    """Serves the labelling page for ``pending`` (see the module docstring).

    Args:
        pending: the pictures left to label, and the journal that moves them.
        host: the address to listen on (127.0.0.1: this machine only).
        port: the TCP port (0: any free one; :attr:`port` says which).
        token: the token every request must carry; None: a random one.
    """

    def __init__(self, pending: Pending, host: str = DEFAULT_HOST, port: int = 0,
                 token: str | None = None) -> None:
        if token is not None and not token:
            raise ValueError("the token is empty")
        self.pending = pending
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(16)
        self.lock = threading.Lock()
        """One action at a time, and no state read half-way through one."""
        self._httpd: OwnedHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> LabelServer:
        """Bind and serve on a background thread; returns self.

        Raises:
            LabelServeError: the port is in use, or the address is not one of this machine's.
        """
        self._httpd, self._thread = serve_in_background(self.host, self.port, _Handler, self,
                                                         "edge-label", LabelServeError)
        self.port = self._httpd.server_address[1]
        return self

    def urls(self) -> list[str]:
        """The URLs to open, the token included; on a wildcard address one per address."""
        hosts = machine_addresses() + [socket.gethostname()] if is_wildcard(self.host) \
            else [self.host]
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}/?token="
                f"{quote(self.token, safe='')}" for h in hosts]

    def authorized(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def close(self) -> None:
        """Stop serving; safe to call twice."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LabelServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    server_version = "edge-label"
    protocol_version = "HTTP/1.0"
    timeout = 30

    def log_message(self, format: str, *args) -> None:
        pass

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, obj: dict) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _query(self) -> tuple[str, dict[str, str]] | None:
        """The path and the query's first values, or None after answering 403."""
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if not self.server.owner.authorized(query.get("token")):
            self._send(HTTPStatus.FORBIDDEN, b"403 forbidden: open the URL with ?token=... "
                       b"that edge-label printed when it started\n", "text/plain")
            return None
        return url.path, query

    def do_GET(self) -> None:
        asked = self._query()
        if asked is None:
            return
        path, query = asked
        label = self.server.owner
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page(), "text/html; charset=utf-8")
        elif path == "/state":
            with label.lock:
                self._json(HTTPStatus.OK, label.pending.state())
        elif path == "/picture":
            with label.lock:
                where = label.pending.picture(query.get("sha", ""))
            try:
                data = where.read_bytes() if where is not None else None
            except OSError:
                data = None
            if data is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": "no such picture left to label"})
            else:
                kind = mimetypes.guess_type(where.name)[0] or "application/octet-stream"
                self._send(HTTPStatus.OK, data, kind)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": "try /, /state or /picture"})

    def do_POST(self) -> None:
        asked = self._query()
        if asked is None:
            return
        path, query = asked
        label = self.server.owner
        pending, journal = label.pending, label.pending.journal
        with label.lock:
            try:
                if path == "/undo":
                    journal.undo()
                elif path in ("/label", "/discard"):
                    group = pending.group(query.get("group", ""))
                    if group is None:
                        self._json(HTTPStatus.NOT_FOUND, {"error": "no such group left to "
                                                                   "label; reload"})
                        return
                    pictures = [(p.sha256, p.path) for p in group]
                    if path == "/label":
                        pending.add_class(journal.label(pictures, query.get("label", "")).label)
                    else:
                        journal.discard(pictures)
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": "POST /label, /discard or "
                                                               "/undo"})
                    return
            except LabelError as exc:
                pending.refresh()
                self._json(HTTPStatus.BAD_REQUEST if isinstance(exc, BadLabel)
                           else HTTPStatus.CONFLICT,
                           {"error": str(exc), **pending.state()})
                return
            pending.refresh()
            self._json(HTTPStatus.OK, pending.state())
