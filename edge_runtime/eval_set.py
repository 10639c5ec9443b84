"""The evaluation set a bundle carries, so a device can measure accuracy without the dataset.

``edge-export`` saves the preprocessed pixels it verified every variant with (uint8, exactly
what the models were fed), the true class of each image, Keras's top-1 for it and each
variant's own top-1 on the workstation. On a device, ``edge-bench BUNDLE`` then computes
accuracy, agreement with Keras and whether each variant gives the answers it gave on the
workstation from this file alone: no TensorFlow, no image folder, no decoding differences.
A ``.npz`` archive read with numpy: ``pixels``, ``labels``, ``keras_top1`` and one
``answers_<variant>`` array per variant (absent in bundles exported before they were kept).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_runtime.errors import ManifestError

EVAL_SET_FILE = "eval_set.npz"
ANSWERS_PREFIX = "answers_"
"""``answers_<variant>`` in the archive: that variant's top-1 on the workstation, at export."""
DEFAULT_SAMPLES = 300
"""How many images export puts in the bundle unless told otherwise (stratified)."""

INT8_AGREEMENT = 0.75
"""The share of images on which an int8 variant's top-1 on a device must equal the workstation's.
Float kernels agree to rounding (a float variant must match on every image); int8 ones requantize
differently on ARM and x86, and in a tiny model trained from scratch on 70 images, with calibration
ranges that have not settled, that moves borderline answers: seen in ``make pi-check``, 3 and 10
of 100 images in two trainings (the same pixels gave 0.62 square on arm64, 0.54 triangle on x86). A
real fault (the kernels, the preprocessing, the colour order) answers near chance, 20-40 % of
images. ``make pi-check`` and ``edge-model activate`` hold devices to it."""


def required_agreement(variant: str) -> float:
    """The share of the workstation's answers variant ``variant`` must give on a device: every
    one for a float variant, :data:`INT8_AGREEMENT` for an int8 one (``int8``, ``int8_*``)."""
    return INT8_AGREEMENT if variant.startswith("int8") else 1.0


@dataclass(frozen=True)
class EvalSet:
    """Preprocessed evaluation images with their labels and Keras's answers."""

    pixels: np.ndarray
    """uint8 (N, H, W, 3): model input, RGB 0–255, already resized."""
    labels: np.ndarray
    """int (N,): the true class index of each image."""
    keras_top1: np.ndarray
    """int (N,): the class the Keras model chose for each image."""
    variant_top1: Mapping[str, np.ndarray] = field(default_factory=dict)
    """Variant name → int (N,): the class that variant chose for each image on the
    workstation, through the edge runtime; empty for a bundle exported before they were kept."""

    def __post_init__(self) -> None:
        n = len(self.pixels)
        if self.pixels.ndim != 4 or self.pixels.shape[3] != 3 or self.pixels.dtype != np.uint8:
            raise ValueError(f"eval set pixels must be uint8 (N, H, W, 3), got "
                             f"{self.pixels.dtype} {self.pixels.shape}")
        if len(self.labels) != n or len(self.keras_top1) != n:
            raise ValueError(f"eval set: {n} images but {len(self.labels)} labels and "
                             f"{len(self.keras_top1)} Keras answers")
        for name, answers in self.variant_top1.items():
            if len(answers) != n:
                raise ValueError(f"eval set: {n} images but {len(answers)} answers of {name}")

    def __len__(self) -> int:
        return len(self.pixels)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (compressed: preprocessed pictures compress well)."""
        from common.fileio import atomic_write

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, pixels=self.pixels, labels=self.labels,
                                    keras_top1=self.keras_top1,
                                    **{ANSWERS_PREFIX + name: answers
                                       for name, answers in self.variant_top1.items()})

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvalSet:
        """Read an eval set; raises :class:`ManifestError` when it is missing or damaged."""
        try:
            with np.load(path, allow_pickle=False) as data:
                answers = {key[len(ANSWERS_PREFIX):]: np.asarray(data[key])
                           for key in data.files if key.startswith(ANSWERS_PREFIX)}
                return cls(np.asarray(data["pixels"]), np.asarray(data["labels"]),
                           np.asarray(data["keras_top1"]), answers)
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
