"""What a ``--camera`` value and a ``--camera-size`` mean: the one grammar of both.

The ``--camera`` grammar::

    (no value), auto   the Raspberry Pi camera module when Picamera2 imports and lists one,
                       else V4L2 camera 0
    picam, picam:N     Raspberry Pi camera N through Picamera2 (camera modules on libcamera)
    imx500             the Raspberry Pi AI Camera, running the bundle's imx500 network on its
                       sensor (--model BUNDLE/imx500/packerOut.zip; auto picks it when the
                       bundle has that variant and the AI Camera is connected)
    N, /dev/videoN     V4L2 camera N through OpenCV (USB webcams)
    FILE               a video file, every frame in order
    rtsp://..., http(s)://...   a network stream, through OpenCV's FFmpeg backend

Parsing opens nothing; :func:`edge_runtime.sources.open_source.open_source` opens what a spec names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edge_runtime.errors import CameraError

DEFAULT_SIZE = (640, 480)
"""(width, height) asked of a camera unless ``--camera-size`` says otherwise."""

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
"""``--camera`` values OpenCV's FFmpeg backend opens as network streams."""

_V4L2_DEVICE = re.compile(r"/dev/video([0-9]+)")


@dataclass(frozen=True)
class CameraSpec:
    """A parsed ``--camera`` value.

    Attributes:
        kind: "auto", "picam", "imx500", "v4l2", "file" or "url".
        index: the camera number for "picam" and "v4l2".
        target: the file path or URL for "file" and "url"; for "imx500", the network
            (``packerOut.zip`` or ``.rpk``) once the command line has resolved it.
    """

    kind: str
    index: int = 0
    target: str = ""


def is_stream_url(value: str) -> bool:
    """True for an ``rtsp(s)://``, ``http://`` or ``https://`` address."""
    return value.strip().lower().startswith(URL_SCHEMES)


def parse_camera(value: str | None) -> CameraSpec:
    """Parse a ``--camera`` value (None or "" is ``auto``); see the module docstring.

    Raises:
        CameraError: ``picam:`` followed by something other than a camera number.
    """
    value = (value or "").strip()
    if value in ("", "auto"):
        return CameraSpec("auto")
    match = re.fullmatch(r"imx500(?::(.+))?", value, flags=re.IGNORECASE)
    if match:  # imx500:NETWORK is what the command line resolves --camera imx500 to
        return CameraSpec("imx500", target=match.group(1) or "")
    match = re.fullmatch(r"picam(?::(.*))?", value, flags=re.IGNORECASE)
    if match:
        number = match.group(1)
        if number is not None and not re.fullmatch(r"[0-9]+", number.strip()):
            raise CameraError(f"--camera {value}: expected picam or picam:N (N a camera number)")
        return CameraSpec("picam", int(number) if number is not None else 0)
    if is_stream_url(value):
        return CameraSpec("url", target=value)
    if re.fullmatch(r"[0-9]+", value):
        return CameraSpec("v4l2", int(value))
    device = _V4L2_DEVICE.fullmatch(value)
    if device:
        return CameraSpec("v4l2", int(device.group(1)))
    return CameraSpec("file", target=value)


def parse_size(text: str) -> tuple[int, int]:
    """A ``--camera-size`` value, ``WxH`` → ``(width, height)``.

    Raises:
        ValueError: not two positive whole numbers joined by ``x``.
    """
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        width, height = DEFAULT_SIZE
        raise ValueError(f"{text!r} is not WIDTHxHEIGHT, e.g. {width}x{height}")
    return int(match.group(1)), int(match.group(2))
