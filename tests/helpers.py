"""Small builders for test data: image files of every awkward kind."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def save_rgb(path: Path, size=(40, 30), colour=(200, 30, 30), fmt: str | None = None) -> Path:
    """A plain RGB picture; noise keeps JPEG encoders honest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # crc32, not hash(): str hashes change with every process (PYTHONHASHSEED)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    pixels = np.clip(np.array(colour) + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, format=fmt)
    return path


def class_folder(root: Path, classes: dict[str, int], size=(40, 30)) -> Path:
    """``root/<class>/<n>.jpg`` with ``classes[name]`` images each."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    for c, (name, count) in enumerate(classes.items()):
        for n in range(count):
            save_rgb(root / name / f"{name}_{n:03d}.jpg", size, colours[c % len(colours)])
    return root
