"""Two-phase fine-tuning of MobileNetV2, resumable, writing the run directory.

Phase 1 trains the new head on the frozen backbone (feature extraction);
phase 2 unfreezes the backbone from ``fine_tune_at`` and continues with the
learning rate divided by 10, as in the Keras transfer-learning guide.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from edge_runtime.fileio import atomic_write, write_json, write_text
from edge_runtime.labels import labels_text
from train import model as model_lib
from train.config import TrainConfig
from train.data_sources import resolve_data
from train.dataset import DecodeFailures, make_dataset
from train.device import setup_device
from train.errors import UserError
from train.report import (
    classification_metrics,
    plot_learning_curves,
    read_history,
    write_history,
)
from train.splits import Splits, discover

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.keras"
BEST_WEIGHTS = "best.weights.h5"
STATE_FILE = "state.json"


@dataclass
class RunResult:
    """What a finished run produced."""

    out: Path
    metrics: dict
    history: list[dict]


def log(message: str) -> None:
    print(message, flush=True)


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
        if _better(row, self.state):
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


def _better(row: dict, state: dict) -> bool:
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


def library_versions() -> dict:
    import PIL

    return {"python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pillow": PIL.__version__}


def _prepare_run_dir(config: TrainConfig) -> tuple[TrainConfig, dict]:
    """Check ``out`` and, on resume, return the saved config and checkpoint state."""
    out = Path(config.out)
    state_path = out / CHECKPOINT_DIR / STATE_FILE
    if config.resume:
        if not state_path.is_file():
            raise UserError(f"--resume: {out} has no checkpoint to resume from "
                            f"(expected {state_path})")
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
        return replace(TrainConfig.from_dict(saved), resume=True, out=str(out)), \
            json.loads(state_path.read_text(encoding="utf-8"))
    if out.exists() and any(out.iterdir()):
        hint = " (add --resume to continue it)" if state_path.is_file() else ""
        raise UserError(f"--out {out} already exists and is not empty{hint}; "
                        "choose a new run directory")
    return config, {"epochs_done": 0, "phase": 1, "best_val_accuracy": None, "best_val_loss": None, "best_epoch": None,
                    "fine_tune_start": None}


def validate(config: TrainConfig) -> None:
    """Reject impossible settings before any slow work starts."""
    checks = [
        (config.img_size >= 32, f"--img-size {config.img_size}: must be at least 32"),
        (config.alpha > 0, f"--alpha {config.alpha}: must be positive"),
        (config.epochs >= 1, f"--epochs {config.epochs}: must be at least 1"),
        (config.fine_tune_epochs >= 0, f"--fine-tune-epochs {config.fine_tune_epochs}: must be ≥ 0"),
        (config.fine_tune_at >= 0, f"--fine-tune-at {config.fine_tune_at}: must be ≥ 0"),
        (config.batch_size >= 1, f"--batch-size {config.batch_size}: must be at least 1"),
        (config.lr > 0, f"--lr {config.lr}: must be positive"),
        (0 <= config.dropout < 1, f"--dropout {config.dropout}: must be in [0, 1)"),
        (config.patience >= 1, f"--patience {config.patience}: must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def _trainable_report(model: keras.Model, phase: int) -> str:
    trainable = model_lib.count_params(model.trainable_weights)
    frozen = model_lib.count_params(model.non_trainable_weights)
    return f"phase {phase}: {trainable:,} trainable parameters, {frozen:,} frozen"


def _fit(model, train_ds, val_ds, *, epochs, initial_epoch, phase, out, state, config,
         callbacks) -> None:
    if initial_epoch >= epochs:
        return
    cbs = [
        RunCheckpoint(out, phase, state, time.time()),
        ResumableEarlyStopping([r["val_accuracy"] for r in read_history(out / "history.csv")
                                if r["phase"] == phase and r["epoch"] <= initial_epoch
                                and r.get("val_accuracy") is not None], config.patience),
        keras.callbacks.TensorBoard(log_dir=str(out / "logs"), write_graph=False),
        *callbacks,
    ]
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
              callbacks=cbs, shuffle=False, verbose=1 if sys.stdout.isatty() else 2)
    if phase == 1:  # also when early stopping ended it: resume must not redo phase 1
        state["phase1_complete"] = True
        write_json(out / CHECKPOINT_DIR / STATE_FILE, state)


def _plain_copy(model: keras.Model, config: TrainConfig, num_classes: int) -> keras.Model:
    """The same network with float32 layers, outside any distribution strategy:
    what evaluation, export and the device expect."""
    keras.mixed_precision.set_global_policy("float32")
    clone = model_lib.build_model(num_classes, config.img_size, config.alpha, "none",
                                  config.dropout, config.bn_momentum)
    clone.set_weights(model.get_weights())
    return clone


def _evaluate(model: keras.Model, splits: Splits, split: str, config: TrainConfig) -> dict:
    if not splits.files[split]:
        return {"accuracy": None, "per_class_accuracy": {}, "confusion_matrix": []}
    ds = make_dataset(splits, split, config.img_size, config.batch_size, cache="none")
    y_true = np.concatenate([labels.numpy() for _, labels in ds])
    probs = model.predict(ds, verbose=0)
    return classification_metrics(y_true, probs.argmax(axis=1), splits.classes)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def train(config: TrainConfig, callbacks: list | None = None) -> RunResult:
    """Run (or resume) a two-phase fine-tuning and write the run directory.

    Args:
        config: the run's settings.
        callbacks: extra Keras callbacks, given to both phases.

    Returns:
        The run directory, ``metrics.json`` content and the epoch history.

    Raises:
        UserError: bad settings, unusable data or weights, an existing ``out``.
        KeyboardInterrupt: after the last finished epoch was checkpointed.
    """
    validate(config)
    # the datasets' length is unknown (undecodable files are filtered out), which Keras
    # reports as "ran out of data" after every first pass
    warnings.filterwarnings("ignore", message=".*ran out of data.*")
    config, state = _prepare_run_dir(config)
    out = Path(config.out)
    started = time.time()

    if config.resume:
        splits = Splits.load(out / "splits.json")
        log(f"resuming {out} after epoch {state['epochs_done']} (phase {state['phase']})")
    else:
        root = resolve_data(config.data)
        log(f"scanning {root} ...")
        splits = discover(root, config.val_split, config.test_split, config.seed)
    for path, reason in splits.skipped:
        print(f"warning: skipping {path}: {reason}", file=sys.stderr)
    log(f"{len(splits.classes)} classes ({', '.join(splits.classes)}); "
        f"train {splits.count('train')}, val {splits.count('val')}, test {splits.count('test')} "
        f"images ({splits.layout.replace('_', ' ')})")

    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # process-wide and one-way: TensorFlow has no public switch back
        tf.config.experimental.enable_op_determinism()
    device = setup_device(config.strategy, config.mixed_precision)
    log(f"device: {', '.join(device.gpus) or 'CPU'}; strategy {device.strategy_name} "
        f"({device.strategy.num_replicas_in_sync} replica(s)); "
        f"mixed precision {'on' if device.mixed_precision else 'off'}")

    out.mkdir(parents=True, exist_ok=True)
    if not config.resume:
        splits.save(out / "splits.json")
        write_text(out / "labels.txt", labels_text(splits.classes))
        write_json(out / "config.json", {**config.to_dict(), "data_root": str(splits.root),
                                         "classes": splits.classes,
                                         "versions": library_versions(),
                                         "device": device.describe()})

    failures = DecodeFailures()
    cache = config.cache
    if cache not in ("memory", "none"):
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
    replicas = device.strategy.num_replicas_in_sync
    multi = replicas > 1
    # several replicas: full batches only, and a validation batch that every replica can share
    val_batch = config.batch_size
    if multi:
        n_val = splits.count("val")
        val_batch = min(config.batch_size, max(replicas, n_val - n_val % replicas))
    train_ds = make_dataset(splits, "train", config.img_size, config.batch_size, training=True,
                            seed=config.seed, cache=cache, augment=config.augment,
                            failures=failures, drop_remainder=multi,
                            deterministic=config.deterministic)
    val_ds = make_dataset(splits, "val", config.img_size, val_batch, cache=cache,
                          failures=failures, drop_remainder=multi)

    ckpt = out / CHECKPOINT_DIR
    with device.strategy.scope():
        if config.resume:
            model = keras.models.load_model(ckpt / LAST_CHECKPOINT)
        else:
            model = model_lib.build_model(len(splits.classes), config.img_size, config.alpha,
                                          config.weights, config.dropout, config.bn_momentum)
            model_lib.compile_model(model, config.lr)

    callbacks = list(callbacks or [])
    done = state["epochs_done"]
    if state["phase"] == 1 and not state.get("phase1_complete"):
        log(_trainable_report(model, 1))
        _fit(model, train_ds, val_ds, epochs=config.epochs, initial_epoch=done, phase=1,
             out=out, state=state, config=config, callbacks=callbacks)
        done = state["epochs_done"]

    if config.fine_tune_epochs > 0:
        if state["phase"] == 1:
            with device.strategy.scope():
                model_lib.set_phase(model, 2, config.fine_tune_at, config.weights != "none")
                model_lib.compile_model(model, config.lr / 10)
            phase2_start = done
        else:
            phase2_start = state["fine_tune_start"]
        log(_trainable_report(model, 2) + f" (backbone unfrozen from layer {config.fine_tune_at}, "
            f"lr {config.lr / 10:g})")
        _fit(model, train_ds, val_ds, epochs=phase2_start + config.fine_tune_epochs,
             initial_epoch=done, phase=2, out=out, state=state, config=config,
             callbacks=callbacks)

    if (ckpt / BEST_WEIGHTS).is_file():
        with warnings.catch_warnings():  # the file's optimizer state is not wanted here
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
            model.load_weights(ckpt / BEST_WEIGHTS)
        log(f"restored the best weights (epoch {state['best_epoch']}, val_accuracy "
            f"{state['best_val_accuracy']:.3f}, val_loss {state['best_val_loss']:.4f})")
    if device.mixed_precision or multi:
        model = _plain_copy(model, config, len(splits.classes))

    history = read_history(out / "history.csv")
    # the epochs' own time, summed: true across resumed sessions too
    train_seconds = sum(r["seconds"] or 0.0 for r in history)
    if not device.is_chief:
        return RunResult(out=out, metrics={}, history=history)

    val = _evaluate(model, splits, "val", config)
    test = _evaluate(model, splits, splits.eval_split(), config)
    metrics = {
        "val_accuracy": val["accuracy"],
        "test_accuracy": test["accuracy"],
        "eval_split": splits.eval_split(),
        "classes": splits.classes,
        "num_train": splits.count("train"),
        "num_val": splits.count("val"),
        "num_test": splits.count("test"),
        "per_class_accuracy": test["per_class_accuracy"],
        "confusion_matrix": test["confusion_matrix"],
        "train_seconds": round(train_seconds, 2),
        "epochs_run": len(history),
        "best_epoch": state["best_epoch"],
        "skipped_files": len(splits.skipped) + len(failures.paths),
    }
    atomic_write(out / "model.keras", model.save)
    write_json(out / "metrics.json", metrics)
    fine_tune_start = next((r["epoch"] - 1 for r in history if r["phase"] == 2), None)
    plot_learning_curves(history, out / "learning_curves.png", fine_tune_start)
    skipped = len(splits.skipped) + len(failures.paths)
    if skipped:
        print(f"warning: {skipped} file(s) skipped (listed above and in splits.json)",
              file=sys.stderr)
    # the run is complete: the checkpoints (a model copy with optimizer state) only served resume
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    log(f"done in {time.time() - started:.0f} s: {splits.eval_split()} accuracy "
        f"{_fmt(metrics['test_accuracy'])}, val accuracy {_fmt(metrics['val_accuracy'])} → {out}")
    return RunResult(out=out, metrics=metrics, history=history)
