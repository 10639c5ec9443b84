"""Opening the frame source a ``--camera`` value names.

The grammar of ``--camera`` is :mod:`edge_runtime.sources.camera_spec`'s. Picamera2 is imported
only for ``picam``, ``auto`` and ``imx500``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from edge_runtime.errors import CameraError
from edge_runtime.sources.camera_spec import DEFAULT_SIZE, CameraSpec, parse_camera
from edge_runtime.sources.frame_source import FrameSource
from edge_runtime.sources.opencv_source import OpenCVSource

if TYPE_CHECKING:
    from edge_runtime.sources.ai_camera import Uploading


def _auto_picamera(quiet: bool) -> int | None:
    """The number of the first camera module Picamera2 lists, None without Picamera2 or one.

    Raises:
        PicameraBroken: Picamera2 is installed but does not import: a broken install is said,
            never passed over for another camera.
    """
    from edge_runtime.sources.picamera import is_usb, listed_cameras

    # libcamera lists USB webcams too; those stream better as V4L2 (MJPG)
    modules = [info for info in listed_cameras(quiet) if not is_usb(info)]
    return int(modules[0].get("Num", 0)) if modules else None


def open_source(value: CameraSpec | str | None, size: tuple[int, int] = DEFAULT_SIZE,
                quiet: bool = True, loop: bool = False, alive: Callable[[], None] | None = None,
                uploading: Uploading | None = None) -> FrameSource:
    """Open the frame source a ``--camera`` value names (not started yet).

    Args:
        value: the ``--camera`` value (None: auto), or its :class:`CameraSpec`.
        size: (width, height) asked of a camera; files and streams keep their own.
        quiet: keep OpenCV's and libcamera's logs quiet while opening.
        loop: a video file starts over at its end (cameras and streams have none).
        alive: the AI Camera calls it for each frame that comes before its sensor's first
            answer (systemd's watchdog fed).
        uploading: what the AI Camera's start (its network upload) runs under
            (:data:`~edge_runtime.sources.ai_camera.Uploading`); None: nothing.

    Raises:
        CameraError: it cannot be opened (including Picamera2 missing for ``picam``).
    """
    spec = value if isinstance(value, CameraSpec) else parse_camera(value)
    if spec.kind == "auto":
        number = _auto_picamera(quiet)
        spec = CameraSpec("picam", number) if number is not None else CameraSpec("v4l2", 0)
    if spec.kind == "imx500":
        from edge_runtime.sources.ai_camera import Imx500Source, network_file

        if not spec.target:
            raise CameraError("--camera imx500 runs the bundle's imx500 network: --model "
                              "BUNDLE/imx500/packerOut.zip")
        return Imx500Source(network_file(spec.target), size, quiet, uploading, alive)
    if spec.kind == "picam":
        from edge_runtime.sources.picamera import PicameraSource

        return PicameraSource(spec.index, size, quiet)
    if spec.kind == "v4l2":
        return OpenCVSource(spec.index, quiet=quiet, size=size)
    return OpenCVSource(spec.target, quiet=quiet, loop=loop)
