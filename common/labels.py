"""Class labels: what a name may be (:func:`label_problem`, the one rule), and ``labels.txt``:
one label per line, in output order, spaces inside a label kept (``golden retriever``)."""

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


def label_problem(name: str) -> str | None:
    """Why ``name`` cannot be a class label (and so a folder name), or None when it can.

    Any printable Unicode name, spaces and accents included (``golden retriever``, ``crème
    brûlée``). A label names a folder under a data root (``photos/<label>/``) and a line of
    ``labels.txt``, so it must be one plain path component on one line: no path separator,
    not ``.`` or ``..``, nothing unprintable (control characters, line breaks), no leading dot
    (hidden: training skips it), no outer spaces and not blank. The one definition, for
    training's folder scan and every writer of labelled pictures (edge-capture, the live
    view's capture panel, --save-uncertain).
    """
    if not name or not name.strip():
        return "a label cannot be empty"
    if name != name.strip():
        return f"label {name!r} starts or ends with a space"
    if "/" in name or "\\" in name:
        return f"label {name!r} holds a path separator"
    if name.startswith("."):
        return f"label {name!r} starts with a dot (hidden, or a path such as ..)"
    if not name.isprintable():
        return f"label {name!r} holds a control character or another unprintable one"
    if len(name.encode("utf-8")) > 100:
        return f"label {name[:20]!r}… is longer than 100 bytes"
    return None
