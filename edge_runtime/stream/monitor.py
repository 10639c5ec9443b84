"""One monitoring record a minute of a camera run (``edge-classify --monitor``): what the camera
saw and how sure the model was, kept on the device for ``edge-collect`` and its drift report.

Each record goes into the data root's ``monitor/monitor.jsonl`` (appended and flushed, rotated
past 1 MB to ``monitor.1.jsonl``, the older one dropped: two files, about four weeks, at most
2 MB; :mod:`edge_runtime.capture.data_root`)::

    {"time", "model_version", "frames", "fps", "class_counts": {label: n}, "mean_top1",
     "uncertain_share", "soc_temp_c", "seconds"}

``time`` is the end of the minute, ``seconds`` its length (the last record of a run, and one
cut short by a model switch, is shorter), ``class_counts`` the frames each label was first,
``mean_top1`` the mean top-1 score, ``uncertain_share`` the share of frames
:func:`~edge_runtime.capture.uncertain.is_uncertain` calls uncertain (``--below``, 0.5 unless
given, and ``--margin``), ``soc_temp_c`` the SoC's temperature then (None where Linux reports
none). The record is written on a thread of its own, so a slow card never holds a frame up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common.thermal import soc_temperature
from edge_runtime.capture import data_root
from edge_runtime.capture.uncertain import DEFAULT_BELOW, is_uncertain
from edge_runtime.classifier import Prediction
from edge_runtime.stream.summary import PeriodicSummary, StreamSummary

EVERY_S = 60.0
"""A record a minute."""

log = logging.getLogger(__name__)


def record_of(period: StreamSummary, uncertain: int, model_version: str | None,
              temperature: dict | None, when: float) -> dict:
    """The monitoring record of one period (see the module docstring)."""
    mean = period.mean_top1
    return {"time": data_root.utc_time(when), "model_version": model_version,
            "frames": period.frames, "fps": round(period.fps, 3),
            "class_counts": dict(sorted(period.top_labels.items())),
            "mean_top1": None if mean is None else round(mean, 4),
            "uncertain_share": round(uncertain / period.frames, 4) if period.frames else None,
            "soc_temp_c": temperature["celsius"] if temperature else None,
            "seconds": round(period.seconds, 3)}


class Monitor:
    """Counts a run's frames and writes a record each ``every_s`` (see the module docstring).

    Args:
        root: the data root.
        model_version: the live model's version; :meth:`model_changed` when it changes.
        below, margin: what an uncertain frame is (``--below``, ``--margin``).
        every_s: the record's period.
        clock: seconds, monotonic (tests pass a fake).
        temperature: the SoC's temperature now (:func:`common.thermal.soc_temperature`).
    """

    def __init__(self, root: str | os.PathLike, model_version: str | None,
                 below: float = DEFAULT_BELOW, margin: float | None = None,
                 every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic,
                 temperature: Callable[[], dict | None] = soc_temperature) -> None:
        self.path = Path(root) / data_root.MONITOR_FILE
        self.rotated = Path(root) / data_root.MONITOR_ROTATED
        self.model_version = model_version
        self.below = below
        self.margin = margin
        self.temperature = temperature
        self.written = 0
        """Records written so far."""
        self._periods = PeriodicSummary(every_s, clock)
        self._uncertain = 0
        self._writing: threading.Thread | None = None
        self._failed = False

    def add(self, predictions: list[Prediction], latency_ms: float) -> None:
        """Count one classified frame; a period that ends writes its record (aside)."""
        self._uncertain += is_uncertain(predictions, self.below, self.margin)
        self._write(self._periods.add(predictions, latency_ms))

    def model_changed(self, model_version: str | None) -> None:
        """A reload swapped a new model in: the minute so far is written under the old
        version, and a new one begins."""
        self._write(self._periods.end())
        self.model_version = model_version

    def close(self) -> None:
        """Write the last, shorter period (if it had frames) and wait for the writing."""
        self._write(self._periods.end())
        if self._writing is not None:
            self._writing.join(timeout=10.0)

    def _write(self, period: StreamSummary | None) -> None:
        if period is None:
            return
        uncertain, self._uncertain = self._uncertain, 0
        when, version = time.time(), self.model_version
        previous = self._writing

        def write() -> None:
            if previous is not None:  # records stay in order behind a slow card
                previous.join()
            record = record_of(period, uncertain, version, self.temperature(), when)
            try:
                data_root.append_record(self.path, record, data_root.MONITOR_MAX_BYTES,
                                        self.rotated)
                self.written += 1
            except OSError as exc:
                if not self._failed:  # once: the journal is no place for a line a minute
                    self._failed = True
                    log.warning(f"--monitor: cannot write {self.path} "
                                f"({exc.strerror or exc}); the run goes on")

        self._writing = threading.Thread(target=write, name="monitor", daemon=True)
        self._writing.start()
