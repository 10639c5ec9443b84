"""Accuracy and agreement with Keras, measured through the runners that are timed.

Images come in batches of uint8 model input — the whole split is never held as float32
(10k images at 224 px would be 6 GB) — from the bundle's evaluation set on a device, or
decoded from the run's split on the workstation.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from benchmarks.runners import Runner
from benchmarks.timing import ModelResult
from common.progress import progress_bar

KERAS = "keras"
"""The runner whose top-1 defines agreement when the batches carry no Keras answers."""


def accuracy_pass(runners: dict[str, Runner], results: dict[str, ModelResult],
                  batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                  total: int, progress: bool = True) -> int:
    """Fill ``accuracy``, ``agreement`` and ``top1`` of every result; return the number of
    images.

    Args:
        batches: ``(pixels uint8 (B, H, W, 3), labels (B,), keras_top1 (B,) or None)``;
            with None, agreement is with the ``keras`` runner's own answers.
        total: images expected, for the progress bar only.
    """
    correct = dict.fromkeys(runners, 0)
    agree = dict.fromkeys(runners, 0)
    answers: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    n = 0
    with progress_bar(total * len(runners), "accuracy", progress) as bar:
        for pixels, labels, keras_top1 in batches:
            top1 = {name: runner.predict_all(pixels, bar).argmax(1)
                    for name, runner in runners.items()}
            reference = top1[KERAS] if keras_top1 is None else np.asarray(keras_top1)
            for name in runners:
                correct[name] += int(np.sum(top1[name] == np.asarray(labels)))
                agree[name] += int(np.sum(top1[name] == reference))
                answers[name].append(top1[name])
            n += len(pixels)
    for name, result in results.items():
        result.accuracy = correct[name] / n if n else 0.0
        result.agreement = agree[name] / n if n else 0.0
        result.top1 = np.concatenate(answers[name]) if answers[name] else np.zeros(0, np.int64)
    return n
