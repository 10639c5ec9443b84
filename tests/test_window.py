"""Deciding whether a preview window can open: display variables, then a probe in a child process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from common.errors import UsageError
from edge_runtime.stream import window

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge


def _linux_with_display(monkeypatch, display=":0"):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("DISPLAY", display)


def test_no_display_variable_means_no_window_without_probing(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(window, "_WINDOW_PROBE", "raise SystemExit(0)")  # would say yes
    assert not window.display_available() and not window.window_supported()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert window.display_available()


def test_the_probe_decides_when_a_display_is_set(monkeypatch):
    _linux_with_display(monkeypatch)
    monkeypatch.setattr(window, "_WINDOW_PROBE", "raise SystemExit(0)")  # a window opened
    assert window.window_supported() is True
    monkeypatch.setattr(window, "_WINDOW_PROBE", "import os; os.abort()")  # Qt's abort()
    assert window.window_supported() is False


def test_a_probe_that_hangs_counts_as_no_window(monkeypatch):
    _linux_with_display(monkeypatch)
    monkeypatch.setattr(window, "_WINDOW_PROBE", "import time; time.sleep(30)")
    assert window.window_supported(timeout_s=0.5) is False


def test_opencv_at_an_unreachable_display_is_refused(monkeypatch):
    # OpenCV's Qt backend aborts the process here; the probe runs it in a child
    _linux_with_display(monkeypatch, ":7391")
    assert window.window_supported() is False


# ----------------------------------------------------------------------------- without OpenCV's GUI

def _opencv_without_gui(monkeypatch):
    """This OpenCV as the edge extra's opencv-python-headless is: no UI framework."""
    import cv2

    monkeypatch.setattr(cv2, "currentUIFramework", lambda: "", raising=False)


def test_the_ui_framework_says_whether_opencv_has_a_gui(monkeypatch):
    import cv2

    monkeypatch.setattr(cv2, "currentUIFramework", lambda: "QT", raising=False)
    assert window.opencv_has_gui()
    _opencv_without_gui(monkeypatch)
    assert not window.opencv_has_gui()
    monkeypatch.delattr(cv2, "currentUIFramework")  # an OpenCV too old to say: the probe decides
    assert window.opencv_has_gui()


def test_no_gui_and_no_tk_says_what_to_do_instead(monkeypatch):
    _linux_with_display(monkeypatch)
    _opencv_without_gui(monkeypatch)
    monkeypatch.setitem(sys.modules, "tkinter", None)  # Debian without python3-tk
    with pytest.raises(UsageError) as raised:
        window.open_window(headless=False, verbose=False, pace_fps=0.0)
    message = str(raised.value)
    assert "\n" not in message
    assert "--headless" in message and "--serve" in message and "python3-tk" in message
    # --headless, or no display at all, never asks for a window
    assert window.open_window(headless=True, verbose=False, pace_fps=0.0) is None
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert window.open_window(headless=False, verbose=False, pace_fps=0.0) is None


def test_tk_at_an_unreachable_display_falls_back_to_lines(monkeypatch, caplog):
    pytest.importorskip("tkinter", reason="this Python has no Tk (Debian: python3-tk)")
    _linux_with_display(monkeypatch, ":7391")
    _opencv_without_gui(monkeypatch)
    assert window.open_window(headless=False, verbose=False, pace_fps=0.0) is None
    assert "Tk cannot open a window" in caplog.text


@pytest.fixture()
def xvfb_display():
    """A virtual X display (Xvfb) for the length of a test, as DISPLAY names it."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (apt install xvfb): the Tk window needs a display")
    for number in range(73, 99):
        if not Path(f"/tmp/.X11-unix/X{number}").exists():
            break
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "800x600x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{number}").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Xvfb :{number} did not start")
            time.sleep(0.05)
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_opencv_without_gui_shows_frames_with_tk(monkeypatch, xvfb_display):
    pytest.importorskip("tkinter", reason="this Python has no Tk (Debian: python3-tk)")
    from edge_runtime.classifier import Prediction
    from edge_runtime.stream.tk_window import TkWindow

    _linux_with_display(monkeypatch, xvfb_display)
    _opencv_without_gui(monkeypatch)
    shown = window.open_window(headless=False, verbose=False, pace_fps=0.0)
    assert isinstance(shown, TkWindow)
    try:
        frame = np.zeros((120, 160, 3), np.uint8)
        frame[..., 0] = 200  # blue in BGR
        frame[..., 2] = 10
        assert shown.show(frame, [Prediction("circle", 0, 0.9)]) is True
        # the bottom-right corner has no caption: Tk shows the frame's pixel, as RGB
        assert shown._photo.get(159, 119) == (10, 0, 200)
        assert (shown._photo.width(), shown._photo.height()) == (160, 120)
        shown._root.focus_force()  # keys go to the focused window, as on a desktop
        shown._root.event_generate("<KeyPress-q>", when="tail")
        assert shown.show(frame, []) is False  # q quits, as in OpenCV's window
    finally:
        shown.close()
