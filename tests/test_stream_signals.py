"""A Ctrl-C or SIGTERM that lands while a frame's result goes out never splits the output from
the count: the summary counts exactly the frames whose results were delivered."""

from __future__ import annotations

import os
import signal
import time

import pytest

from edge_runtime.classifier import Classifier
from edge_runtime.sources.opencv_source import OpenCVSource
from edge_runtime.stream.loop import classify_stream
from tests.helpers import demo_images, write_video

pytestmark = pytest.mark.edge


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_delivery_is_held_until_the_frame_is_counted(bundle, demo_dir, tmp_path,
                                                                     signum, ctrl_c_handler):
    video = write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=8)
    classifier = Classifier(bundle / "model_int8.tflite")
    delivered = []

    def deliver(number, *_):
        delivered.append(number)  # the line is out ...
        if number == 2:
            os.kill(os.getpid(), signum)  # ... and the signal lands before it is counted
            time.sleep(0.05)
        return True

    def as_ctrl_c(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, as_ctrl_c)  # what run_command installs
    try:
        summary = classify_stream(classifier, OpenCVSource(str(video)), on_frame=deliver)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert summary.ended_by == "interrupt"
    assert summary.frames == len(delivered) == 2
