"""Frames read on a thread of their own, and the hand-over between two threads of a stream.

Reading a frame blocks (a camera delivers at its own pace, a video file has to
be decoded), so a :class:`FrameSource` reads on a background thread while the
caller classifies. For a live camera only the newest frame is kept: when
inference is slower than the camera, older frames are dropped instead of
queueing, so what is classified is always what the camera sees now and latency
never grows. A video file is a recording, not a live view: every frame is
classified once, in order (decoding still overlaps inference), so a run's
results and ``--max-frames`` do not depend on how fast the CPU is.

Every source hands out frames in OpenCV's order: BGR uint8 (H, W, 3). The sources:
:class:`~edge_runtime.sources.opencv_source.OpenCVSource` (V4L2 cameras, video files, stream URLs)
and :class:`~edge_runtime.sources.picamera.PicameraSource` (the Raspberry Pi camera module);
:func:`edge_runtime.sources.open_source.open_source` picks one from ``--camera``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterator

import numpy as np


class _End:
    """The end-of-stream marker :meth:`FrameSlot.take` returns (never a frame, never None)."""

    def __repr__(self) -> str:
        return "END"


END = _End()
"""Returned by :meth:`FrameSlot.take` once the slot is closed and its last frame was taken."""


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
