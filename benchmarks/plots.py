"""The benchmark's two plots: latency per model, and accuracy against size on disk."""

from __future__ import annotations

import os

import numpy as np

from common.figures import new_figure, plain_numbers, save

KERAS_COLOR = "#7f7f7f"
TFLITE_COLOR = "#1f77b4"


def plot_latency(rows: list[dict], path: str | os.PathLike) -> None:
    """Horizontal bars of p50 latency per model, whiskers reaching p90 (thick) and p99 (thin)."""
    figure = new_figure(7, 0.55 * len(rows) + 1.4)
    ax = figure.add_subplot()
    names = [r["model"] for r in rows]
    p50, p90, p99 = (np.array([r["latency_ms"][q] for r in rows]) for q in ("p50", "p90", "p99"))
    ys = np.arange(len(rows))
    no_lower = np.zeros(len(rows))
    colors = [KERAS_COLOR if r["kind"] == "keras" else TFLITE_COLOR for r in rows]
    ax.barh(ys, p50, color=colors, height=0.6, label="p50")
    ax.errorbar(p50, ys, xerr=[no_lower, p99 - p50], fmt="none", ecolor="black", elinewidth=1,
                capsize=4, label="to p99")
    ax.errorbar(p50, ys, xerr=[no_lower, p90 - p50], fmt="none", ecolor="black", elinewidth=3,
                capsize=0, label="to p90")
    for y, row in enumerate(rows):
        note = f"{p50[y]:.2f} ms" + ("  (noisy)" if row.get("noisy") else "")
        ax.annotate(note, (p99[y], y), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_yticks(ys, names)
    ax.invert_yaxis()
    label = "single-image latency, ms (bar p50, whiskers p90 and p99)"
    if p99.max() / p50.min() > 20:
        # predict() can be 100× slower than TFLite: on a linear axis the fast models vanish
        ax.set_xscale("log")
        ax.set_xlim(p50.min() / 3, p99.max() * 4)
        ax.xaxis.set_major_formatter(plain_numbers())
        label += ", log scale"
    else:
        ax.set_xlim(0, p99.max() * 1.3)
    ax.set_xlabel(label)
    ax.set_title("Inference latency, batch 1 (Keras grey, TFLite blue)")
    ax.grid(axis="x", alpha=0.3)
    save(figure, path)


def plot_accuracy_size(rows: list[dict], path: str | os.PathLike) -> None:
    """Accuracy against size on disk (log scale), one labelled point per model."""
    figure = new_figure(6, 4.2)
    ax = figure.add_subplot()
    # both Keras rows are one file with one accuracy: label the point once
    points: dict[tuple[float, float], list[dict]] = {}
    for row in rows:
        key = (row["size_bytes"] / 1e6, round(row["accuracy"], 6))
        points.setdefault(key, []).append(row)
    for (size_mb, accuracy), group in points.items():
        color = KERAS_COLOR if group[0]["kind"] == "keras" else TFLITE_COLOR
        ax.scatter([size_mb], [accuracy], s=60, color=color, zorder=3)
        ax.annotate(", ".join(r["model"] for r in group), (size_mb, accuracy), xytext=(6, 4),
                    textcoords="offset points", fontsize=9)
    sizes = [k[0] for k in points]
    accuracies = [k[1] for k in points]
    ax.set_xscale("log")
    ax.set_xlim(min(sizes) / 1.6, max(sizes) * 2.2)
    ax.xaxis.set_major_formatter(plain_numbers())
    margin = max(0.02, (max(accuracies) - min(accuracies)) * 0.3)
    ax.set_ylim(max(0.0, min(accuracies) - margin), min(1.0, max(accuracies) + margin) + 0.005)
    ax.set_xlabel("size on disk, MB (log scale)")
    ax.set_ylabel("top-1 accuracy")
    ax.set_title("Accuracy against size")
    ax.grid(alpha=0.3, which="both")
    save(figure, path)
