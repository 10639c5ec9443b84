"""Two-phase fine-tuning of MobileNetV2, resumable, writing the run directory.

Phase 1 trains the new head on the frozen backbone (feature extraction): with
pretrained weights on backbone features computed once and cached
(:mod:`train.features`), from scratch end to end with the whole network training;
phase 2 unfreezes the backbone from ``fine_tune_at`` and continues with the
learning rate divided by 10, as in the Keras transfer-learning guide.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from common.errors import UserError
from common.fileio import atomic_write, write_json, write_text
from common.labels import labels_text, read_labels
from common.versions import library_versions
from edge_runtime.image import RESIZE_METHOD
from train import features as features_lib
from train import init_from
from train import model as model_lib
from train.accelerator import DeviceSetup, cluster_task, setup_device
from train.callbacks import ResumableEarlyStopping, RunCheckpoint
from train.checkpoints import (
    BEST_WEIGHTS,
    CHECKPOINT_DIR,
    LAST_CHECKPOINT,
    STATE_FILE,
    prepare_run_dir,
)
from train.config import TrainConfig
from train.data_sources import resolve_data
from train.dataset import DecodeFailures, make_dataset
from train.evaluate import evaluate, float32_copy
from train.report import plot_learning_curves, read_history
from train.splits import Splits, discover

log = logging.getLogger(__name__)

__all__ = ["BEST_WEIGHTS", "CHECKPOINT_DIR", "LAST_CHECKPOINT", "STATE_FILE", "RunResult", "train"]


@dataclass
class RunResult:
    """What a finished run produced."""

    out: Path
    metrics: dict
    history: list[dict]


def _trainable_report(model: keras.Model, phase: int) -> str:
    trainable = model_lib.count_params(model.trainable_weights)
    frozen = model_lib.count_params(model.non_trainable_weights)
    return f"phase {phase}: {trainable:,} trainable parameters, {frozen:,} frozen"


class _CheckpointOf(RunCheckpoint):
    """:class:`RunCheckpoint` of the whole classifier while ``fit`` trains its head alone on
    cached features: checkpoints, best weights and resume are always of the run's model."""

    def __init__(self, model: keras.Model, *args) -> None:
        super().__init__(*args)
        self._classifier = model

    def set_model(self, model):
        super().set_model(self._classifier)


def _fit(model, train_ds, val_ds, *, epochs, initial_epoch, phase, work, state, config,
         callbacks, classifier=None) -> None:
    """One phase of training; ``work`` is where this process writes: the run directory on the
    chief, a temporary folder on the other workers. ``classifier``: the model to checkpoint when
    ``model`` is only its head (cached features)."""
    if initial_epoch >= epochs:
        return
    cbs = [
        _CheckpointOf(classifier or model, work, phase, state, time.time()),
        ResumableEarlyStopping([r["val_accuracy"] for r in read_history(work / "history.csv")
                                if r["phase"] == phase and r["epoch"] <= initial_epoch
                                and r.get("val_accuracy") is not None], config.patience),
        keras.callbacks.TensorBoard(log_dir=str(work / "logs"), write_graph=False),
        *callbacks,
    ]
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
              callbacks=cbs, shuffle=False, verbose=1 if sys.stdout.isatty() else 2)
    if phase == 1:  # also when early stopping ended it: resume must not redo phase 1
        state["phase1_complete"] = True
        write_json(work / CHECKPOINT_DIR / STATE_FILE, state)


def _split_digest(splits: Splits) -> int:
    """A 24-bit fingerprint of the split (classes, files relative to the data folder, labels):
    the same on every machine that holds the same data."""
    return int(features_lib.split_fingerprint(splits)[:6], 16)


def _on_cached_features(config: TrainConfig) -> bool:
    """Phase 1 trains the head on cached features: the backbone is pretrained, hence frozen in
    phase 1 (from scratch it trains from the first epoch on)."""
    return config.feature_cache and config.weights != "none"


