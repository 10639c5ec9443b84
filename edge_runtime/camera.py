"""Frames from a camera or a video file, read on a thread of their own.

Reading a frame blocks (a camera delivers at its own pace, a video file has to
be decoded), so a :class:`FrameSource` reads on a background thread while the
caller classifies. For a live camera only the newest frame is kept: when
inference is slower than the camera, older frames are dropped instead of
queueing, so what is classified is always what the camera sees now and latency
never grows. A video file is a recording, not a live view: every frame is
classified once, in order (decoding still overlaps inference), so a run's
results and ``--max-frames`` do not depend on how fast the CPU is.

Every source hands out frames in OpenCV's order: BGR uint8 (H, W, 3). This
module holds the hand-over (:class:`FrameSlot`), the source interface
(:class:`FrameSource`) and its OpenCV implementation (:class:`FrameGrabber`:
V4L2 cameras, video files, stream URLs); :mod:`edge_runtime.picamera` is the
Raspberry Pi camera module's, and :mod:`edge_runtime.sources` picks one from
``--camera``.

OpenCV is imported inside the functions that need it, never when
``edge_runtime`` is imported: classifying files needs no OpenCV at all.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime.errors import CameraError

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")
"""``--camera`` values OpenCV's FFmpeg backend opens as network streams."""


class _End:
    """The end-of-stream marker :meth:`FrameSlot.take` returns (never a frame, never None)."""

    def __repr__(self) -> str:
        return "END"


END = _End()
"""Returned by :meth:`FrameSlot.take` once the slot is closed and its last frame was taken."""


def is_stream_url(value: str) -> bool:
    """True for an ``rtsp://``, ``http://`` or ``https://`` address."""
    return value.strip().lower().startswith(URL_SCHEMES)


def parse_source(value: str) -> int | str:
    """An OpenCV source: a camera index (digits or ``/dev/videoN``), else a file path or URL."""
    value = value.strip()
    if value.isdigit():
        return int(value)
    if value.startswith("/dev/video") and value[len("/dev/video"):].isdigit():
        return int(value[len("/dev/video"):])
    return value


def source_name(source: int | str) -> str:
    """How a source is named in output: ``camera:0`` or the video file's path."""
    return f"camera:{source}" if isinstance(source, int) else str(source)


