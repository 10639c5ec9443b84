"""V4L2/USB cameras, video files and network streams, read with OpenCV, as a frame source.

OpenCV is imported inside the functions that need it, never when ``edge_runtime`` is
imported: classifying files needs no OpenCV at all.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_runtime.errors import CameraError
from edge_runtime.sources.camera_spec import is_stream_url
from edge_runtime.sources.frame_source import FrameSource


def opencv_log_level(cv2):
    """(get, set) of OpenCV's own log level (0 is silent): ``cv2.utils.logging`` in OpenCV 5,
    ``cv2.getLogLevel``/``cv2.setLogLevel`` in the 4.x wheels Raspberry Pi OS Bookworm gets (its
    numpy 1.x rules out opencv-python 4.12 and later), which have no ``cv2.utils.logging``."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is not None:
        return logging.getLogLevel, logging.setLogLevel
    return cv2.getLogLevel, cv2.setLogLevel


def open_capture(source: int | str, quiet: bool = True, size: tuple[int, int] | None = None):
    """Open ``source`` with OpenCV and return the ``cv2.VideoCapture``.

    Args:
        source: a camera index, a video file path, or an ``rtsp://``/``http(s)://`` URL
            (opened with the FFmpeg backend).
        quiet: silence OpenCV's own log while opening (it prints several lines
            of backend diagnostics for a missing camera; our one line says it).
        size: (width, height) to ask a camera for; files and streams keep their own.

    Raises:
        CameraError: the file does not exist or the source cannot be opened.
    """
    import cv2

    url = isinstance(source, str) and is_stream_url(source)
    if isinstance(source, str) and not url and not Path(source).is_file():
        raise CameraError(f"video file {source} does not exist "
                          "(give a camera index such as --camera 0, a video file or a URL)")
    get_level, set_level = opencv_log_level(cv2)
    previous = get_level()
    if quiet:
        set_level(0)  # LOG_LEVEL_SILENT
    try:
        capture = cv2.VideoCapture(source, cv2.CAP_FFMPEG) if url else cv2.VideoCapture(source)
        opened = capture.isOpened()
        if opened and isinstance(source, int) and size is not None:
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
    finally:
        set_level(previous)
    if not opened:
        capture.release()
        what = (f"camera {source}" if isinstance(source, int)
                else f"stream {source}" if url
                else f"video file {source} (not a video OpenCV can decode)")
        raise CameraError(f"cannot open {what}")
    return capture


class OpenCVSource(FrameSource):
    """A V4L2/USB camera, a video file or a network stream, read with OpenCV.

    Use as a context manager, then iterate :meth:`frames`::

        with OpenCVSource(0) as camera:
            for number, bgr in camera.frames():
                ...

    Args:
        source: a camera index (int: ``camera:N`` in output), a video file path or a stream
            URL (str).
        keep_all: classify every frame (default for video files) instead of only the
            newest (default for cameras and streams); see :mod:`edge_runtime.sources.frame_source`.
        quiet: silence OpenCV's log while opening.
        size: (width, height) to ask a camera for (default: the camera's own).
        loop: a video file starts over at its end instead of ending (demos, kiosks, tests).

    Raises:
        CameraError: the source cannot be opened or gives no first frame.
    """

    def __init__(self, source: int | str, keep_all: bool | None = None,
                 quiet: bool = True, size: tuple[int, int] | None = None,
                 loop: bool = False) -> None:
        import cv2

        self.source = source
        self.loop = loop
        self.name = f"camera:{source}" if isinstance(source, int) else str(source)
        recording = isinstance(source, str) and not is_stream_url(source)
        self.keep_all = recording if keep_all is None else keep_all
        self._capture = open_capture(source, quiet, size)
        ok, frame = self._capture.read()
        if not ok or frame is None:
            self._capture.release()
            raise CameraError(f"camera {source} opened but gave no frame" if isinstance(source, int)
                              else f"{'video file' if recording else 'stream'} {source}: "
                                   "no frame could be decoded")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        """The source's nominal frame rate (0 when it does not say)."""
        self._begin(frame)

    def _read(self) -> np.ndarray | None:
        ok, frame = self._capture.read()
        if (not ok or frame is None) and self.loop:
            import cv2

            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # replay from the start
            ok, frame = self._capture.read()
        return frame if ok else None

    def _release(self) -> None:
        self._capture.release()
