"""A camera run's counts stay small however long it runs, and periods are cut on time."""

from __future__ import annotations

import statistics

import pytest

from edge_runtime.classifier import Prediction
from edge_runtime.stream.summary import LATENCY_SAMPLE, PeriodicSummary, StreamSummary

pytestmark = pytest.mark.edge


def _top(label: str) -> list[Prediction]:
    return [Prediction(label, 0, 0.9)]


def test_a_months_long_run_keeps_a_bounded_sample_of_latencies():
    summary = StreamSummary()
    frames = 5 * LATENCY_SAMPLE
    for n in range(frames):  # latencies spread evenly over 0-100 ms: the median is 50
        summary.add(_top("cat" if n % 3 else "dog"), 100.0 * n / frames)
    assert summary.frames == frames and len(summary.latencies_ms) == LATENCY_SAMPLE
    assert abs(summary.inference_ms_p50 - 50.0) < 3.0  # a uniform sample keeps the median
    assert summary.most_frequent == ("cat", frames - (frames + 2) // 3)


def test_a_short_run_keeps_every_latency():
    summary = StreamSummary()
    for ms in (3.0, 1.0, 2.0):
        summary.add([], ms)
    assert summary.latencies_ms == [3.0, 1.0, 2.0] and summary.inference_ms_p50 == 2.0
    assert summary.most_frequent is None  # nothing above the threshold


def test_periods_are_cut_on_time():
    now = [0.0]
    periods = PeriodicSummary(10.0, clock=lambda: now[0])
    done = []
    for second, label in [(1, "cat"), (4, "dog"), (9, "cat"), (10, "cat"), (12, "dog"),
                          (25, "dog")]:
        now[0] = second
        period = periods.add(_top(label), float(second))
        if period is not None:
            done.append(period)
    assert [(p.frames, p.seconds, p.most_frequent) for p in done] == [
        (4, 10.0, ("cat", 3)), (2, 15.0, ("dog", 2))]
    assert statistics.median(done[0].latencies_ms) == done[0].inference_ms_p50 == 6.5
    assert done[1].fps == 2 / 15
