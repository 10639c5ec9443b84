"""The Raspberry Pi camera module through Picamera2, as a frame source.

On Raspberry Pi OS (Bookworm and later) the camera modules run on libcamera, which
OpenCV's V4L2 backend cannot stream; Picamera2 is the supported API. It is an apt
package (``python3-picamera2``), not a pip one: a virtual environment sees it only
when created with ``--system-site-packages``. It is imported here, when a Pi camera
is asked for, and nowhere else.

Byte orders: Picamera2 names formats after libcamera/DRM, which name the pixel as
a little-endian word, so ``RGB888`` is B, G, R in memory and ``XBGR8888`` is
R, G, B, X (``Picamera2.helpers.make_image`` maps them to Pillow's "BGR" and
"RGBX"). Frames are requested as ``RGB888``: already OpenCV's BGR order, which
every frame source hands out.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import os
import sys
from pathlib import Path

import numpy as np

from edge_runtime.errors import CameraError
from edge_runtime.sources.camera_spec import DEFAULT_SIZE
from edge_runtime.sources.frame_source import FrameSource

INSTALL_HINT = ("install it with `sudo apt install python3-picamera2` and run from a virtual "
                "environment created with `python3 -m venv --system-site-packages`")
"""How to get Picamera2: the apt package; pip copies break on apt upgrades of libcamera."""

REQUESTED_FORMAT = "RGB888"
"""Asked of the camera: B, G, R bytes, OpenCV's order, 3 bytes a pixel."""

_TO_BGR = {
    "RGB888": None,            # B, G, R in memory already
    "BGR888": (2, 1, 0),       # R, G, B in memory
    "XBGR8888": (2, 1, 0),     # R, G, B, X in memory
    "XRGB8888": (0, 1, 2),     # B, G, R, X in memory
}
"""Each 8-bit RGB format Picamera2 may give → the channels that make BGR, in order."""


class PicameraBroken(CameraError):
    """Picamera2 is installed but cannot be imported: a broken install, never a missing one,
    so ``--camera auto`` does not quietly take another camera instead."""


APT_DIST_PACKAGES = Path("/usr/lib/python3/dist-packages")
"""Where apt installs Python modules (Picamera2, simplejpeg, numpy) on Raspberry Pi OS."""


def import_picamera2(quiet: bool = True):
    """The ``Picamera2`` class, imported now.

    Args:
        quiet: keep libcamera's INFO lines off stderr (set before the import).

    Raises:
        CameraError: Picamera2 is not installed, with how to install it.
        PicameraBroken: it is installed but its import fails (with numpy's mismatch explained
            where that is the cause).
    """
    if quiet:
        os.environ.setdefault("LIBCAMERA_LOG_LEVELS", "*:ERROR")
    # numpy prints a page of warning and stack to stderr before raising when a module built
    # for numpy 1.x is imported under numpy 2: the one line below says it instead
    caught = io.StringIO()
    try:
        with contextlib.redirect_stderr(caught):
            from picamera2 import Picamera2
    except ModuleNotFoundError as exc:
        if exc.name == "picamera2":
            raise CameraError(f"Picamera2 is not installed here; {INSTALL_HINT}") from None
        raise PicameraBroken(_broken(exc, caught.getvalue())) from None
    except Exception as exc:  # ImportError, or a broken libcamera binding raising anything
        raise PicameraBroken(_broken(exc, caught.getvalue())) from None
    return Picamera2


def _broken(exc: BaseException, printed: str) -> str:
    """One line on why an installed Picamera2 does not import, and what fixes it."""
    text = f"{exc} {printed}"
    numpy_abi = ("compiled using NumPy" in text or "multiarray failed to import" in text
                 or "_ARRAY_API" in text or "dtype size changed" in text)
    if numpy_abi:
        message = numpy_mismatch()
        if message:
            return message
    return (f"Picamera2 is installed but does not import ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else '?'}); "
            "reinstall it with `sudo apt install --reinstall python3-picamera2`")


def numpy_mismatch(apt_packages: Path | None = None) -> str | None:
    """What is wrong, in one line, when this environment loads a numpy of another major version
    than the one apt built its modules (Picamera2's simplejpeg) for; None when they agree or apt
    has no numpy."""
    import numpy

    apt_packages = apt_packages or APT_DIST_PACKAGES
    apt = next((d.version for d in importlib.metadata.distributions(path=[str(apt_packages)])
                if (d.metadata["Name"] or "").lower() == "numpy"), None)
    here = numpy.__version__
    if apt is None or apt.split(".")[0] == here.split(".")[0]:
        return None
    major = int(apt.split(".")[0])
    # OpenCV 4.12 and newer require numpy 2: with numpy 1 it must be older (the edge extra's build)
    pins = f"'numpy<{major + 1}'" + (" 'opencv-python-headless<4.12'" if major < 2 else "")
    return (f"Picamera2 cannot be imported: apt built its modules (simplejpeg) for numpy {apt}, "
            f"but this environment loads numpy {here} from {Path(numpy.__file__).parent.parent}; "
            f"fix: {Path(sys.prefix) / 'bin' / 'python'} -m pip install {pins} "
            "(the README's Pi install keeps apt's numpy)")


