"""Frames from a camera or a video file, read on a thread of their own.

Reading a frame blocks (a camera delivers at its own pace, a video file has to
be decoded), so a :class:`FrameGrabber` reads on a background thread while the
caller classifies. For a live camera only the newest frame is kept: when
inference is slower than the camera, older frames are dropped instead of
queueing, so what is classified is always what the camera sees now and latency
never grows. A video file is a recording, not a live view: every frame is
classified once, in order (decoding still overlaps inference), so a run's
results and ``--max-frames`` do not depend on how fast the CPU is.

OpenCV is imported inside the functions that need it, never when
``edge_runtime`` is imported: classifying files needs no OpenCV at all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge_runtime.errors import CameraError


def parse_source(value: str) -> int | str:
    """``--camera``'s value → a camera index (a string of digits) or a video file path."""
    value = value.strip()
    return int(value) if value.isdigit() else value


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


class FrameSlot:
    """A one-frame hand-over between the capture thread and the consumer.

    With ``keep_all=False`` (live cameras) :meth:`put` replaces a frame not yet
    taken, counting it in :attr:`dropped`. With ``keep_all=True`` (video files)
    :meth:`put` waits until the previous frame was taken, so none is lost.
    """

    def __init__(self, keep_all: bool = False) -> None:
        self.keep_all = keep_all
        self.dropped = 0
        """Frames replaced before anyone took them."""
        self._cond = threading.Condition()
        self._item: tuple[int, np.ndarray] | None = None
        self._closed = False

    def put(self, number: int, frame: np.ndarray) -> bool:
        """Offer frame ``number``; returns False once the slot is closed (stop reading)."""
        with self._cond:
            if self.keep_all:
                while self._item is not None and not self._closed:
                    self._cond.wait()
            if self._closed:
                return False
            if self._item is not None:
                self.dropped += 1
            self._item = (number, frame)
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = None) -> tuple[int, np.ndarray] | None:
        """The newest frame not yet taken, as ``(number, frame)``, waiting for one.

        Returns None when the slot is closed and empty (the source ended or the
        reader stopped), or when ``timeout`` seconds pass without a frame.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
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


def open_capture(source: int | str, quiet: bool = True):
    """Open ``source`` with OpenCV and return the ``cv2.VideoCapture``.

    Args:
        source: a camera index or a video file path.
        quiet: silence OpenCV's own log while opening (it prints several lines
            of backend diagnostics for a missing camera; our one line says it).

    Raises:
        CameraError: the file does not exist or the source cannot be opened.
    """
    import cv2

    if isinstance(source, str) and not Path(source).is_file():
        raise CameraError(f"video file {source} does not exist "
                          "(give a camera index such as --camera 0, or a video file)")
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    if quiet:
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
    try:
        capture = cv2.VideoCapture(source)
        opened = capture.isOpened()
    finally:
        logging.setLogLevel(previous)
    if not opened:
        capture.release()
        what = (f"camera {source}" if isinstance(source, int)
                else f"video file {source} (not a video OpenCV can decode)")
        raise CameraError(f"cannot open {what}")
    return capture


class FrameGrabber:
    """Read frames from a camera or video file on a background thread.

    Use as a context manager, then iterate :meth:`frames`::

        with FrameGrabber(0) as grabber:
            for number, bgr in grabber.frames():
                ...

    Args:
        source: a camera index (int) or a video file path (str).
        keep_all: classify every frame (default for video files) instead of
            only the newest (default for cameras); see the module docstring.
        quiet: silence OpenCV's log while opening.
        loop: a video file starts over at its end instead of ending (demos, kiosks, tests).

    Raises:
        CameraError: the source cannot be opened or gives no first frame.
    """

    def __init__(self, source: int | str, keep_all: bool | None = None,
                 quiet: bool = True, loop: bool = False) -> None:
        import cv2

        self.source = source
        self.loop = loop
        self.name = source_name(source)
        self.keep_all = isinstance(source, str) if keep_all is None else keep_all
        self.error: BaseException | None = None
        """An exception the capture thread died of, if any."""
        self.frames_read = 0
        self._capture = open_capture(source, quiet)
        # Read one frame now: some cameras open yet never deliver, and that is a
        # usage error to report before any output, not an empty run.
        ok, frame = self._capture.read()
        if not ok or frame is None:
            self._capture.release()
            raise CameraError(f"camera {source} opened but gave no frame" if isinstance(source, int)
                              else f"video file {source}: no frame could be decoded")
        self.frames_read = 1
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        """The source's nominal frame rate (0 when it does not say)."""
        self._slot = FrameSlot(self.keep_all)
        self._slot.put(1, frame)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"capture {self.name}",
                                        daemon=True)
        self._started = False
        self._released = False

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before they were classified (cameras only)."""
        return self._slot.dropped

    def start(self) -> FrameGrabber:
        """Start the capture thread (once); returns self."""
        if not self._started and not self._stop.is_set():
            self._started = True
            self._thread.start()
        return self

    def _read(self) -> None:
        import cv2

        try:
            while not self._stop.is_set():
                ok, frame = self._capture.read()
                if (not ok or frame is None) and self.loop:
                    self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)  # replay from the start
                    ok, frame = self._capture.read()
                if not ok or frame is None:
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
            if item is not None:
                yield item
            elif self._slot.closed:
                return

    def stop(self) -> None:
        """Stop the thread and release the camera or file; safe to call twice."""
        self._stop.set()
        self._slot.close()
        if self._thread.is_alive():
            # read() of a camera returns within a frame interval; a hung driver
            # must not hang the program, hence the timeout (the thread is a daemon).
            self._thread.join(timeout=2.0)
        if not self._released and not self._thread.is_alive():
            self._capture.release()
            self._released = True

    def __enter__(self) -> FrameGrabber:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
