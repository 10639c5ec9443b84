"""The evaluation set a bundle carries (``eval_set.npz``): which images, and collecting them.

A stratified sample of the evaluation split, kept as the very uint8 pixels verification fed
the models, with their true classes, Keras's top-1 and each variant's top-1 here, so a device
measures accuracy and agreement with Keras, and checks that its kernels give the answers the
workstation's gave, without TensorFlow or the image folder (:mod:`edge_runtime.eval_set`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from common.quiet import quiet_output
from edge_runtime.classifier import Classifier
from edge_runtime.eval_set import EvalSet, stratified_indices
from export.images import Batch


class EvalSetCollector:
    """Keeps the chosen images of the verification pass (an observer of
    :func:`export.verify.evaluate`); memory is bounded by the number chosen."""

    def __init__(self, truth: np.ndarray, samples: int, seed: int = 0) -> None:
        self.truth = np.asarray(truth)
        self.chosen = stratified_indices(self.truth, samples, seed) if samples else \
            np.zeros(0, np.int64)
        self._pixels: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._keras: list[np.ndarray] = []

    def __call__(self, batch: Batch, keras_top1: np.ndarray) -> None:
        keep = np.isin(batch.indices, self.chosen)
        if keep.any():
            self._pixels.append(batch.pixels[keep])
            self._labels.append(self.truth[batch.indices[keep]])
            self._keras.append(np.asarray(keras_top1)[keep])

    def result(self) -> EvalSet | None:
        """The images kept (chosen ones that were readable), or None when there are none."""
        if not self._pixels:
            return None
        return EvalSet(np.concatenate(self._pixels),
                       np.concatenate(self._labels).astype(np.int64),
                       np.concatenate(self._keras).astype(np.int64))


def with_variant_answers(eval_set: EvalSet, variants: Mapping[str, Path],
                         labels_path: str | os.PathLike, threads: int | None = None) -> EvalSet:
    """``eval_set`` with each variant's top-1 on its images (``variant_top1``).

    Each variant runs through the edge runtime's :class:`Classifier`, fed the uint8 pixels
    through :meth:`Classifier.tensor_from_pixels` one image at a time, as ``edge-bench BUNDLE``
    feeds it on the device: the same answers on a device mean its kernels compute what this
    machine's did.

    Args:
        variants: name → ``.tflite`` file of the bundle being built.
        labels_path: the bundle's own ``labels.txt``.
    """
    answers = {}
    for name, path in variants.items():
        with quiet_output():  # the interpreter's "Created XNNPACK delegate" line
            classifier = Classifier(path, labels_path=labels_path, threads=threads)
        answers[name] = classifier.probabilities(eval_set.pixels).argmax(1).astype(np.int64)
    return replace(eval_set, variant_top1=answers)
