"""The live view over HTTP (``edge-classify --camera … --serve``), by job:

- :mod:`~edge_runtime.live.network`: ``--serve``'s ``[HOST:]PORT``, loopback, this machine's
  addresses;
- :mod:`~edge_runtime.live.publisher`: the newest frame and result, handed from the camera
  loop to the clients, each frame encoded as JPEG once;
- :mod:`~edge_runtime.live.server`: the HTTP server and its endpoints;
- ``static/index.html``: the page (package data).
"""

from edge_runtime.live.network import is_loopback, parse_address
from edge_runtime.live.server import BOUNDARY, LiveServer, ServeError

__all__ = ["BOUNDARY", "LiveServer", "ServeError", "is_loopback", "parse_address"]
