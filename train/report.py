"""Run results: history.csv, metrics.json and the learning-curve plot."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from common.figures import new_figure, save
from common.fileio import write_text

HISTORY_FIELDS = ("epoch", "phase", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def read_history(path: str | os.PathLike) -> list[dict]:
    """Rows of ``history.csv`` with numbers parsed; [] when the file is absent."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            rows.append({k: (int(v) if k in ("epoch", "phase") else float(v)) if v != "" else None
                         for k, v in row.items()})
    return rows


def write_history(path: str | os.PathLike, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, extrasaction="ignore",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class accuracy (recall) and the confusion matrix (rows: truth)."""
    n = len(classes)
    matrix = np.zeros((n, n), dtype=int)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    per_class = {}
    for i, name in enumerate(classes):
        total = matrix[i].sum()
        per_class[name] = float(matrix[i, i] / total) if total else None
    accuracy = float(np.trace(matrix) / matrix.sum()) if matrix.sum() else None
    return {"accuracy": accuracy, "per_class_accuracy": per_class,
            "confusion_matrix": matrix.tolist()}


def plot_learning_curves(rows: list[dict], path: str | os.PathLike,
                         fine_tune_epoch: int | None) -> None:
    """Accuracy and loss, training vs validation, with the start of fine-tuning marked."""
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    fig = new_figure(8, 7)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, key, title in ((axes[0], "accuracy", "Accuracy"), (axes[1], "loss", "Loss")):
        ax.plot(epochs, [r[key] for r in rows], marker="o", label=f"training {key}")
        ax.plot(epochs, [r[f"val_{key}"] for r in rows], marker="o", label=f"validation {key}")
        if fine_tune_epoch is not None:
            ax.axvline(fine_tune_epoch + 0.5, color="grey", linestyle="--", label="start fine-tuning")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    axes[0].set_ylim(0, 1.02)
    axes[1].set_xlabel("epoch")
    axes[1].xaxis.set_major_locator(MaxNLocator(integer=True))
    save(fig, path, dpi=100)
