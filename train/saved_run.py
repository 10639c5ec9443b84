"""A finished run directory, loaded: the Keras model, its splits and labels (workstation only)."""

from __future__ import annotations

from pathlib import Path

from common.labels import read_labels
from common.quiet import quiet_output
from common.rundir import LABELS, MODEL, SPLITS, RunError, check_run
from train.splits import Splits


def load_run(run: Path):
    """The run's Keras model, splits and labels: ``(model, Splits, list[str])``.

    The model is loaded with Keras's safe mode on: a ``.keras`` file that carries Python code
    (a Lambda layer) is refused rather than executed.

    Raises:
        RunError: anything missing, unreadable, or inconsistent (labels vs outputs).
    """
    import keras  # here, not at import time: check_run answers before TensorFlow starts

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
