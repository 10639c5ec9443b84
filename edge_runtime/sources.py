"""Opening the frame source a ``--camera`` value names, and listing this machine's cameras.

The grammar of ``--camera`` is :mod:`edge_runtime.camera_spec`'s. Picamera2 is imported only
for ``picam``, ``auto`` and ``--list-cameras``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from edge_runtime.camera_spec import DEFAULT_SIZE, CameraSpec, parse_camera
from edge_runtime.errors import CameraError
from edge_runtime.frame_source import FrameSource
from edge_runtime.opencv_source import OpenCVSource

V4L2_SYSFS = Path("/sys/class/video4linux")
"""Where Linux names each ``/dev/videoN`` device."""


def _auto_picamera(quiet: bool) -> int | None:
    """The number of the first camera module Picamera2 lists, None without Picamera2 or one.

    Raises:
        PicameraBroken: Picamera2 is installed but does not import: a broken install is said,
            never passed over for another camera.
    """
    from edge_runtime.picamera import is_usb, listed_cameras

    # libcamera lists USB webcams too; those stream better as V4L2 (MJPG)
    modules = [info for info in listed_cameras(quiet) if not is_usb(info)]
    return int(modules[0].get("Num", 0)) if modules else None


def open_source(value: CameraSpec | str | None, size: tuple[int, int] = DEFAULT_SIZE,
                quiet: bool = True, loop: bool = False,
                alive: Callable[[], None] | None = None) -> FrameSource:
    """Open the frame source a ``--camera`` value names (not started yet).

    Args:
        value: the ``--camera`` value (None: auto), or its :class:`CameraSpec`.
        size: (width, height) asked of a camera; files and streams keep their own.
        quiet: keep OpenCV's and libcamera's logs quiet while opening.
        loop: a video file starts over at its end (cameras and streams have none).
        alive: the AI Camera calls it for each frame that comes before its sensor's first
            answer (systemd's watchdog fed while the network loads).

    Raises:
        CameraError: it cannot be opened (including Picamera2 missing for ``picam``).
    """
    spec = value if isinstance(value, CameraSpec) else parse_camera(value)
    if spec.kind == "auto":
        number = _auto_picamera(quiet)
        spec = CameraSpec("picam", number) if number is not None else CameraSpec("v4l2", 0)
    if spec.kind == "imx500":
        from edge_runtime.imx500 import Imx500Source, SensorClassifier, network_file

        if not spec.target:
            raise CameraError("--camera imx500 runs the bundle's imx500 network: --model "
                              "BUNDLE/imx500/packerOut.zip")
        labels = SensorClassifier(spec.target).labels
        return Imx500Source(network_file(spec.target), labels, size, quiet, alive=alive)
    if spec.kind == "picam":
        from edge_runtime.picamera import PicameraSource

        return PicameraSource(spec.index, size, quiet)
    if spec.kind == "v4l2":
        return OpenCVSource(spec.index, quiet=quiet, size=size)
    return OpenCVSource(spec.target, quiet=quiet, loop=loop)


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
    from edge_runtime.imx500 import is_sensor
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
            if is_sensor(info):
                lines.append("  --camera imx500      the Raspberry Pi AI Camera: runs a bundle's "
                             "imx500 network on its sensor (--model BUNDLE/imx500/packerOut.zip)")
    lines.append("V4L2 devices (OpenCV):")
    devices = v4l2_devices(sysfs)
    if not devices:
        lines.append(f"  none ({sysfs} lists no video device)" if os.name == "posix"
                     else "  not listed on this system (try --camera 0)")
    for device, name in devices:
        number = device.removeprefix("/dev/video")
        lines.append(f"  --camera {number:<9} {device}  {name}")
    return lines
