"""Addresses for the live view: ``--serve``'s ``[HOST:]PORT``, loopback or not, this machine's
own addresses for the URLs to print, and the Host-header check of a token-less server."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

DEFAULT_HOST = "127.0.0.1"
"""Where ``--serve PORT`` listens: this machine only."""


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


def names_loopback(host_header: str) -> bool:
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


def is_wildcard(host: str) -> bool:
    """Whether ``host`` listens on every interface."""
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
