"""Frames the model found hard, kept for labelling (``edge-classify --camera --save-uncertain``).

A frame whose top score is below ``below`` (or, with ``margin``, whose top two scores are
closer than it) is saved into the data root's ``uncertain/<predicted label>/`` (or
``DIR/<predicted label>/`` for ``--save-uncertain DIR``) with a line in the folder's
``index.jsonl``: ``{"time", "file", "prediction", "scores" (the top-k), "model_version",
"source"}`` (:mod:`edge_runtime.capture.data_root`). Saving happens on a thread of its own that
the camera loop never waits for: a frame offered while the thread is still writing the last one
is dropped and counted, as are frames over ``max_per_minute``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from common.labels import label_problem
from edge_runtime.capture.writer import CaptureError, CaptureLimit, PerMinute, PictureWriter
from edge_runtime.classifier import Prediction

log = logging.getLogger(__name__)

DEFAULT_BELOW = 0.5
"""``--below``: a frame whose top score is under this is uncertain (the monitor's share of
uncertain frames uses it too when ``--save-uncertain`` is not given)."""

NO_LABEL = "unlabelled"
"""The folder for a frame with no prediction above ``--threshold``, or a label that cannot be a
folder name."""


@dataclass(frozen=True)
class UncertainOptions:
    """``--save-uncertain [DIR] [--below P] [--margin M] [--max-per-minute N]``."""

    folder: str | None
    """Where frames go: ``folder/<predicted label>/`` and ``folder/index.jsonl``; None: the
    data root's ``uncertain/`` (the writer is then the run's, given to the saver)."""
    below: float = DEFAULT_BELOW
    """A frame whose top score is below this is kept."""
    margin: float | None = None
    """Also kept: a frame whose top two scores are closer than this (None: not asked)."""
    max_per_minute: int = 30
    """The most frames kept in any minute."""
    max_mb: float | None = None
    """The most MB written (None: no limit but the disk's reserve), by a saver that makes its
    own writer (a camera run gives it its data root's, or the folder's, with the run's limits)."""
    min_free_mb: float = 200.0
    """Free disk space left alone, likewise."""


def is_uncertain(predictions: list[Prediction], below: float, margin: float | None) -> bool:
    """Whether a frame's predictions (sorted, best first) call for a second look."""
    if not predictions or predictions[0].score < below:
        return True
    return (margin is not None and len(predictions) > 1
            and predictions[0].score - predictions[1].score < margin)


class UncertainSaver:
    """The writer thread (see the module docstring); :meth:`close` ends it and says what it did.

    Args:
        options: what to keep, and the limits.
        model_version: the model's version (:func:`~edge_runtime.capture.data_root.model_version`),
            in every line; set it anew when the model changes (a frame offered before keeps
            the version of the model that classified it).
        clock: seconds, for the per-minute limit (tests pass a fake).
        writer: where frames go (the data root's ``uncertain/``, within the root's budget);
            None: a writer of its own into ``options.folder``.
        rate: the per-minute limit shared with the run's other automatic writers; None: one
            of its own, of ``options.max_per_minute``.
    """

    def __init__(self, options: UncertainOptions, model_version: str | None,
                 clock=time.monotonic, writer: PictureWriter | None = None,
                 rate: PerMinute | None = None) -> None:
        self.options = options
        self.model_version = model_version
        self.writer = writer if writer is not None else PictureWriter(
            options.folder, options.max_mb, options.min_free_mb, prefix="uncertain")
        self.rate = rate if rate is not None else PerMinute(options.max_per_minute, clock)
        self.saved = 0
        self.dropped = 0
        """Uncertain frames not saved because the thread was still writing."""
        self.over_rate = 0
        """Uncertain frames not saved because of ``max_per_minute``."""
        self.stopped: str | None = None
        """Why saving stopped early (a limit reached), None while it goes on."""
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="save-uncertain", daemon=True)
        self._thread.start()

    def offer(self, frame_bgr: np.ndarray, predictions: list[Prediction], source: str) -> bool:
        """Keep the frame if it is uncertain and there is room; never waits. True when queued."""
        if self.stopped or not is_uncertain(predictions, self.options.below,
                                            self.options.margin):
            return False
        if self._queue.full():  # checked first: a dropped frame takes no room in the minute
            self.dropped += 1
            return False
        if not self.rate.take():
            self.over_rate += 1
            return False
        try:  # the camera loop may draw on its frame afterwards: a copy is queued
            self._queue.put_nowait((time.time(), frame_bgr.copy(), predictions, source,
                                    self.model_version))
        except queue.Full:  # never: only this thread puts
            self.dropped += 1
            return False
        return True

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            when, frame, predictions, source, model_version = item
            label = predictions[0].label if predictions else NO_LABEL
            if label_problem(label):
                label = NO_LABEL
            try:
                self.writer.save(frame, label, when=when, record={
                    "prediction": predictions[0].label if predictions else None,
                    "scores": [{"label": p.label, "score": round(float(p.score), 5)}
                               for p in predictions],
                    "model_version": model_version, "source": source})
                self.saved += 1
            except (CaptureLimit, CaptureError, OSError) as exc:
                self.stopped = str(exc)
                log.warning(f"--save-uncertain stopped: {exc}")
            except Exception as exc:  # a thread has no caller: said, and saving stops
                self.stopped = f"{type(exc).__name__}: {exc}"
                log.warning(f"--save-uncertain stopped: {self.stopped}")

    def close(self) -> str:
        """Finish the frame being written, end the thread; returns the summary line."""
        try:  # waits for the thread to take the frame it may still hold
            self._queue.put(None, timeout=10.0)
        except queue.Full:
            pass  # a writer stuck on a hung disk: the daemon thread is left behind
        self._thread.join(timeout=10.0)
        line = (f"save-uncertain: {self.saved} frame(s) saved in {self.writer.root}, "
                f"{self.dropped} dropped (writer busy), {self.over_rate} over "
                f"--max-per-minute {self.options.max_per_minute}")
        return line + (f"; stopped early: {self.stopped}" if self.stopped else "")
