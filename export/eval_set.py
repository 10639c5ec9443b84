"""The evaluation set a bundle carries (``eval_set.npz``): which images, and collecting them.

A stratified sample of the evaluation split, kept as the very uint8 pixels verification fed
the models, with their true classes and Keras's top-1, so a device measures accuracy and
agreement with Keras without TensorFlow or the image folder (:mod:`edge_runtime.eval_set`).
"""

from __future__ import annotations

import numpy as np

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
