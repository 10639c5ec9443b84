"""Which frame source ``--camera`` means, and which cameras this machine has.

The ``--camera`` grammar::

    (no value), auto   the Raspberry Pi camera module when Picamera2 imports and lists one,
                       else V4L2 camera 0
    picam, picam:N     Raspberry Pi camera N through Picamera2 (camera modules on libcamera)
    N, /dev/videoN     V4L2 camera N through OpenCV (USB webcams)
    FILE               a video file, every frame in order
    rtsp://..., http(s)://...   a network stream, through OpenCV's FFmpeg backend

Picamera2 is imported only for ``picam``, ``auto`` and ``--list-cameras``.
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.camera import FrameGrabber, FrameSource, is_stream_url, parse_source
from edge_runtime.errors import CameraError

DEFAULT_SIZE = (640, 480)
"""(width, height) asked of a camera unless ``--camera-size`` says otherwise."""

V4L2_SYSFS = Path("/sys/class/video4linux")
"""Where Linux names each ``/dev/videoN`` device."""


@dataclass(frozen=True)
class CameraSpec:
    """A parsed ``--camera`` value.

    Attributes:
        kind: "auto", "picam", "v4l2", "file" or "url".
        index: the camera number for "picam" and "v4l2".
        target: the file path or URL for "file" and "url".
    """

    kind: str
    index: int = 0
    target: str = ""


def parse_camera(value: str | None) -> CameraSpec:
    """Parse a ``--camera`` value (None or "" is ``auto``); see the module docstring.

    Raises:
        CameraError: ``picam:`` followed by something other than a camera number.
    """
    value = (value or "").strip()
    if value in ("", "auto"):
        return CameraSpec("auto")
    match = re.fullmatch(r"picam(?::(.*))?", value, flags=re.IGNORECASE)
    if match:
        number = match.group(1)
        if number is not None and not number.strip().isdigit():
            raise CameraError(f"--camera {value}: expected picam or picam:N (N a camera number)")
        return CameraSpec("picam", int(number) if number is not None else 0)
    if is_stream_url(value):
        return CameraSpec("url", target=value)
    source = parse_source(value)
    if isinstance(source, int):
        return CameraSpec("v4l2", source)
    return CameraSpec("file", target=source)


def camera_size(text: str) -> tuple[int, int]:
    """argparse type of ``--camera-size``: ``WxH`` → (width, height)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 640x480")
    return int(match.group(1)), int(match.group(2))


def _auto_picamera(quiet: bool) -> int | None:
    """The number of the first camera module Picamera2 lists, None without Picamera2 or one.

    Raises:
        PicameraBroken: Picamera2 is installed but does not import: a broken install is said,
            never passed over for another camera.
    """
    from edge_runtime.picamera import PicameraBroken, is_usb, picamera_cameras

    try:
        cameras = picamera_cameras(quiet)
    except PicameraBroken:
        raise
    except CameraError:
        return None
    # libcamera lists USB webcams too; those stream better as V4L2 (MJPG)
    modules = [info for info in cameras if not is_usb(info)]
    return int(modules[0].get("Num", 0)) if modules else None


def open_source(value: str | None, size: tuple[int, int] = DEFAULT_SIZE,
                quiet: bool = True, loop: bool = False) -> FrameSource:
    """Open the frame source a ``--camera`` value names (not started yet).

    Args:
        value: the ``--camera`` value (None: auto).
        size: (width, height) asked of a camera; files and streams keep their own.
        quiet: keep OpenCV's and libcamera's logs quiet while opening.
        loop: a video file starts over at its end (cameras and streams have none).

    Raises:
        CameraError: it cannot be opened (including Picamera2 missing for ``picam``).
    """
    spec = parse_camera(value)
    if spec.kind == "auto":
        number = _auto_picamera(quiet)
        spec = CameraSpec("picam", number) if number is not None else CameraSpec("v4l2", 0)
    if spec.kind == "picam":
        from edge_runtime.picamera import PicameraSource

        return PicameraSource(spec.index, size, quiet)
    if spec.kind == "v4l2":
        return FrameGrabber(spec.index, quiet=quiet, size=size)
    return FrameGrabber(spec.target, quiet=quiet, loop=loop)


def v4l2_devices(sysfs: Path = V4L2_SYSFS) -> list[tuple[str, str]]:
    """``(/dev/videoN, name)`` for each V4L2 device Linux knows, in number order."""
    if not sysfs.is_dir():
        return []
    found = []
    for entry in sysfs.iterdir():
        match = re.fullmatch(r"video(\d+)", entry.name)
        if not match:
            continue
        try:
            name = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            name = "?"
        found.append((int(match.group(1)), f"/dev/{entry.name}", name))
    return [(device, name) for _, device, name in sorted(found)]


def list_cameras(sysfs: Path = V4L2_SYSFS, quiet: bool = True) -> list[str]:
    """What ``edge-classify --list-cameras`` prints: each camera and the ``--camera`` for it.

    Raises:
        PicameraBroken: Picamera2 is installed but does not import (what to fix, in one line).
    """
    from edge_runtime.picamera import INSTALL_HINT, PicameraBroken, is_usb, picamera_cameras

    lines = ["Raspberry Pi cameras (Picamera2):"]
    try:
        cameras = picamera_cameras(quiet)
    except PicameraBroken:
        raise
    except CameraError as exc:
        reason = str(exc).split(";")[0]
        lines.append(f"  none: {reason}; to use a camera module, {INSTALL_HINT}")
    else:
        if not cameras:
            lines.append("  none listed")
        for info in cameras:
            number = info.get("Num", "?")
            where = info.get("Id") or info.get("Location") or ""
            usb = " (a USB camera: --camera N through V4L2 works too)" if is_usb(info) else ""
            lines.append(f"  --camera picam:{number:<4} {info.get('Model', '?')}  {where}{usb}")
    lines.append("V4L2 devices (OpenCV):")
    devices = v4l2_devices(sysfs)
    if not devices:
        lines.append(f"  none ({sysfs} lists no video device)" if os.name == "posix"
                     else "  not listed on this system (try --camera 0)")
    for device, name in devices:
        number = device.removeprefix("/dev/video")
        lines.append(f"  --camera {number:<9} {device}  {name}")
    return lines
