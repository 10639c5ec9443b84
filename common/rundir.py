"""The run directory ``edge-train`` writes: its file names, and loading it with clear errors.

``edge-export`` and ``edge-bench`` read a run through :func:`load_run`; its errors say what is
missing and which command makes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from common.errors import UserError

MODEL = "model.keras"
LABELS = "labels.txt"
CONFIG = "config.json"
SPLITS = "splits.json"
HISTORY = "history.csv"
METRICS = "metrics.json"
EXPORT_DIR = "export"
BENCH_DIR = "bench"
BENCH_FILES = ("report.json", "report.md", "latency.png", "accuracy_size.png")
"""What edge-bench writes into ``bench/`` (of a run, or of a bundle, where a re-export deletes
them with the models they describe)."""


class RunError(UserError):
    """The run directory is missing, unfinished or damaged."""


def check_run(run: Path, *, need_export: bool = False) -> None:
    """Fail fast (before TensorFlow is imported) on a run that is not a finished ``edge-train`` run.

    Raises:
        RunError: no such folder, a missing ``model.keras``/``splits.json``/``labels.txt``,
            or (with ``need_export``) no ``export/manifest.json``.
    """
    if not run.is_dir():
        raise RunError(f"run directory {run} does not exist")
    for name in (MODEL, SPLITS, LABELS):
        if not (run / name).is_file():
            raise RunError(f"{run / name} is missing: is {run} a finished edge-train run?")
    if need_export and not (run / EXPORT_DIR / "manifest.json").is_file():
        raise RunError(f"{run} has no {EXPORT_DIR}/manifest.json: run `edge-export {run}` first")


def read_config(run: Path) -> dict:
    """``config.json`` of the run ({} for runs that predate it)."""
    path = run / CONFIG
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: unreadable ({exc})") from None


def load_run(run: Path):
    """The run's Keras model, splits and labels: ``(model, Splits, list[str])``.

    The model is loaded with Keras's safe mode on: a ``.keras`` file that carries Python code
    (a Lambda layer) is refused rather than executed. Imports Keras (workstation only).

    Raises:
        RunError: anything missing, unreadable, or inconsistent (labels vs outputs).
    """
    import keras

    from edge_runtime.labels import read_labels
    from edge_runtime.quiet import quiet_output
    from train.splits import Splits

    check_run(run)
    try:
        with quiet_output():
            model = keras.models.load_model(run / MODEL, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise RunError(f"{run / MODEL} cannot be loaded ({reason})") from None
    try:
        splits = Splits.load(run / SPLITS)
        labels = read_labels(run / LABELS)
    except (OSError, ValueError, KeyError) as exc:
        raise RunError(f"{run}: unreadable {SPLITS} or {LABELS} ({exc})") from None
    if int(model.output_shape[-1]) != len(labels):
        raise RunError(f"{LABELS} has {len(labels)} labels but the model has "
                       f"{model.output_shape[-1]} outputs")
    return model, splits, labels