def _head_on_features(model: keras.Model, splits: Splits, config: TrainConfig,
                      device: DeviceSetup, work: Path, failures: DecodeFailures, val_batch: int,
                      drop_remainder: bool) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset]:
    """The classifier's head compiled to train on cached backbone features, and the features'
    training and validation datasets (extracted now where the cache lacks them)."""
    views = max(1, config.feature_views) if config.augment else 1
    # outside the strategy's scope: extraction is local work, no replica takes part
    extractor = features_lib.feature_extractor(model)
    cache = features_lib.FeatureCache(work / CHECKPOINT_DIR / features_lib.FEATURES_DIR,
                                      features_lib.cache_key(extractor, splits, config, views))
    data = features_lib.extract(extractor, cache, splits, {"train": views, "val": 1},
                                config.img_size, config.batch_size, config.seed,
                                failures=failures, parallel=not config.deterministic)
    with device.strategy.scope():
        head = features_lib.head_of(model)
        # the classifier's optimizer: its state is the one checkpointed and resumed
        head.compile(optimizer=model.optimizer, loss=model.loss, metrics=["accuracy"])
    train_ds = features_lib.feature_dataset(data["train"], config.batch_size, training=True,
                                            seed=config.seed, drop_remainder=drop_remainder)
    val_ds = features_lib.feature_dataset(data["val"], val_batch, drop_remainder=drop_remainder)
    log.info(f"phase 1 on cached features: {len(data['train'].labels)} train images × {views} "
             f"view(s), {len(data['val'].labels)} val images")
    return head, train_ds, val_ds


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def train(config: TrainConfig, callbacks: list | None = None) -> RunResult:
    """Run (or resume) a two-phase fine-tuning and write the run directory.

    Args:
        config: the run's settings.
        callbacks: extra Keras callbacks, given to both phases (in a phase 1 on cached
            features their model is the head: pooled features in, probabilities out).

    Returns:
        The run directory, ``metrics.json`` content and the epoch history.

    Raises:
        UserError: bad settings, unusable data or weights, an existing ``out``.
        KeyboardInterrupt: after the last finished epoch was checkpointed.
    """
    config.validate()
    # the datasets' length is unknown (undecodable files are filtered out), which Keras
    # reports as "ran out of data" after every first pass
    warnings.filterwarnings("ignore", message=".*ran out of data.*")
    task = cluster_task(config.strategy)
    config, state = prepare_run_dir(config, chief=task is None or task.is_chief)
    out = Path(config.out)
    started = time.time()
    # first TensorFlow work of the run: MultiWorkerMirroredStrategy configures collective ops,
    # which TensorFlow allows only before its runtime has run anything
    device = setup_device(config.strategy, config.mixed_precision)
    log.info(_describe(device))
    # only the chief writes the run directory; the other workers still take part in every save
    # (the tf.distribute multi-worker guide), writing to a folder of their own removed at the end
    work = out if device.is_chief else Path(tempfile.mkdtemp(prefix=f"edge-train-{device.task.name}-"))
    try:
        result = _train(config, state, device, out, work, started, callbacks)
    finally:
        if work != out:
            shutil.rmtree(work, ignore_errors=True)
    # the workers end together: one that exits while the chief still evaluates and saves
    # makes TensorFlow's coordination service report it as crashed
    device.wait_for_all_workers()
    return result


def _train(config: TrainConfig, state: dict, device: DeviceSetup, out: Path, work: Path,
           started: float, callbacks: list | None) -> RunResult:
    """The run's steps, in order (see each step's docstring)."""
    splits = _load_splits(config, state, out)
    _check_same_split_everywhere(splits, device)
    _seed(config)
    _write_run_files(config, splits, device, out, work)
    failures = DecodeFailures()
    data = _datasets(config, splits, device, failures)
    model = _initial_model(config, splits, device, out)
    _phase1(model, config, state, splits, device, work, failures, data, list(callbacks or []))
    _phase2(model, config, state, device, work, data, list(callbacks or []))
    if not device.is_chief:  # its part is done: the chief evaluates and saves the model
        return RunResult(out=out, metrics={}, history=read_history(work / "history.csv"))
    model = _best_model(model, config, state, splits, device, out, data)
    return _finish(model, config, state, splits, out, failures, started)


MIN_CLASS_IMAGES = 10
"""A class with fewer images than this is named in a warning: too few to learn it from."""


def _load_splits(config: TrainConfig, state: dict, out: Path) -> Splits:
    """The data split: read back on resume, else discovered in ``--data``; what it holds said,
    every class's image count included."""
    if config.resume:
        splits = Splits.load(out / "splits.json")
        log.info(f"resuming {out} after epoch {state['epochs_done']} (phase {state['phase']})")
    else:
        root = resolve_data(config.data)
        log.info(f"scanning {root} ...")
        splits = discover(root, config.val_split, config.test_split, config.seed)
    for path, reason in splits.skipped:
        log.warning("skipping %s: %s", path, reason)
    log.info(f"{len(splits.classes)} classes ({', '.join(splits.classes)}); "
        f"train {splits.count('train')}, val {splits.count('val')}, test {splits.count('test')} "
        f"images ({splits.layout.replace('_', ' ')})")
    _report_class_counts(splits)
    return splits


