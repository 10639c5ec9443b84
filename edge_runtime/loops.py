"""The two ways edge-classify feeds a model: a list of files, and a stream of camera or video frames.

Both report through callbacks, so the command line decides how results are shown (a table,
JSON lines, a window) and the loops stay testable without a terminal.
"""

from __future__ import annotations

import contextlib
import signal
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.camera import FrameGrabber, to_rgb_frame
from edge_runtime.classifier import Classifier, Prediction
from edge_runtime.errors import ImageError

HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def signals_held():
    """Hold Ctrl-C and SIGTERM back for the block; one that came meanwhile is raised after it.

    Masking the signal would not do: the kernel hands it to any thread (the capture thread),
    and Python then interrupts the main thread all the same. So the handlers are swapped for
    one that takes note, and a noted signal is raised again, to the real handler, at the end.
    Only the main thread may set handlers (and only it is interrupted); elsewhere this does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: noted.append(signum))
                for signum in HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            signal.raise_signal(noted[0])


FrameCallback = Callable[[int, np.ndarray, list[Prediction], float], bool]
"""``(frame number, BGR frame, predictions, latency ms)`` → False to stop the stream."""


def classify_files(classifier: Classifier, paths: Sequence[Path], k: int, threshold: float,
                   on_result: Callable[[str, list[Prediction], float], None],
                   on_failure: Callable[[Path, ImageError], None]) -> int:
    """Classify image files one by one; an unreadable file is reported and skipped.

    Args:
        classifier: the model to run.
        paths: image files.
        k, threshold: passed to :meth:`Classifier.classify`.
        on_result: called with (source, predictions, latency ms) for each file read.
        on_failure: called with (path, error) for each file that is not a readable image.

    Returns:
        The number of files that could not be read.
    """
    failed = 0
    for path in paths:
        try:
            predictions, latency_ms = classifier.classify_file(path, k, threshold)
        except ImageError as exc:
            failed += 1
            on_failure(path, exc)
            continue
        on_result(str(path), predictions, latency_ms)
    return failed


@dataclass
class StreamSummary:
    """What a camera or video run did."""

    frames: int = 0
    """Frames classified."""
    seconds: float = 0.0
    """Wall time from the first frame taken to the last one classified."""
    latencies_ms: list[float] = field(default_factory=list)
    """Inference time of each frame (set input, invoke, read output)."""
    dropped: int = 0
    """Camera frames replaced by a newer one before they could be classified."""
    ended_by: str = ""
    """Why it ended: "end" (source exhausted), "max-frames", "stop" (window) or "interrupt"."""

    @property
    def fps(self) -> float:
        """Frames classified per second of wall time (capture, preprocess, inference, output)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def inference_ms_p50(self) -> float | None:
        """Median inference time, None when no frame was classified."""
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    def to_json(self) -> dict:
        """The ``{"summary": ...}`` object that ends a ``--json`` camera run."""
        p50 = self.inference_ms_p50
        return {"summary": {"frames": self.frames, "fps": round(self.fps, 3),
                            "inference_ms_p50": round(p50, 3) if p50 is not None else None}}


def classify_stream(classifier: Classifier, grabber: FrameGrabber, k: int = 3,
                    threshold: float = 0.0, max_frames: int | None = None,
                    on_frame: FrameCallback | None = None) -> StreamSummary:
    """Classify frames from a running :class:`FrameGrabber` until it ends.

    Each frame is the newest one captured (see :mod:`edge_runtime.camera`),
    converted from OpenCV's BGR to RGB before preprocessing. Ctrl-C ends the
    run like the end of the video does: the summary is still returned.

    Args:
        classifier: the model to run.
        grabber: an opened frame source.
        k, threshold: passed to :meth:`Classifier.classify`.
        max_frames: stop after this many frames (None: until the source ends).
        on_frame: called after each frame; returning False stops the run.

    Returns:
        The run's :class:`StreamSummary`.
    """
    summary = StreamSummary()
    started = time.perf_counter()
    try:
        for number, frame in grabber.frames():
            predictions, latency_ms = classifier.classify(to_rgb_frame(frame), k, threshold)
            # a frame's result going out and its being counted are one step: Ctrl-C or
            # SIGTERM arriving in between waits until both are done, so the summary counts
            # exactly the frames whose results were delivered
            with signals_held():
                keep_going = on_frame is None or on_frame(number, frame, predictions, latency_ms)
                summary.frames += 1
                summary.latencies_ms.append(latency_ms)
            if not keep_going:
                summary.ended_by = "stop"
                break
            if max_frames is not None and summary.frames >= max_frames:
                summary.ended_by = "max-frames"
                break
        else:
            summary.ended_by = "end"
    except KeyboardInterrupt:
        summary.ended_by = "interrupt"
    finally:
        summary.seconds = time.perf_counter() - started
        grabber.stop()
        summary.dropped = grabber.dropped
    return summary
