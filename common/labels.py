"""Reading and writing ``labels.txt``: one class name per line, in output order."""

from __future__ import annotations

import os
from pathlib import Path


def read_labels(path: str | os.PathLike) -> list[str]:
    """Return the class names in ``path``, one per non-empty line.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file holds no label.
    """
    return parse_labels(Path(path).read_text(encoding="utf-8"), path)


def parse_labels(text: str, source: str | os.PathLike = "labels") -> list[str]:
    """The class names in a ``labels.txt`` text (``source`` names it in errors).

    Raises:
        ValueError: the text holds no label.
    """
    labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels:
        raise ValueError(f"{source}: no labels in file")
    return labels


def labels_text(labels: list[str]) -> str:
    """The ``labels.txt`` content for ``labels``."""
    return "".join(f"{label}\n" for label in labels)