def _report_class_counts(splits: Splits) -> None:
    """Each class's images (train/val/test), and a warning for a class too small to learn."""
    counts = {name: [splits.labels[split].count(index) for split in ("train", "val", "test")]
              for index, name in enumerate(splits.classes)}
    log.info("images per class (train/val/test): " + ", ".join(
        f"{name} {sum(c)} ({c[0]}/{c[1]}/{c[2]})" for name, c in counts.items()))
    small = [f"{name} ({sum(c)})" for name, c in counts.items() if sum(c) < MIN_CLASS_IMAGES]
    if small:
        log.warning(f"class(es) with fewer than {MIN_CLASS_IMAGES} images: {', '.join(small)}; "
                    "the model will hardly learn them: add pictures (edge-capture) or remove "
                    "the folder")


def _check_same_split_everywhere(splits: Splits, device: DeviceSetup) -> None:
    """Every worker of a multi-worker run must have split the same files the same way."""
    digest = _split_digest(splits)
    if not device.same_on_all_workers(digest):
        raise UserError(f"the workers' data splits differ (split {digest:06x} on "
                        f"{device.task.name}): every worker needs the same files under --data "
                        "and the same --seed, --val-split and --test-split")


def _seed(config: TrainConfig) -> None:
    """Seed every generator (and ask for deterministic ops)."""
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # process-wide and one-way: TensorFlow has no public switch back
        tf.config.experimental.enable_op_determinism()


def _describe(device: DeviceSetup) -> str:
    """What the run trains on: the device line, with the strategy when there is one."""
    worker = (f"; {device.task.name} of {device.task.num_workers} workers"
              f"{' (chief: writes the run directory)' if device.is_chief else ''}"
              if device.task else "")
    strategy = (f"; strategy {device.strategy_name} ({device.strategy.num_replicas_in_sync} "
                f"replica(s){worker})" if device.strategy_name != "none" else "")
    return device.training_on() + strategy


def _parent(config: TrainConfig, splits: Splits) -> dict | None:
    """With ``--init-from``: the parent's record for ``config.json`` (refusing a dropped class
    now, before any slow work); else None."""
    if not config.init_from:
        return None
    run = Path(config.init_from)
    init_from.check_same_network(run, config)
    parent_classes = read_labels(run / "labels.txt")
    mapping = init_from.class_mapping(parent_classes, splits.classes,
                                      config.allow_dropped_classes)
    return init_from.parent_record(run, mapping, parent_classes, splits.classes)


def _write_run_files(config: TrainConfig, splits: Splits, device: DeviceSetup, out: Path,
                     work: Path) -> None:
    """The chief creates the run directory and, on a fresh start, writes splits.json,
    labels.txt and config.json; a resuming worker copies the history it resumes from."""
    if device.is_chief:
        out.mkdir(parents=True, exist_ok=True)
    elif config.resume and (out / "history.csv").is_file():
        shutil.copy2(out / "history.csv", work / "history.csv")
    if device.is_chief and not config.resume:
        parent = _parent(config, splits)
        splits.save(out / "splits.json")
        write_text(out / "labels.txt", labels_text(splits.classes))
        write_json(out / "config.json", {**config.to_dict(), "data_root": str(splits.root),
                                         "classes": splits.classes,
                                         "resize": RESIZE_METHOD,
                                         "versions": library_versions(
                                             "tensorflow", "keras", "numpy", "PIL"),
                                         "device": device.describe(),
                                         **({"parent": parent} if parent else {})})