def picamera_cameras(quiet: bool = True) -> list[dict]:
    """What ``Picamera2.global_camera_info()`` lists: one dict per camera (Num, Model, Id, ...).

    Raises:
        CameraError: Picamera2 cannot be imported.
    """
    return list(import_picamera2(quiet).global_camera_info())


def listed_cameras(quiet: bool = True) -> list[dict]:
    """:func:`picamera_cameras`, or none where Picamera2 is not installed.

    Raises:
        PicameraBroken: Picamera2 is installed but does not import: a broken install is said,
            never passed over for another camera.
    """
    try:
        return picamera_cameras(quiet)
    except PicameraBroken:
        raise
    except CameraError:
        return []


def is_usb(info: dict) -> bool:
    """True for a USB webcam that libcamera also lists (better opened with V4L2)."""
    return "/usb" in str(info.get("Id", ""))


def to_bgr(array: np.ndarray, fmt: str) -> np.ndarray:
    """A Picamera2 ``capture_array`` result in format ``fmt`` → BGR uint8 (H, W, 3).

    Raises:
        CameraError: a format that is not 8-bit RGB (YUV, raw).
    """
    if fmt not in _TO_BGR:
        raise CameraError(f"Picamera2 gave format {fmt}; expected one of {', '.join(_TO_BGR)}")
    order = _TO_BGR[fmt]
    if order is None:
        return array
    return np.ascontiguousarray(array[..., list(order)])


class Picamera2Owner(FrameSource):
    """A source that owns a Picamera2 camera (``_camera``, started when ``_running``):
    releasing it stops and closes the camera."""

    _camera = None
    _running = False

    def _may_release(self) -> bool:
        # stopping the camera ends a capture that waits, so a hung reader
        # must not keep the camera open: always stop and close
        return True

    def _release(self) -> None:
        self._close_camera()

    def _close_camera(self) -> None:
        camera, self._camera = self._camera, None
        if camera is None:
            return
        try:
            if self._running:
                self._running = False
                camera.stop()
        finally:
            camera.close()


class PicameraSource(Picamera2Owner):
    """Frames from Raspberry Pi camera ``number`` through Picamera2, newest only.

    The camera is configured for video at ``size`` in :data:`REQUESTED_FORMAT`, started,
    and a first frame read; any failure on the way stops and closes it again.

    Args:
        number: the camera's number (``Num`` in ``Picamera2.global_camera_info()``).
        size: (width, height) of the frames.
        quiet: keep libcamera's log quiet.

    Raises:
        CameraError: Picamera2 is missing, there is no camera ``number``, or it
            cannot be configured, started, or gives no frame.
    """

    keep_all = False

    def __init__(self, number: int = 0, size: tuple[int, int] = DEFAULT_SIZE,
                 quiet: bool = True) -> None:
        picamera2 = import_picamera2(quiet)
        self.number = number
        self.name = f"picam:{number}"
        cameras = list(picamera2.global_camera_info())
        if not any(info.get("Num") == number for info in cameras):
            found = ", ".join(f"picam:{info.get('Num')} ({info.get('Model', '?')})"
                              for info in cameras) or "none"
            raise CameraError(f"no Raspberry Pi camera {number} (Picamera2 lists: {found}; "
                              "edge-classify --list-cameras shows every camera)")
        self._camera = None
        self._running = False
        try:
            self._camera = picamera2(number)
            config = self._camera.create_video_configuration(
                main={"size": tuple(size), "format": REQUESTED_FORMAT})
            self._camera.configure(config)
            self._format = self._camera.camera_configuration()["main"]["format"]
            self.fps = _frame_rate(config)
            self._camera.start()
            self._running = True
            first = self._read()
        except CameraError:
            self._close_camera()
            raise
        except Exception as exc:
            self._close_camera()
            raise CameraError(f"cannot start Raspberry Pi camera {number}: "
                              f"{type(exc).__name__}: {exc}") from None
        self._begin(first)

    def _read(self) -> np.ndarray:
        return to_bgr(self._camera.capture_array("main"), self._format)



def _frame_rate(config: dict) -> float:
    """The frame rate a video configuration asks for (FrameDurationLimits in µs), else 0."""
    limits = (config.get("controls") or {}).get("FrameDurationLimits")
    try:
        return 1e6 / float(limits[0]) if limits and float(limits[0]) > 0 else 0.0
    except (TypeError, ValueError, IndexError):
        return 0.0
