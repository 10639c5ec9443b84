"""Deciding whether a preview window can open: display variables, then a probe in a child process."""

from __future__ import annotations

import sys

import pytest

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
