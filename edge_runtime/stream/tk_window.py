"""The preview window drawn with Tk, for an OpenCV without a GUI.

The edge extra installs ``opencv-python-headless`` (Raspberry Pi OS Lite has none of the
libraries OpenCV's GUI build links), whose ``cv2.imshow`` raises "The function is not
implemented". On a desktop, Python's own Tk (``tkinter``: the ``python3-tk`` package on
Debian and Raspberry Pi OS) shows the frames instead: no second OpenCV in the venv, so
installing a newer wheel never brings back a build that shadows the other.
"""

from __future__ import annotations

import time

import numpy as np

from edge_runtime.annotate import FrameRate, caption, draw_lines
from edge_runtime.classifier import Prediction


class TkWindow:
    """A Tk window showing each frame with its top label, score and the frame rate: what
    :class:`edge_runtime.window.PreviewWindow` shows, q or Esc to quit.

    Args:
        title: the window title.
        pace_fps: show at most this many frames a second (a video file's own rate); 0: no limit.

    Raises:
        ImportError: Python has no Tk (``sudo apt install python3-tk``).
        tkinter.TclError: Tk cannot reach the display.
    """

    def __init__(self, title: str, pace_fps: float = 0.0) -> None:
        import tkinter

        self._root = tkinter.Tk()
        self._root.title(title)
        self._open = True
        self._root.protocol("WM_DELETE_WINDOW", self._closed)
        for key in ("<KeyPress-q>", "<Escape>"):
            self._root.bind(key, lambda _event: self._closed())
        # one photo image, refilled each frame; the label shows it at the frame's size
        self._photo = tkinter.PhotoImage(master=self._root)
        tkinter.Label(self._root, image=self._photo, borderwidth=0).pack()
        self._interval = 1.0 / pace_fps if pace_fps > 0 else 0.0
        self._rate = FrameRate(30)
        self._shown = 0.0  # when the previous frame went on screen
        self._root.update()

    def _closed(self) -> None:
        self._open = False

    def fps(self) -> float:
        """Frame rate over the last 30 frames."""
        return self._rate.fps()

    def show(self, frame: np.ndarray, predictions: list[Prediction]) -> bool:
        """Draw and show ``frame`` (BGR, uint8); False when the user pressed q/Esc or closed it."""
        self._rate.tick()
        best = predictions[0] if predictions else None
        draw_lines(frame, caption(best.label if best else None, best.score if best else 0.0,
                                  self.fps()))
        height, width = frame.shape[:2]
        rgb = np.ascontiguousarray(frame[..., 2::-1] if frame.ndim == 3 else
                                   np.repeat(frame[..., None], 3, axis=2))
        # binary PPM: the one picture format Tk reads from memory without Pillow's ImageTk
        self._photo.configure(data=b"P6 %d %d 255\n" % (width, height) + rgb.tobytes(),
                              format="PPM")
        wait_s = self._shown + self._interval - time.perf_counter()
        if wait_s > 0:
            time.sleep(wait_s)
        self._root.update()  # draws, and runs the key and close handlers
        self._shown = time.perf_counter()
        return self._open

    def close(self) -> None:
        """Close the window."""
        import tkinter

        try:
            self._root.destroy()
        except tkinter.TclError:  # already gone with its display
            pass