def to_rgb_frame(frame: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey, uint8) → an RGB uint8 array (H, W, 3).

    Raises:
        ValueError: the array is not an image of 1, 3 or 4 channels.
    """
    import cv2

    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"expected a BGR, BGRA or grey frame, got shape {frame.shape}")


def frame_to_image(frame: np.ndarray) -> Image.Image:
    """An OpenCV frame (BGR, BGRA or grey, uint8) → an RGB Pillow image, for preprocessing.

    A BGR frame is unpacked by Pillow straight from OpenCV's byte order: one copy,
    no intermediate RGB array.

    Raises:
        ValueError: the array is not an image of 1, 3 or 4 channels.
    """
    if frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
        height, width = frame.shape[:2]
        return Image.frombuffer("RGB", (width, height), np.ascontiguousarray(frame),
                                "raw", "BGR", 0, 1)
    return Image.fromarray(to_rgb_frame(frame), mode="RGB")


class FrameSlot:
    """A small hand-over between two threads of the stream: a capture thread and its consumer.

    With ``keep_all=False`` (live cameras) it holds one frame, and :meth:`put` replaces a
    frame not yet taken, counting it in :attr:`dropped`. With ``keep_all=True`` (video
    files) it holds up to ``depth`` frames in order and :meth:`put` waits for room, so none
    is lost; a few frames of slack keep one stage running while the next waits to be
    scheduled on a busy CPU. The end of the stream is a value (:data:`END`) that
    :meth:`take` returns under the same lock that hands over frames, so a frame put just
    before :meth:`close` is always taken first.
    """

    def __init__(self, keep_all: bool = False, depth: int = 4) -> None:
        self.keep_all = keep_all
        self.depth = max(1, depth) if keep_all else 1
        self.dropped = 0
        """Frames replaced before anyone took them."""
        self._cond = threading.Condition()
        self._items: deque[tuple[int, object]] = deque()
        self._closed = False

    def put(self, number: int, frame) -> bool:
        """Offer frame ``number``; returns False once the slot is closed (stop reading)."""
        with self._cond:
            if self.keep_all:
                while len(self._items) >= self.depth and not self._closed:
                    self._cond.wait()
            if self._closed:
                return False
            if not self.keep_all and self._items:
                self._items.clear()
                self.dropped += 1
            self._items.append((number, frame))
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = None):
        """The oldest frame not yet taken (the only one when newest-only), waiting for one.

        Returns:
            ``(number, frame)``; :data:`END` when the slot is closed and empty (the
            source ended or the reader stopped); None only when ``timeout``
            seconds pass with neither.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                return None
            if not self._items:
                return END
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        """No more frames: wakes both sides. A frame already in the slot can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        with self._cond:
            return self._closed


class FrameSource(ABC):
    """Frames read on a background thread: what the stream loop needs of any camera or video.

    A source is opened by its constructor (raising :class:`CameraError`), which
    also reads a first frame: some cameras open yet never deliver, and that is
    a usage error to report before any output. Then :meth:`frames` yields
    ``(number, BGR frame)`` until the source ends or :meth:`stop` is called;
    :meth:`stop` releases the device on every path and may be called twice.
    Subclasses implement :meth:`_read` (the next frame, None at the end) and
    :meth:`_release`.

    Attributes:
        name: how the source is named in output (``camera:0``, ``picam:0``, a path, a URL).
        fps: the nominal frame rate, 0 when the source does not say.
        keep_all: hand over every frame in order (recordings) instead of only the newest.
        error: an exception the capture thread died of, if any.
    """

    name: str = ""
    fps: float = 0.0
    keep_all: bool = False

    def _begin(self, first: np.ndarray) -> None:
        """Set up the hand-over with the first frame read by the constructor."""
        self.error: BaseException | None = None
        self.frames_read = 1
        self._slot = FrameSlot(self.keep_all)
        self._slot.put(1, first)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"capture {self.name}",
                                        daemon=True)
        self._started = False
        self._released = False

    @abstractmethod
    def _read(self) -> np.ndarray | None:
        """The next frame (BGR uint8), None at the end of the source."""

    @abstractmethod
    def _release(self) -> None:
        """Close the device or file."""

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before they were classified (live sources only)."""
        return self._slot.dropped

    def start(self) -> FrameSource:
        """Start the capture thread (once); returns self."""
        if not self._started and not self._stop.is_set():
            self._started = True
            self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self._read()
                if frame is None:
                    break  # end of the video, or the camera went away
                self.frames_read += 1
                if not self._slot.put(self.frames_read, frame):
                    break
        except BaseException as exc:  # reported by the consumer; a thread has no caller
            self.error = exc
        finally:
            self._slot.close()

    def frames(self, poll_s: float = 0.1) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(frame number, BGR frame)`` until the source ends or :meth:`stop`.

        Frame numbers count from 1 in capture order; with newest-only reading,
        the gaps are the frames that were dropped. Waits in short slices so that
        Ctrl-C reaches the main thread promptly.
        """
        self.start()
        while True:
            item = self._slot.take(timeout=poll_s)
            if item is END:
                return
            if item is not None:
                yield item

    def stop(self) -> None:
        """Stop the thread and release the device or file; safe to call twice."""
        self._stop.set()
        self._slot.close()
        if self._thread.is_alive():
            # a camera read returns within a frame interval; a hung driver must not hang
            # the program, hence the timeout (the thread is a daemon).
            self._thread.join(timeout=2.0)
        if not self._released and self._may_release():
            self._released = True
            self._release()

    def _may_release(self) -> bool:
        # OpenCV must not release a capture another thread is still reading from
        return not self._thread.is_alive()

    def __enter__(self) -> FrameSource:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


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


class FrameGrabber(FrameSource):
    """A V4L2/USB camera, a video file or a network stream, read with OpenCV.

    Use as a context manager, then iterate :meth:`frames`::

        with FrameGrabber(0) as grabber:
            for number, bgr in grabber.frames():
                ...

    Args:
        source: a camera index (int), a video file path or a stream URL (str).
        keep_all: classify every frame (default for video files) instead of
            only the newest (default for cameras and streams); see the module docstring.
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
        self.name = source_name(source)
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
