"""The Keras callbacks that make training resumable: per-epoch checkpoints and early stopping
whose patience survives ``--resume``."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from common.fileio import atomic_write, write_json
from train.checkpoints import BEST_WEIGHTS, CHECKPOINT_DIR, LAST_CHECKPOINT, STATE_FILE
from train.report import read_history, write_history


class RunCheckpoint(keras.callbacks.Callback):
    """After every epoch: the full model (with optimizer state), the best weights,
    ``history.csv`` and ``state.json``, each written atomically.

    ``state.json`` is written last and is what ``--resume`` trusts, so a run
    killed at any moment loses at most the epoch in progress.
    """

    def __init__(self, out: Path, phase: int, state: dict, started: float) -> None:
        super().__init__()
        self.out, self.phase, self.state = out, phase, state
        self.ckpt = out / CHECKPOINT_DIR
        self.epoch_started = started

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {"epoch": epoch + 1, "phase": self.phase,
               **{k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy")
                  if k in logs},
               "lr": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)),
               "seconds": round(time.time() - self.epoch_started, 3)}
        history = [r for r in read_history(self.out / "history.csv") if r["epoch"] <= epoch]
        write_history(self.out / "history.csv", history + [row])
        atomic_write(self.ckpt / LAST_CHECKPOINT, self.model.save)
        if is_better(row, self.state):
            atomic_write(self.ckpt / BEST_WEIGHTS, self.model.save_weights)
            self.state.update(best_val_accuracy=row["val_accuracy"], best_val_loss=row["val_loss"],
                              best_epoch=epoch + 1)
        self.state.update(epochs_done=epoch + 1, phase=self.phase)
        if self.phase == 2 and self.state.get("fine_tune_start") is None:
            self.state["fine_tune_start"] = epoch
        write_json(self.ckpt / STATE_FILE, self.state)


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Early stopping on val_accuracy whose patience survives ``--resume``.

    Keras starts counting afresh at every ``fit()``, so a run interrupted
    and resumed again and again would never stop early. ``earlier`` holds the
    val_accuracy of the phase's epochs already done; they are replayed as
    Keras would have seen them (mode max, min_delta 0).
    """

    def __init__(self, earlier: list[float], patience: int) -> None:
        super().__init__(monitor="val_accuracy", mode="max", patience=patience)
        self.earlier = list(earlier)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for value in self.earlier:
            self.wait += 1
            if self.best is None or value > self.best:
                self.best, self.wait = value, 0


def is_better(row: dict, state: dict) -> bool:
    """Is this epoch the best so far? Higher val_accuracy; on a tie, lower val_loss.

    Accuracy, not loss, decides: from scratch on small data val_loss often
    rises (over-confidence) while val_accuracy still improves.
    """
    accuracy, loss = row.get("val_accuracy"), row.get("val_loss")
    if accuracy is None or loss is None or not np.isfinite(loss):
        return False
    if state.get("best_val_accuracy") is None:
        return True
    return (accuracy, -loss) > (state["best_val_accuracy"], -state["best_val_loss"])
