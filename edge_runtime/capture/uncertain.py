"""Frames the model found hard, kept for labelling (``edge-classify --camera --save-uncertain``).

A frame whose top score is below ``below`` (or, with ``margin``, whose top two scores are
closer than it) is saved into ``DIR/<predicted label>/`` with a line in ``DIR/uncertain.jsonl``:
``{"time", "file", "label", "scores" (the top-k), "model_sha256", "source"}``. Saving happens on
a thread of its own that the camera loop never waits for: a frame offered while the thread is
still writing the last one is dropped and counted, as are frames over ``max_per_minute``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from common.labels import label_problem
from edge_runtime.capture.writer import CaptureError, CaptureLimit, PictureWriter
from edge_runtime.classifier import Prediction

log = logging.getLogger(__name__)

JOURNAL = "uncertain.jsonl"
"""The JSON-lines file beside the label folders: one line per saved frame."""

NO_LABEL = "unlabelled"
"""The folder for a frame with no prediction above ``--threshold``, or a label that cannot be a
folder name."""


@dataclass(frozen=True)
class UncertainOptions:
    """``--save-uncertain DIR [--below P] [--margin M] [--max-per-minute N]``."""

    folder: str
    """Where frames go: ``folder/<predicted label>/`` and ``folder/uncertain.jsonl``."""
    below: float = 0.5
    """A frame whose top score is below this is kept."""
    margin: float | None = None
    """Also kept: a frame whose top two scores are closer than this (None: not asked)."""
    max_per_minute: int = 30
    """The most frames kept in any minute."""
    max_mb: float | None = None
    """The most MB written (None: no limit but the disk's reserve)."""
    min_free_mb: float = 200.0
    """Free disk space left alone."""


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
        model_sha256: the model's hash, in every journal line; set it anew when the model
            changes (a frame offered before keeps the hash of the model that classified it).
        clock: seconds, for the per-minute limit (tests pass a fake).
    """

    def __init__(self, options: UncertainOptions, model_sha256: str,
                 clock=time.monotonic) -> None:
        self.options = options
        self.model_sha256 = model_sha256
        self.clock = clock
        self.writer = PictureWriter(options.folder, options.max_mb, options.min_free_mb,
                                    prefix="uncertain")
        self.saved = 0
        self.dropped = 0
        """Uncertain frames not saved because the thread was still writing."""
        self.over_rate = 0
        """Uncertain frames not saved because of ``max_per_minute``."""
        self.stopped: str | None = None
        """Why saving stopped early (a limit reached), None while it goes on."""
        self._recent: deque[float] = deque()
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="save-uncertain", daemon=True)
        self._thread.start()

    def offer(self, frame_bgr: np.ndarray, predictions: list[Prediction], source: str) -> bool:
        """Keep the frame if it is uncertain and there is room; never waits. True when queued."""
        if self.stopped or not is_uncertain(predictions, self.options.below,
                                            self.options.margin):
            return False
        now = self.clock()
        while self._recent and now - self._recent[0] >= 60.0:
            self._recent.popleft()
        if len(self._recent) >= self.options.max_per_minute:
            self.over_rate += 1
            return False
        try:  # the camera loop may draw on its frame afterwards: a copy is queued
            self._queue.put_nowait((time.time(), frame_bgr.copy(), predictions, source,
                                    self.model_sha256))
        except queue.Full:
            self.dropped += 1
            return False
        self._recent.append(now)
        return True

    def _run(self) -> None:
        journal = os.path.join(self.options.folder, JOURNAL)
        while True:
            item = self._queue.get()
            if item is None:
                return
            when, frame, predictions, source, model_sha256 = item
            label = predictions[0].label if predictions else NO_LABEL
            if label_problem(label):
                label = NO_LABEL
            try:
                path = self.writer.save(frame, label)
                line = {"time": round(when, 3), "file": f"{label}/{path.name}", "label": label,
                        "scores": [{"label": p.label, "score": round(float(p.score), 5)}
                                   for p in predictions],
                        "model_sha256": model_sha256, "source": source}
                with open(journal, "a", encoding="utf-8") as f:
                    f.write(json.dumps(line) + "\n")
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
        line = (f"save-uncertain: {self.saved} frame(s) saved in {self.options.folder}, "
                f"{self.dropped} dropped (writer busy), {self.over_rate} over "
                f"--max-per-minute {self.options.max_per_minute}")
        return line + (f"; stopped early: {self.stopped}" if self.stopped else "")
