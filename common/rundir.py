"""The run directory ``edge-train`` writes: its file names, and checking it with clear errors.

``check_run`` answers before TensorFlow starts; ``train.saved_run.load_run`` loads the model.
The errors say what is missing and which command makes it.
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
