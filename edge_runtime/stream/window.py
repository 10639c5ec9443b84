"""The preview window of a camera or video run: each frame with its top label and the frame rate.

Whether a window can open at all is decided first, in a child process: over SSH or in a
service there is no display, and OpenCV's Qt backend aborts the whole process on a display
it cannot reach. An OpenCV without a GUI (the edge extra's opencv-python-headless) leaves the
window to Tk (:mod:`edge_runtime.stream.tk_window`); without Tk either, a run that wants a window
stops and says what to do instead.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np

from common.errors import UsageError
from edge_runtime.annotate import FrameRate, caption, draw_lines
from edge_runtime.classifier import Prediction

WINDOW_TITLE = "edge-classify (q or Esc to quit)"
NO_WINDOW = ("no preview window: this OpenCV has no GUI (opencv-python-headless) and this Python "
             "no Tk: sudo apt install python3-tk for a window, or pass --headless (a line per "
             "frame) or --serve 8080 (watch in a browser)")

log = logging.getLogger(__name__)


def display_available() -> bool:
    """False on Linux without an X11 or Wayland display (ssh, a service, CI)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


_WINDOW_PROBE = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def window_supported(timeout_s: float = 20.0) -> bool:
    """Whether OpenCV can open a window here, tried in a child process.

    A display variable can be set yet useless (``ssh`` without a reachable X
    server, a stale ``DISPLAY``), and OpenCV's Qt backend then aborts the whole
    process instead of raising; a headless OpenCV build raises ``cv2.error``.
    Trying in a child costs a fraction of a second once, and only the child dies.
    """
    if not display_available():
        return False
    try:
        probe = subprocess.run([sys.executable, "-c", _WINDOW_PROBE], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def opencv_has_gui() -> bool:
    """Whether this OpenCV was built with a GUI (opencv-python: Qt; opencv-python-headless:
    none). An OpenCV too old to say is given the benefit of the doubt: the probe decides."""
    import cv2

    framework = getattr(cv2, "currentUIFramework", None)
    return framework is None or bool(framework())


class PreviewWindow:
    """An OpenCV window showing each frame with its top label, score and the frame rate.

    Args:
        title: the window title.
        pace_fps: show at most this many frames a second (a video file's own rate,
            so it plays at normal speed instead of as fast as it decodes); 0: no limit.

    Raises:
        cv2.error: this OpenCV build has no GUI support (opencv-python-headless).
    """

    def __init__(self, title: str = WINDOW_TITLE, pace_fps: float = 0.0) -> None:
        import cv2

        self.title = title
        self._interval = 1.0 / pace_fps if pace_fps > 0 else 0.0
        self._rate = FrameRate(30)
        self._shown = 0.0  # when the previous frame went on screen
        # the pip wheels' Qt warns at length about fonts it does not need (text is drawn by OpenCV)
        os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def fps(self) -> float:
        """Frame rate over the last 30 frames."""
        return self._rate.fps()

    def show(self, frame: np.ndarray, predictions: list[Prediction]) -> bool:
        """Draw and show ``frame`` (BGR); False when the user pressed q/Esc or closed it."""
        import cv2

        self._rate.tick()
        best = predictions[0] if predictions else None
        draw_lines(frame, caption(best.label if best else None, best.score if best else 0.0,
                                  self.fps()))
        cv2.imshow(self.title, frame)
        wait_s = self._shown + self._interval - time.perf_counter()
        key = cv2.waitKey(max(1, round(wait_s * 1000))) & 0xFF  # waiting keeps the window live
        self._shown = time.perf_counter()
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        """Close the window."""
        import cv2

        cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # lets the GUI backend process the close


def open_window(headless: bool, verbose: bool, pace_fps: float):
    """A preview window (:class:`PreviewWindow`, or :class:`~edge_runtime.stream.tk_window.TkWindow`
    for an OpenCV without GUI), or None (and why, on stderr) where none can or should open.

    Raises:
        UsageError: a window is wanted (a display, no ``--headless``) and neither OpenCV nor
            Tk can draw one (:data:`NO_WINDOW`: what to do instead).
    """
    if headless:
        return None
    if not display_available():
        if verbose:
            log.info("no display (DISPLAY/WAYLAND_DISPLAY unset): printing one line per frame")
        return None
    if not opencv_has_gui():
        return _tk_window(pace_fps)
    if not window_supported():
        log.warning("OpenCV cannot open a window on this display: printing one line per frame "
               "(pass --headless to skip this check)")
        return None
    import cv2

    try:
        return PreviewWindow(pace_fps=pace_fps)
    except cv2.error as exc:
        log.warning(f"cannot open a window ({exc}): printing one line per frame")
        return None


def _tk_window(pace_fps: float):
    """A Tk window; None (said once) where Tk cannot reach the display."""
    from edge_runtime.stream.tk_window import TkWindow

    try:
        import tkinter
    except ImportError:  # Debian and Raspberry Pi OS ship Tk apart: python3-tk
        raise UsageError(NO_WINDOW) from None
    try:
        return TkWindow(WINDOW_TITLE, pace_fps)
    except tkinter.TclError as exc:
        log.warning(f"Tk cannot open a window on this display ({exc}): printing one line per "
                    "frame (pass --headless to skip this check)")
        return None
