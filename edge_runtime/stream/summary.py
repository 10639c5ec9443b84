"""What a camera or video run did, in memory that does not grow with its length: the whole
run (:class:`StreamSummary`, the closing line) and periods of it (:class:`PeriodicSummary`,
``--summary-every``)."""

from __future__ import annotations

import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_runtime.classifier import FrameClassifier, Prediction

LATENCY_SAMPLE = 10_000
"""Inference times a :class:`StreamSummary` keeps for its median: every one up to this many
frames, then a uniform random sample of them (a service that runs for months must not keep a
number per frame)."""


@dataclass
class StreamSummary:
    """What a camera or video run (or one period of it) did."""

    frames: int = 0
    """Frames classified."""
    seconds: float = 0.0
    """Wall time from the first frame taken to the last one classified."""
    latencies_ms: list[float] = field(default_factory=list)
    """Inference time of each frame (set input, invoke, read output); past
    :data:`LATENCY_SAMPLE` frames, a uniform sample of them."""
    top_labels: Counter[str] = field(default_factory=Counter)
    """How many frames had each label first (a frame with nothing above the threshold: none)."""
    top1_total: float = 0.0
    """The frames' top-1 scores added up (a frame with nothing above the threshold: 0)."""
    dropped: int = 0
    """Camera frames replaced by a newer one before they could be classified."""
    ended_by: str = ""
    """Why it ended: "end" (source exhausted), "max-frames", "stop" (window), "interrupt", or
    "reload" (a new model that needs the camera opened again for it: :attr:`reloaded`)."""
    reloaded: FrameClassifier | None = field(default=None, repr=False, compare=False)
    """The model a reload brought when ``ended_by`` is "reload"."""
    shadow: dict | None = None
    """The shadow's agreement over the run or period (:mod:`edge_runtime.stream.shadow`),
    None without a shadow."""
    _sampler: random.Random = field(default_factory=lambda: random.Random(0), repr=False,
                                    compare=False)

    def add(self, predictions: list[Prediction], latency_ms: float) -> None:
        """Count one classified frame, in memory that does not grow with the frame count."""
        self.frames += 1
        if len(self.latencies_ms) < LATENCY_SAMPLE:
            self.latencies_ms.append(latency_ms)
        else:  # reservoir sampling: each frame's time is kept with the same probability
            slot = self._sampler.randrange(self.frames)
            if slot < LATENCY_SAMPLE:
                self.latencies_ms[slot] = latency_ms
        if predictions:
            self.top_labels[predictions[0].label] += 1
            self.top1_total += predictions[0].score

    @property
    def most_frequent(self) -> tuple[str, int] | None:
        """The label most often first and its frame count; None when no frame had one."""
        common = self.top_labels.most_common(1)
        return common[0] if common else None

    @property
    def fps(self) -> float:
        """Frames classified per second of wall time (capture, preprocess, inference, output)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def mean_top1(self) -> float | None:
        """The mean top-1 score, None when no frame was classified."""
        return self.top1_total / self.frames if self.frames else None

    @property
    def inference_ms_p50(self) -> float | None:
        """Median inference time, None when no frame was classified."""
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    def to_json(self) -> dict:
        """The ``{"summary": ...}`` object that ends a ``--json`` camera run."""
        p50 = self.inference_ms_p50
        out = {"frames": self.frames, "fps": round(self.fps, 3),
               "inference_ms_p50": round(p50, 3) if p50 is not None else None}
        if self.shadow is not None:
            out["shadow"] = self.shadow
        return {"summary": out}


class PeriodicSummary:
    """A stream's frames counted in periods of ``every_s`` seconds, for a summary line each.

    Args:
        every_s: the length of a period.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(self, every_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._began = clock()
        self._period = StreamSummary()

    def add(self, predictions: list[Prediction], latency_ms: float) -> StreamSummary | None:
        """Count one frame; returns the period's summary when it is over (a new one begins),
        else None."""
        self._period.add(predictions, latency_ms)
        now = self._clock()
        if now - self._began < self.every_s:
            return None
        return self.end(now)

    def end(self, now: float | None = None) -> StreamSummary | None:
        """End the period at ``now`` (None: the clock's now; a new one begins): its summary,
        None when it had no frame."""
        now = self._clock() if now is None else now
        done, self._period = self._period, StreamSummary()
        done.seconds, self._began = now - self._began, now
        return done if done.frames else None
