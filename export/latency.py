"""A short, interleaved latency measurement of a few TFLite models on this machine, for the
export's own reports (what keeping layers in float costs in milliseconds beside bytes).

The models take turns in rounds (in a rotated order) so a burst of load from elsewhere on a
shared machine lands on all of them, as in ``benchmarks/timing.py``, whose full benchmark this
is not: about a hundred invocations each, ``invoke()`` alone on the clock. ``edge-bench`` is the
measurement to quote; this one tells the models apart.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.quiet import quiet_output
from edge_runtime.classifier import Classifier

ROUNDS, RUNS_PER_ROUND, WARMUP = 7, 15, 5
"""Each model runs WARMUP untimed, then ROUNDS × RUNS_PER_ROUND timed inferences."""


def interleaved_latency_ms(models: Sequence[bytes], images: np.ndarray,
                           threads: int | None = None, rounds: int = ROUNDS,
                           runs: int = RUNS_PER_ROUND, warmup: int = WARMUP) -> list[float]:
    """The median of each model's per-round median inference time, in milliseconds.

    Args:
        models: TFLite flatbuffers taking the same input (written to a temporary folder).
        images: uint8 (N, H, W, 3) pictures, fed in turn through the edge runtime's
            preprocessing.
        threads: interpreter threads (default: every usable core).
    """
    with tempfile.TemporaryDirectory(prefix="edge-export-latency-") as scratch:
        classifiers = []
        for i, flatbuffer in enumerate(models):
            path = Path(scratch) / f"model_{i}.tflite"
            path.write_bytes(flatbuffer)
            with quiet_output():
                classifiers.append(Classifier(path, threads=threads))
        tensors = [[c.input_tensor(image) for image in images] for c in classifiers]
        for c, inputs in zip(classifiers, tensors):
            for k in range(warmup):
                c.run(inputs[k % len(inputs)])
        medians: list[list[float]] = [[] for _ in classifiers]
        order = list(range(len(classifiers)))
        gc_was_enabled = gc.isenabled()
        gc.disable()  # no collection pause lands on one model's clock
        try:
            for r in range(rounds):
                for m in order[r % len(order):] + order[:r % len(order)]:
                    c, inputs = classifiers[m], tensors[m]
                    c.run(inputs[0])  # the other model just evicted this one from the caches
                    times = []
                    for k in range(runs):
                        c.set_input_tensor(inputs[(r * runs + k) % len(inputs)])
                        started = time.perf_counter()
                        c.invoke()
                        times.append((time.perf_counter() - started) * 1000)
                    medians[m].append(float(np.median(times)))
        finally:
            if gc_was_enabled:
                gc.enable()
    return [float(np.median(m)) for m in medians]
