"""The newest classified frame and its result, handed from the camera loop to the live view.

The camera loop must never wait for a browser. :meth:`FramePublisher.publish` only stores the
newest frame and result under a lock (copying the frame only while someone watches the
stream). Each stream client runs in a thread of its own and takes the newest frame when it is
ready for one (:meth:`FramePublisher.next_jpeg`), skipping the frames in between; JPEG
encoding happens in those threads, once per published frame whatever the number of clients
(the last JPEG is kept and shared). A stalled client blocks only its own thread.

OpenCV (the JPEG encoder) is imported when the first frame is encoded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_runtime.annotate import FrameRate, caption, draw_lines

log = logging.getLogger(__name__)


@dataclass
class Published:
    """One published frame."""

    seq: int
    """Publish count, from 1: a client compares it with the last one it sent."""
    at: float
    """When it was published, by the publisher's clock."""
    result: dict
    """The ``/predictions`` object."""
    frame: np.ndarray | None
    """A copy of the BGR frame; None when nobody watched the stream as it came."""


class FramePublisher:
    """The newest frame and result, for any number of viewer threads (see the module docstring).

    Args:
        max_viewers: streams watched at once; :meth:`add_viewer` refuses more.
        stale_s: :meth:`health` says unhealthy when no frame came for this long.
        jpeg_quality: OpenCV's JPEG quality, 0-100.
        clock: seconds, monotonic: when a frame came, for :meth:`health` (tests pass a fake).
    """

    def __init__(self, max_viewers: int = 4, stale_s: float = 5.0, jpeg_quality: int = 80,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_viewers < 1:
            raise ValueError("max_viewers must be positive")
        self.max_viewers = max_viewers
        self.stale_s = stale_s
        self.jpeg_quality = jpeg_quality
        self.clock = clock
        self._cond = threading.Condition()  # guards the state below, and wakes viewers
        self._latest: Published | None = None
        self._closed = False
        self._closing = threading.Event()  # set with _closed; viewers sleep on it between frames
        self._viewers = 0
        self._rate = FrameRate(30)
        self._encode_lock = threading.Lock()
        self._jpeg: tuple[int, bytes] | None = None  # (seq, JPEG) of the last frame encoded
        self._unencodable = 0  # seq of the newest frame that failed to encode
        self.frames_encoded = 0
        """JPEG encodings done so far (one per published frame at most)."""
        self.encode_failures = 0
        """Frames whose JPEG encoding failed (each tried once, then skipped)."""

    # ------------------------------------------------------------------------- producer side

    def publish(self, number: int, frame_bgr: np.ndarray, result: dict) -> None:
        """Make frame ``number`` and its ``--json`` result the latest; never waits on viewers.

        Args:
            number: the frame's number in its source.
            frame_bgr: the frame, BGR as OpenCV gives it. It is copied (only while a
                stream is watched) so the caller may draw on it afterwards.
            result: the frame's ``result_json`` object (``source``, ``top_k``, ``latency_ms``).
        """
        self._rate.tick()
        fps = self._rate.fps()
        copy = frame_bgr.copy() if self._viewers else None  # a racy read is fine: one frame late
        with self._cond:
            seq = self._latest.seq + 1 if self._latest else 1
            self._latest = Published(seq, self.clock(),
                                     {**result, "frame": number, "fps": round(fps, 2)}, copy)
            self._cond.notify_all()

    def close(self) -> None:
        """No more frames: wakes every viewer waiting for one; safe to call twice."""
        with self._cond:
            self._closed = True
            self._closing.set()
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def wait_closed(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less when :meth:`close` is called meanwhile; True once closed."""
        return self._closing.wait(seconds)

    # ------------------------------------------------------------------------- viewer side

    def health(self) -> tuple[bool, dict]:
        """``(healthy, the /healthz object)``: healthy while frames arrive."""
        with self._cond:
            latest, closed = self._latest, self._closed
        if closed:
            return False, {"ok": False, "reason": "the stream ended"}
        if latest is None:
            return False, {"ok": False, "reason": "no frame yet"}
        age = self.clock() - latest.at
        body = {"ok": age <= self.stale_s, "frame": latest.result["frame"],
                "seconds_since_frame": round(age, 3)}
        if age > self.stale_s:
            body["reason"] = f"no frame for {age:.1f} s"
        return age <= self.stale_s, body

    def latest_result(self) -> dict | None:
        """The ``/predictions`` object, None before the first frame."""
        with self._cond:
            return self._latest.result if self._latest else None

    @property
    def viewers(self) -> int:
        """Streams watched now."""
        with self._cond:
            return self._viewers

    def add_viewer(self) -> bool:
        """Count a stream viewer in; False when :attr:`max_viewers` watch already, or closed."""
        with self._cond:
            if self._viewers >= self.max_viewers or self._closed:
                return False
            self._viewers += 1
            return True

    def remove_viewer(self) -> None:
        """Count a viewer added by :meth:`add_viewer` out."""
        with self._cond:
            self._viewers -= 1

    def next_jpeg(self, after: int, timeout: float) -> tuple[int, bytes] | None:
        """The newest frame published after ``after`` as ``(seq, JPEG bytes)``, waiting for one.

        Returns None after ``timeout`` seconds without a new frame, or once closed.
        Each frame is encoded once, by the first viewer that asks, and shared. A frame
        that cannot be encoded is skipped, for every viewer, and never tried again: the
        viewers wait for the next one instead of retrying it in a loop.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                def ready() -> bool:
                    return self._closed or (self._latest is not None
                                            and self._latest.seq > max(after, self._unencodable)
                                            and self._latest.frame is not None)
                if (not self._cond.wait_for(ready, deadline - time.monotonic())
                        or self._closed):
                    return None
                latest = self._latest
            with self._encode_lock:
                if self._jpeg is not None and self._jpeg[0] >= latest.seq:
                    return self._jpeg  # another viewer encoded it (or a newer one) meanwhile
                if self._unencodable >= latest.seq:
                    continue  # another viewer failed to encode it meanwhile
                jpeg = self._encode(latest)
                if jpeg is None:
                    self._unencodable = latest.seq
                    continue
                self._jpeg = (latest.seq, jpeg)
                self.frames_encoded += 1
                return self._jpeg

    def _encode(self, latest: Published) -> bytes | None:
        """``latest``'s frame, captioned, as JPEG; None (said once in the log) when that fails."""
        try:
            import cv2

            top = latest.result["top_k"][0] if latest.result["top_k"] else None
            # the stored copy is this publisher's own and encoded once, so draw on it directly
            image = draw_lines(latest.frame, caption(top["label"] if top else None,
                                                     top["score"] if top else 0.0,
                                                     latest.result["fps"]))
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                raise ValueError("cv2.imencode returned no image")
            return jpeg.tobytes()
        except Exception as exc:  # cv2.error, a frame of an odd shape or type, no OpenCV
            self.encode_failures += 1
            if self.encode_failures == 1:  # once: the journal is no place for a line a frame
                log.warning(f"live view: frame {latest.result['frame']} could not be encoded "
                            f"as JPEG ({type(exc).__name__}: {exc}); such frames are skipped")
            return None
