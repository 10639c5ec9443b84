"""Timing models fairly on a shared machine: warm-up, interleaved rounds, no GC on the clock.

Timing on a shared machine is noisy, so the models are interleaved: each of ``repeats``
rounds gives every model a chunk of its timed runs, in a rotated order, instead of timing one
model after the other (where a burst of load from elsewhere would land on one model only).
The spread of the per-round medians is kept so the report can flag a speed difference smaller
than that spread as noise.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass, field

import numpy as np

from benchmarks.runners import Runner
from common.progress import progress_bar


@dataclass
class ModelResult:
    """What was measured for one model (one row of the report)."""

    model: str
    kind: str
    """``keras`` or ``tflite``."""
    file: str
    size_bytes: int
    accuracy: float = 0.0
    agreement: float = 0.0
    top1: np.ndarray | None = None
    """The model's answer for each image of the accuracy pass, in order (not in the report)."""
    latencies_ms: list[float] = field(default_factory=list)
    repeat_medians_ms: list[float] = field(default_factory=list)
    loop_seconds: float = 0.0
    memory: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    """Extra keys copied into the row (input dtype, backend, what export measured, ...)."""


@dataclass(frozen=True)
class TimingPlan:
    """How many inferences each model gets: warm-up, then ``runs`` split over ``repeats``."""

    runs: int
    warmup: int
    repeats: int


@contextlib.contextmanager
def gc_paused():
    """No garbage collection inside a timed loop: its pauses would land on whichever model runs."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def chunk_sizes(runs: int, repeats: int) -> list[int]:
    """``runs`` split into ``repeats`` near-equal chunks (the larger ones first)."""
    return [runs // repeats + (1 if i < runs % repeats else 0) for i in range(repeats)]


def timed_chunk(runner: Runner, images: np.ndarray, start: int, count: int,
                result: ModelResult) -> None:
    """``count`` timed inferences; latency is ``run()`` alone, the loop time is everything."""
    latencies = []
    began = time.perf_counter()
    for i in range(count):
        runner.prepare(images[(start + i) % len(images)])
        t0 = time.perf_counter()
        runner.run()
        latencies.append((time.perf_counter() - t0) * 1000)
        runner.output()
    result.loop_seconds += time.perf_counter() - began
    result.latencies_ms.extend(latencies)
    result.repeat_medians_ms.append(float(np.median(latencies)))


def time_interleaved(runners: dict[str, Runner], images: np.ndarray,
                     results: dict[str, ModelResult], plan: TimingPlan,
                     progress: bool = True) -> None:
    """Warm every model up, then time them round-robin over ``plan.repeats`` rounds.

    Each round rotates the order so no model always runs right after the
    same neighbour, and gives each model one untimed inference first: the
    previous model has just evicted its weights from the CPU caches, which
    a device running one model never suffers.
    """
    names = list(runners)
    sizes = chunk_sizes(plan.runs, plan.repeats)
    total = len(names) * (plan.warmup + plan.repeats + plan.runs)
    with progress_bar(total, "timing (interleaved)", progress) as bar:
        for name in names:
            runner = runners[name]
            for i in range(plan.warmup):
                runner.prepare(images[i % len(images)])
                runner.run()
                runner.output()
            bar.update(plan.warmup)
        start = 0
        for repeat, size in enumerate(sizes):
            order = names[repeat % len(names):] + names[:repeat % len(names)]
            for name in order:
                runner = runners[name]
                runner.prepare(images[start % len(images)])
                runner.run()
                with gc_paused():
                    timed_chunk(runner, images, start, size, results[name])
                bar.update(size + 1)
            start += size
