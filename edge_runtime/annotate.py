"""What a live view shows on a frame: the top label, its score and the frame rate.

The preview window and the browser stream (:mod:`edge_runtime.live`)
draw the same caption the same way, so it is defined once here. OpenCV is
imported inside :func:`draw_lines` only: measuring a rate needs none.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np


class FrameRate:
    """Frames per second over the last ``window`` calls of :meth:`tick`.

    A rolling window follows a change of pace within a second or two, where an
    average over the whole run would hide it.
    """

    def __init__(self, window: int = 30) -> None:
        self._times: deque[float] = deque(maxlen=window)

    def tick(self, now: float | None = None) -> None:
        """Count one frame, at ``now`` (``time.perf_counter()`` by default)."""
        self._times.append(time.perf_counter() if now is None else now)

    def fps(self) -> float:
        """The current rate; 0 before two frames were counted."""
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


def caption(label: str | None, score: float, fps: float) -> list[str]:
    """The lines drawn on a frame: ``"label 0.93"`` (``"-"`` without a label) and ``"12.3 FPS"``."""
    return [f"{label} {score:.2f}" if label is not None else "-", f"{fps:.1f} FPS"]


def draw_lines(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw ``lines`` of text in the top-left corner of ``frame`` (BGR, changed in place).

    The text scales with the frame's height, so it reads the same at 240 or
    1080 lines. Returns ``frame``.
    """
    import cv2

    scale = max(0.5, frame.shape[0] / 480)
    for i, text in enumerate(lines):
        origin = (10, int((30 + 32 * i) * scale))
        # a dark outline under white text stays legible on any background
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (0, 0, 0),
                    int(4 * scale), cv2.LINE_AA)
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                    (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    return frame
