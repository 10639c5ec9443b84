"""Choosing the int8 calibration images and refusing sets too poor to trust.

The commonest field failure of int8 is ranges fitted to the wrong pictures: preprocessed unlike
training, too few, or the same one many times. Calibration images here come from the train
split alone (the verification images never leak in), classes taking turns, through the very
preprocessing training used.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.progress import progress_bar
from export.errors import ExportError
from export.images import load_images
from train.splits import Splits

log = logging.getLogger(__name__)

MIN_CALIBRATION_SAMPLES = 32
"""Below this many calibration images the int8 ranges are guesses; refused unless forced."""


@dataclass(frozen=True)
class Calibration:
    """The calibration images and what the manifest records of them."""

    pixels: np.ndarray
    """uint8 (N, H, W, 3) model input."""
    info: dict
    """``{"split", "samples", "train_images", "per_class", "files"}`` for the manifest (and
    ``"ranges"``, :meth:`export.ranges.Settledness.to_json`, once measured)."""


def calibration_files(splits: Splits, n: int, seed: int = 0) -> list[Path]:
    """Up to ``n`` train-split files, stratified: classes take turns.

    Only the train split is used, so the verification images (test) never
    leak into calibration.
    """
    by_class: dict[int, list[str]] = {}
    for rel, label in zip(splits.files["train"], splits.labels["train"]):
        by_class.setdefault(label, []).append(rel)
    rng = random.Random(seed)
    queues = []
    for label in sorted(by_class):
        files = sorted(by_class[label])
        rng.shuffle(files)
        queues.append(files)
    chosen: list[str] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return [splits.root / rel for rel in chosen]


def check_calibration(images: np.ndarray, labels: list[int], classes: list[str], wanted: int,
                      force: bool) -> list[str]:
    """Refuse calibration sets too small or degenerate to trust; return warnings.

    Raises:
        ExportError: fewer than :data:`MIN_CALIBRATION_SAMPLES` images, or too few distinct
            ones, unless ``force``.
    """
    warnings = []
    unique = len({hashlib.sha1(img.tobytes()).hexdigest() for img in images})
    if len(images) < MIN_CALIBRATION_SAMPLES and not force:
        raise ExportError(f"only {len(images)} calibration images in the train split (asked for "
                          f"{wanted}, need at least {MIN_CALIBRATION_SAMPLES} for trustworthy int8 "
                          "ranges); add images, or pass --force-calibration to use them anyway")
    if unique < min(len(images), MIN_CALIBRATION_SAMPLES) and not force:
        raise ExportError(f"the {len(images)} calibration images hold only {unique} distinct "
                          "pictures; int8 ranges would fit those alone. Pass --force-calibration "
                          "to use them anyway")
    counts = Counter(labels)
    if len(counts) == 1:
        warnings.append(f"all calibration images are of class '{classes[labels[0]]}': "
                        "int8 ranges may not fit the other classes")
    return warnings


def load_calibration(splits: Splits, classes: list[str], n: int, size: tuple[int, int],
                     method: str, *, seed: int = 0, force: bool = False,
                     progress: bool = True) -> Calibration:
    """Choose, read and check up to ``n`` calibration images (warnings are logged).

    Raises:
        ExportError: the set is too small or degenerate (see :func:`check_calibration`).
    """
    files = calibration_files(splits, n, seed)
    with progress_bar(len(files), "loading calibration images", progress) as bar:
        pixels, kept = load_images(files, size, method, bar=bar)
    label_of = dict(zip(splits.paths("train"), splits.labels["train"]))
    labels = [label_of[files[i]] for i in kept]
    for warning in check_calibration(pixels, labels, classes, n, force):
        log.warning(warning)
    info = {"split": "train", "samples": len(pixels), "train_images": len(splits.files["train"]),
            "per_class": {classes[k]: v for k, v in sorted(Counter(labels).items())},
            "files": [files[i].relative_to(splits.root).as_posix() for i in kept]}
    return Calibration(pixels, info)
