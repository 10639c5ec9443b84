"""The evaluation set a bundle carries, so a device can measure accuracy without the dataset.

``edge-export`` saves the preprocessed pixels it verified every variant with (uint8, exactly
what the models were fed), the true class of each image and Keras's top-1 for it. On a device,
``edge-bench BUNDLE`` then computes accuracy and agreement with Keras from this file alone: no
TensorFlow, no image folder, no decoding differences. A ``.npz`` archive read with numpy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.errors import ManifestError

EVAL_SET_FILE = "eval_set.npz"
DEFAULT_SAMPLES = 300
"""How many images export puts in the bundle unless told otherwise (stratified)."""


@dataclass(frozen=True)
class EvalSet:
    """Preprocessed evaluation images with their labels and Keras's answers."""

    pixels: np.ndarray
    """uint8 (N, H, W, 3): model input, RGB 0–255, already resized."""
    labels: np.ndarray
    """int (N,): the true class index of each image."""
    keras_top1: np.ndarray
    """int (N,): the class the Keras model chose for each image."""

    def __post_init__(self) -> None:
        n = len(self.pixels)
        if self.pixels.ndim != 4 or self.pixels.shape[3] != 3 or self.pixels.dtype != np.uint8:
            raise ValueError(f"eval set pixels must be uint8 (N, H, W, 3), got "
                             f"{self.pixels.dtype} {self.pixels.shape}")
        if len(self.labels) != n or len(self.keras_top1) != n:
            raise ValueError(f"eval set: {n} images but {len(self.labels)} labels and "
                             f"{len(self.keras_top1)} Keras answers")

    def __len__(self) -> int:
        return len(self.pixels)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (compressed: preprocessed pictures compress well)."""
        from edge_runtime.fileio import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, pixels=self.pixels, labels=self.labels,
                                    keras_top1=self.keras_top1)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvalSet:
        """Read an eval set; raises :class:`ManifestError` when it is missing or damaged."""
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(np.asarray(data["pixels"]), np.asarray(data["labels"]),
                           np.asarray(data["keras_top1"]))
        except FileNotFoundError:
            raise ManifestError(f"{path} does not exist: re-run edge-export") from None
        except (OSError, KeyError, ValueError) as exc:
            raise ManifestError(f"{path}: not a readable eval set ({exc})") from None


def stratified_indices(labels: np.ndarray | list[int], limit: int, seed: int = 0) -> np.ndarray:
    """Up to ``limit`` indices into ``labels``, classes taking turns, in ascending order."""
    labels = np.asarray(labels)
    if limit >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    chosen: list[int] = []
    while len(chosen) < limit:
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(int(queue.pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))
