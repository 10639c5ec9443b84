"""The HTTP server under the live view and under ``edge-label``'s page: bound with one clear
error, served on a background thread, each request on a thread of its own.

Standard library only (``http.server``); what each page serves is its own module's handler.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
from http.server import ThreadingHTTPServer


class OwnedHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows the object it serves for (``owner``, what a handler
    reads as ``self.server.owner``) and says a handler's failure in one line under ``name``."""

    daemon_threads = True  # a handler still writing must not keep the program alive

    def __init__(self, address: tuple[str, int], handler: type, owner: object,
                 name: str) -> None:
        self.owner = owner
        self.name = name
        super().__init__(address, handler)

    def handle_error(self, request, client_address) -> None:
        # a browser closing its tab mid-stream is normal (an OSError), not a traceback
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            print(f"{self.name}: serving {client_address[0]} failed: "
                  f"{type(error).__name__}: {error}", file=sys.stderr, flush=True)


def serve_in_background(host: str, port: int, handler: type, owner: object, name: str,
                        error: type[Exception]) -> tuple[OwnedHTTPServer, threading.Thread]:
    """Bind ``host:port`` (port 0: a free one) and serve on a daemon thread; returns the server
    and its thread.

    Raises:
        error: the port is in use, needs root, or the address is not one of this machine's
            (one line saying which, and what to do).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_class = type("_Server", (OwnedHTTPServer,), {"address_family": family})
    where = f"{host}:{port}"
    try:
        httpd = server_class((host, port), handler, owner, name)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise error(f"cannot serve on {where}: the port is in use (pick another with "
                        "--serve [HOST:]PORT)") from None
        if exc.errno == errno.EACCES:
            raise error(f"cannot serve on {where}: permission denied (ports below 1024 need "
                        "root; pick one above, e.g. 8080)") from None
        raise error(f"cannot serve on {where}: {exc.strerror or exc}") from None
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2},
                              name=f"{name} :{httpd.server_address[1]}", daemon=True)
    thread.start()
    return httpd, thread
