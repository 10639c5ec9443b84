"""The calibration progress bar reaches the terminal although the converter runs silenced."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import time
from types import SimpleNamespace

import numpy as np

from export import convert as conversion
from export.formats import FORMATS


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0.2)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the other end is closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


@contextlib.contextmanager
def terminal_on_fd2():
    """fd 2 is a terminal (a pseudo-terminal) inside the block; yields a function reading it.

    Not a fixture: pytest re-points fd 2 at its capture file between set-up and the test.
    """
    master, slave = pty.openpty()
    saved = os.dup(2)
    os.dup2(slave, 2)
    try:
        yield lambda: _read_all(master)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(slave)
        os.close(master)


def test_calibration_bar_shows_while_the_converter_is_silenced(monkeypatch):
    import tensorflow as tf

    class Converter:  # what TFLiteConverter does with the dataset, without the minutes
        def __init__(self):
            self.target_spec = SimpleNamespace()

        def convert(self):
            os.write(2, b"converter noise\n")  # native output, to be silenced
            images = sum(1 for _ in self.representative_dataset())
            return b"\0\0\0\0TFL3" + bytes([images])

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model",
                        staticmethod(lambda model: Converter()))
    calibration = np.zeros((5, 8, 8, 3), np.uint8)
    with terminal_on_fd2() as read_terminal:
        flatbuffer = conversion.convert(None, FORMATS["int8"], calibration, "uint8",
                                        progress=True)
        shown = read_terminal()
    assert flatbuffer[-1] == 5
    assert "calibrating int8" in shown and "/5" in shown, repr(shown)
    assert "converter noise" not in shown


def test_no_bar_when_progress_is_off(monkeypatch):
    import tensorflow as tf

    class Converter:
        target_spec = SimpleNamespace()

        def convert(self):
            return bytes(sum(1 for _ in self.representative_dataset()))

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model",
                        staticmethod(lambda model: Converter()))
    with terminal_on_fd2() as read_terminal:
        conversion.convert(None, FORMATS["int8"], np.zeros((3, 8, 8, 3), np.uint8), "uint8",
                           progress=False)
        shown = read_terminal()
    assert "calibrating" not in shown


def test_a_float_conversion_shows_its_seconds_while_the_converter_is_silenced(monkeypatch):
    import tensorflow as tf

    class Converter:  # a float conversion: nothing to count, seconds of work
        def __init__(self):
            self.target_spec = SimpleNamespace()

        def convert(self):
            os.write(2, b"converter noise\n")
            time.sleep(0.3)
            return b"\0\0\0\0TFL3"

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model",
                        staticmethod(lambda model: Converter()))
    with terminal_on_fd2() as read_terminal:
        conversion.convert(None, FORMATS["fp16"], None, "uint8", progress=True)
        shown = read_terminal()
    assert "converting fp16: 00:00" in shown, repr(shown)
    assert "converter noise" not in shown


def test_the_quantization_debugger_counts_its_images_on_the_terminal():
    from export.quant_debug import quantization_report
    from tests.test_quant_debug import _tiny_cnn

    calibration = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 3)).astype(np.uint8)
    with terminal_on_fd2() as read_terminal:
        rows = quantization_report(_tiny_cnn(outlier=False), calibration, progress=True)
        shown = read_terminal()
    assert rows and "quantization debugger" in shown and "/32" in shown, repr(shown)
