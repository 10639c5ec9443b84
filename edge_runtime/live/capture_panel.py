"""The live view's capture panel: the newest raw frame, saved under a label on request.

The camera loop offers every frame (:meth:`CapturePanel.offer`: a copy under a lock, the
frame as the camera gave it, before any caption is drawn); a browser's ``POST /capture``
saves the newest one (a snapshot) or the next few (a burst) through a
:class:`~edge_runtime.capture.writer.PictureWriter`, in the request's own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_runtime.capture.writer import PictureWriter

BURST_MAX = 50
"""The most pictures one burst request saves."""


class CapturePanel:
    """Frames offered by the camera loop, saved on request.

    Args:
        writer: where pictures go (its limits apply).
        labels: the labels to offer first (the model's), others may be typed.
        burst_interval_s: the least time between two pictures of a burst.
    """

    def __init__(self, writer: PictureWriter, labels: Sequence[str] = (),
                 burst_interval_s: float = 0.2) -> None:
        self.writer = writer
        self.labels = list(labels)
        self.burst_interval_s = burst_interval_s
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._closed = False

    def offer(self, frame_bgr: np.ndarray) -> None:
        """The camera loop's newest frame (copied: the loop may draw on its own)."""
        copy = frame_bgr.copy()
        with self._cond:
            self._frame, self._seq = copy, self._seq + 1
            self._cond.notify_all()

    def close(self) -> None:
        """No more frames: a burst waiting for one ends."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def state(self) -> dict:
        """``GET /capture``: the labels to offer and the pictures per label on the disk."""
        counts = self.writer.counts()
        return {"labels": self.labels + sorted(set(counts) - set(self.labels)),
                "counts": counts, "folder": str(self.writer.root)}

    def save(self, label: str, count: int = 1, timeout_s: float = 5.0) -> list[Path]:
        """Save the newest frame, then (a burst) ``count - 1`` newer ones, spaced by at least
        ``burst_interval_s``; returns the paths.

        Raises:
            CaptureError, CaptureLimit: see :meth:`PictureWriter.save` (pictures saved before
                a limit stay).
        """
        from edge_runtime.capture.writer import CaptureError, check_label

        check_label(label)
        self.writer.check_room()
        saved: list[Path] = []
        after = 0
        for i in range(max(1, min(count, BURST_MAX))):
            if i:  # a burst: spaced pictures
                time.sleep(self.burst_interval_s)
            with self._cond:
                if i:  # a newer frame, not the same one again
                    self._cond.wait_for(lambda seen=after: self._closed or self._seq > seen,
                                        timeout_s)
                if self._frame is None or self._seq <= after:
                    if not saved:
                        raise CaptureError("no frame from the camera yet")
                    break
                frame, after = self._frame, self._seq
            saved.append(self.writer.save(frame, label))
        return saved
