"""What ``edge-classify --list-cameras`` prints: this machine's cameras, each with the
``--camera`` value that opens it (Picamera2's list, then the V4L2 devices Linux names)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from edge_runtime.errors import CameraError

V4L2_SYSFS = Path("/sys/class/video4linux")
"""Where Linux names each ``/dev/videoN`` device."""


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
    from edge_runtime.sources.ai_camera import is_sensor
    from edge_runtime.sources.picamera import INSTALL_HINT, PicameraBroken, is_usb, picamera_cameras

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