@dataclass
class _Data:
    """The end-to-end datasets and how they are batched."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    val_batch: int
    multi: bool
    """Several replicas: full batches only."""


def _datasets(config: TrainConfig, splits: Splits, device: DeviceSetup,
              failures: DecodeFailures) -> _Data:
    """The training and validation datasets (decoded images, cached as ``--cache`` says)."""
    cache = config.cache
    if cache not in ("memory", "none"):
        if not device.is_chief:  # each worker decodes every image: one cache file each
            cache = f"{cache}.{device.task.name}"
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
    return _Data(train_ds, val_ds, val_batch, multi)


def _initial_model(config: TrainConfig, splits: Splits, device: DeviceSetup,
                   out: Path) -> keras.Model:
    """The model training starts from, compiled: the last checkpoint on resume, the parent's
    network with ``--init-from``, else a new one."""
    ckpt = out / CHECKPOINT_DIR  # read on resume: the chief's checkpoint, on a shared folder
    with device.strategy.scope():
        if config.resume:
            return keras.models.load_model(ckpt / LAST_CHECKPOINT)
        if config.init_from:
            model, _record = init_from.model_from_parent(
                Path(config.init_from), splits.classes, config.allow_dropped_classes,
                config.seed)
            model_lib.set_phase(model, 1, config.fine_tune_at, config.weights != "none")
        else:
            model = model_lib.build_model(len(splits.classes), config.img_size, config.alpha,
                                          config.weights, config.dropout, config.bn_momentum,
                                          backbone=config.backbone)
        model_lib.compile_model(model, config.lr)
    return model


def _phase1(model: keras.Model, config: TrainConfig, state: dict, splits: Splits,
            device: DeviceSetup, work: Path, failures: DecodeFailures, data: _Data,
            callbacks: list) -> None:
    """Phase 1 (unless a resumed run finished it): the head alone on a pretrained backbone
    (on cached features where asked), the whole network from scratch."""
    if state["phase"] != 1 or state.get("phase1_complete"):
        return
    done = state["epochs_done"]
    log.info(_trainable_report(model, 1))
    if _on_cached_features(config):
        head, head_train, head_val = _head_on_features(
            model, splits, config, device, work, failures, data.val_batch, data.multi)
        _fit(head, head_train, head_val, epochs=config.epochs, initial_epoch=done, phase=1,
             work=work, state=state, config=config, callbacks=callbacks, classifier=model)
        # phase 2 runs end to end: the features only served phase 1
        shutil.rmtree(work / CHECKPOINT_DIR / features_lib.FEATURES_DIR, ignore_errors=True)
    else:
        _fit(model, data.train, data.val, epochs=config.epochs, initial_epoch=done, phase=1,
             work=work, state=state, config=config, callbacks=callbacks)


def _phase2(model: keras.Model, config: TrainConfig, state: dict, device: DeviceSetup,
            work: Path, data: _Data, callbacks: list) -> None:
    """Phase 2: the backbone unfrozen from ``fine_tune_at``, at a tenth of the learning rate."""
    if config.fine_tune_epochs <= 0:
        return
    done = state["epochs_done"]
    if state["phase"] == 1:
        with device.strategy.scope():
            model_lib.set_phase(model, 2, config.fine_tune_at, config.weights != "none")
            model_lib.compile_model(model, config.lr / 10)
        phase2_start = done
    else:
        phase2_start = state["fine_tune_start"]
    log.info(_trainable_report(model, 2) + f" (backbone unfrozen from layer {config.fine_tune_at}, "
        f"lr {config.lr / 10:g})")
    _fit(model, data.train, data.val, epochs=phase2_start + config.fine_tune_epochs,
         initial_epoch=done, phase=2, work=work, state=state, config=config,
         callbacks=callbacks)


def _best_model(model: keras.Model, config: TrainConfig, state: dict, splits: Splits,
                device: DeviceSetup, out: Path, data: _Data) -> keras.Model:
    """The best epoch's weights restored, as a float32 model outside any strategy."""
    ckpt = out / CHECKPOINT_DIR
    if (ckpt / BEST_WEIGHTS).is_file():
        with warnings.catch_warnings():  # the file's optimizer state is not wanted here
            warnings.filterwarnings("ignore", message=".*Skipping variable loading for optimizer.*")
            model.load_weights(ckpt / BEST_WEIGHTS)
        log.info(f"restored the best weights (epoch {state['best_epoch']}, val_accuracy "
            f"{state['best_val_accuracy']:.3f}, val_loss {state['best_val_loss']:.4f})")
    if device.mixed_precision or data.multi:
        model = float32_copy(model, config, len(splits.classes))
    return model


def _finish(model: keras.Model, config: TrainConfig, state: dict, splits: Splits, out: Path,
            failures: DecodeFailures, started: float) -> RunResult:
    """Evaluate, write model.keras, metrics.json and the learning curves, drop the
    checkpoints."""
    history = read_history(out / "history.csv")
    # the epochs' own time, summed: true across resumed sessions too
    train_seconds = sum(r["seconds"] or 0.0 for r in history)

    val = evaluate(model, splits, "val", config)
    test = evaluate(model, splits, splits.eval_split(), config)
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
        log.warning("%d file(s) skipped (listed above and in splits.json)", skipped)
    # the run is complete: the checkpoints (a model copy with optimizer state) only served resume
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    log.info(f"done in {time.time() - started:.0f} s: {splits.eval_split()} accuracy "
        f"{_fmt(metrics['test_accuracy'])}, val accuracy {_fmt(metrics['val_accuracy'])} → {out}")
    return RunResult(out=out, metrics=metrics, history=history)
