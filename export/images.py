"""Reading the run's images as model input for export: uint8, in bounded batches.

Preprocessing itself is :func:`edge_runtime.image.load_model_pixels` (the one definition),
whose uint8 pixels take a quarter of float32's memory; evaluation images are streamed in
batches, never held whole (10k images at 224 px would be 6 GB as float32).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from edge_runtime.errors import ImageError
from edge_runtime.image import RESIZE_METHOD, load_model_pixels

log = logging.getLogger(__name__)

BATCH_SIZE = 32
"""Images per evaluation batch: enough for Keras to batch well, small enough to stay bounded."""


@dataclass(frozen=True)
class Batch:
    """Consecutive readable images of a file list."""

    pixels: np.ndarray
    """uint8 (n, H, W, 3)."""
    indices: np.ndarray
    """Position of each image in the file list (unreadable files are left out)."""


def iter_batches(paths: Sequence[str | os.PathLike], size: tuple[int, int],
                 method: str = RESIZE_METHOD, batch_size: int = BATCH_SIZE,
                 bar=None) -> Iterator[Batch]:
    """The readable images of ``paths`` in order, ``batch_size`` at a time.

    An unreadable file is skipped with a warning; ``bar`` (a progress bar) advances by one
    per file read or skipped.
    """
    pixels: list[np.ndarray] = []
    indices: list[int] = []
    for i, path in enumerate(paths):
        try:
            pixels.append(load_model_pixels(path, size, method))
            indices.append(i)
        except ImageError as exc:
            log.warning("skipping %s", exc)
        if bar is not None:
            bar.update()
        if len(pixels) == batch_size:
            yield Batch(np.stack(pixels), np.asarray(indices, np.int64))
            pixels, indices = [], []
    if pixels:
        yield Batch(np.stack(pixels), np.asarray(indices, np.int64))


def load_images(paths: Sequence[str | os.PathLike], size: tuple[int, int],
                method: str = RESIZE_METHOD, bar=None) -> tuple[np.ndarray, list[int]]:
    """All readable images of a short list (calibration) as uint8 (N, H, W, 3), and their
    positions in ``paths``."""
    batches = list(iter_batches(paths, size, method, bar=bar))
    if not batches:
        return np.zeros((0, *size, 3), np.uint8), []
    return (np.concatenate([b.pixels for b in batches]),
            [int(i) for b in batches for i in b.indices])
