"""Phase 1 on cached backbone features (train/features.py): the head it trains is the model's
head, and the cache is reused, invalidated and resumed as it should be."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace

import keras
import numpy as np
import pytest

from edge_runtime.image import load_model_pixels
from train import features as features_lib
from train import model as model_lib
from train.config import TrainConfig
from train.report import HISTORY_FIELDS, read_history
from train.splits import Splits, discover
from train.trainer import train

SIZE, ALPHA = 32, 0.35


def _weights_file(path, seed=0):
    """A MobileNetV2 backbone weights file (ImageNet cannot be downloaded here), as
    ``--weights FILE`` takes them: random weights whose BatchNorm statistics are set from one
    batch of noise images, so that features are of order 1 (with Keras's initial statistics
    they shrink to ~1e-11 through the network, and a head would see only its bias)."""
    keras.utils.set_random_seed(seed)
    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=ALPHA,
                                          include_top=False, weights=None)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0  # the moving statistics become this batch's
    noise = np.random.default_rng(seed).uniform(-1, 1, (32, SIZE, SIZE, 3)).astype(np.float32)
    base(noise, training=True)
    base.save_weights(path)
    return path


def _pooled(weights, images):
    """The backbone's pooled features computed without train.features: preprocessing, the
    backbone in inference mode, the spatial mean."""
    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), alpha=ALPHA,
                                          include_top=False, weights=None)
    base.load_weights(weights)
    maps = base(images.astype(np.float32) / 127.5 - 1.0, training=False)
    return keras.ops.convert_to_numpy(keras.ops.mean(maps, axis=(1, 2)))


class _Record(keras.callbacks.Callback):
    """After each phase-1 epoch, what the model being fitted answers for ``features``."""

    def __init__(self, features):
        super().__init__()
        self.features, self.outputs = features, {}

    def on_epoch_end(self, epoch, logs=None):
        self.outputs[epoch + 1] = self.model.predict(self.features, verbose=0)


class _StopAfter(keras.callbacks.Callback):
    """Ctrl-C at the end of an epoch (after its checkpoint was written)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def _config(demo_dir, out, weights, **changes):
    return TrainConfig(**{**dict(data=str(demo_dir), out=str(out), img_size=SIZE, alpha=ALPHA,
                                 weights=str(weights), epochs=3, fine_tune_epochs=0,
                                 batch_size=16, lr=1e-2, seed=5, patience=5), **changes})


@pytest.mark.long  # trains a run of its own
def test_head_trained_on_features_answers_as_the_mounted_model(tmp_path, demo_dir):
    """The head fitted on features, mounted on the backbone (the saved model.keras), gives the
    same outputs on the val images as the head gave on their features: it is the same head."""
    weights = _weights_file(tmp_path / "backbone.weights.h5")
    probe = discover(demo_dir, 0.2, 0.1, 5)
    images = np.stack([load_model_pixels(str(p), (SIZE, SIZE)) for p in probe.paths("val")])
    reference = _pooled(weights, images)
    record = _Record(reference)
    result = train(_config(demo_dir, tmp_path / "run", weights), callbacks=[record])

    assert sorted(record.outputs) == [1, 2, 3]  # fitted on features: predict took them
    mounted = keras.models.load_model(tmp_path / "run" / "model.keras")
    full = mounted.predict(images.astype(np.float32), verbose=0)
    best = result.metrics["best_epoch"]
    np.testing.assert_allclose(full, record.outputs[best], atol=2e-4)  # float32 rounding
    # and the head learnt something: its answers moved away from the untrained ones
    assert {r["phase"] for r in result.history} == {1}
    assert not np.allclose(record.outputs[1], record.outputs[3], atol=1e-3)
    assert reference.std(axis=0).mean() > 0.01  # features that vary between images


@pytest.mark.long  # trains and resumes a run of its own
def test_phase1_on_features_checkpoints_and_resumes_like_end_to_end(tmp_path, demo_dir, caplog):
    """history.csv rows with every column, per-epoch checkpoints of the whole model, Ctrl-C
    and --resume reusing the cached features; phase 2 end to end; the cache gone at the end."""
    weights = _weights_file(tmp_path / "backbone.weights.h5")
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_config(demo_dir, run, weights, fine_tune_epochs=1), callbacks=[_StopAfter(2)])
    cached = sorted(p.name for p in (run / "checkpoints" / "features").glob("*.npz"))
    assert cached == ["train-v0-c00000.npz", "val-v0-c00000.npz"]
    last = keras.models.load_model(run / "checkpoints" / "last.keras")
    assert last.name == "edge_classifier"  # the whole model, not the head

    caplog.set_level("INFO")
    caplog.clear()  # the resume's lines only (an earlier test may have set INFO already)
    result = train(TrainConfig(data="", out=str(run), resume=True))
    assert "backbone features read from the cache" in caplog.text
    assert "extracting backbone features" not in caplog.text
    history = read_history(run / "history.csv")
    assert [(r["epoch"], r["phase"]) for r in history] == [(1, 1), (2, 1), (3, 1), (4, 2)]
    for row in history:
        assert set(row) == set(HISTORY_FIELDS) and None not in row.values()
    assert not (run / "checkpoints").exists()
    assert (run / "model.keras").is_file() and result.metrics["val_accuracy"] is not None


class _Counting:
    """An extractor that counts the batches it computes and can be told to stop (Ctrl-C)."""

    def __init__(self, extractor, stop_at=None, error=KeyboardInterrupt):
        self.extractor, self.stop_at, self.error, self.batches = extractor, stop_at, error, 0
        self.output_shape = extractor.output_shape

    def predict_on_batch(self, batch):
        self.batches += 1
        if self.batches == self.stop_at:
            raise self.error
        return self.extractor.predict_on_batch(batch)


def _must_not_run(extraction):
    return _Counting(extraction["extractor"], 1, AssertionError("the backbone ran: cache missed"))


@pytest.fixture(scope="module")
def extraction(tmp_path_factory, demo_dir):
    """A feature extractor from a weights file, the split and the settings of the cache tests."""
    folder = tmp_path_factory.mktemp("extraction")
    weights = _weights_file(folder / "a.weights.h5")
    config = _config(demo_dir, folder / "run", weights)
    model = model_lib.build_model(5, SIZE, ALPHA, str(weights))
    return dict(extractor=features_lib.feature_extractor(model), config=config, folder=folder,
                splits=discover(demo_dir, config.val_split, config.test_split, config.seed))


def _extract(extraction, folder, extractor=None, views=1, chunk_images=8):
    key = features_lib.cache_key(extraction["extractor"], extraction["splits"],
                                 extraction["config"], views, chunk_images)
    cache = features_lib.FeatureCache(folder, key)
    return features_lib.extract(extractor or extraction["extractor"], cache, extraction["splits"],
                                {"train": views, "val": 1}, SIZE, batch_size=4, seed=5,
                                chunk_images=chunk_images, progress=False)


def _batches(splits: Splits, chunk_images=8, batch_size=4, views=1):
    per_chunk = lambda n: -(-n // batch_size)  # noqa: E731
    return sum(per_chunk(len(splits.files[s][c:c + chunk_images])) * (views if s == "train" else 1)
               for s in ("train", "val") for c in range(0, splits.count(s), chunk_images))


def test_cache_is_reused_without_running_the_backbone(extraction, tmp_path):
    first = _extract(extraction, tmp_path / "features")
    again = _extract(extraction, tmp_path / "features", _must_not_run(extraction))
    for split in ("train", "val"):
        np.testing.assert_array_equal(again[split].features, first[split].features)
        np.testing.assert_array_equal(again[split].labels, first[split].labels)
    assert first["train"].features.shape[:2] == (1, extraction["splits"].count("train"))
    assert list(first["val"].labels) == extraction["splits"].labels["val"]


def test_interrupted_extraction_continues_where_it_stopped(extraction, tmp_path):
    splits = extraction["splits"]
    total = _batches(splits)
    with pytest.raises(KeyboardInterrupt):  # during the third chunk (two batches a chunk)
        _extract(extraction, tmp_path / "features", _Counting(extraction["extractor"], 5))
    assert len(list((tmp_path / "features").glob("*.npz"))) == 2
    assert not [p for p in (tmp_path / "features").iterdir() if p.name.startswith(".")]
    resumed = _Counting(extraction["extractor"])
    result = _extract(extraction, tmp_path / "features", resumed)
    assert resumed.batches == total - 4
    whole = _extract(extraction, tmp_path / "uninterrupted")
    for split in ("train", "val"):
        np.testing.assert_allclose(result[split].features, whole[split].features, atol=1e-6)


def test_augmented_views_are_cached_once_and_differ_from_the_image(extraction, tmp_path):
    data = _extract(extraction, tmp_path / "features", views=3)
    train_views = data["train"].features
    assert train_views.shape[0] == 3 and data["val"].views == 1
    np.testing.assert_allclose(train_views[0], _extract(extraction, tmp_path / "one")["train"]
                               .features[0], atol=1e-6)
    assert not np.allclose(train_views[1], train_views[0], atol=1e-4)
    assert not np.allclose(train_views[2], train_views[1], atol=1e-4)
    again = _must_not_run(extraction)
    np.testing.assert_array_equal(_extract(extraction, tmp_path / "features", again, views=3)
                                  ["train"].features, train_views)


@pytest.mark.parametrize("change", ["split", "img_size", "weights", "backbone"])
def test_cache_is_invalidated_when_what_it_depends_on_changes(extraction, tmp_path, demo_dir,
                                                              change):
    folder = tmp_path / "features"
    _extract(extraction, folder)
    config, splits, extractor = extraction["config"], extraction["splits"], extraction["extractor"]
    if change == "split":
        splits = discover(demo_dir, config.val_split, config.test_split, config.seed + 1)
    elif change == "img_size":
        config = replace(config, img_size=SIZE + 8)
    elif change == "weights":
        other = _weights_file(tmp_path / "b.weights.h5", seed=1)
        extractor = features_lib.feature_extractor(model_lib.build_model(5, SIZE, ALPHA, str(other)))
    else:  # another network: other layers, names and shapes
        extractor = features_lib.feature_extractor(model_lib.build_model(5, SIZE, 0.5, "none"))
    key = features_lib.cache_key(extractor, splits, config, 1, 8)
    assert key != json.loads((folder / features_lib.KEY_FILE).read_text())
    features_lib.FeatureCache(folder, key)
    assert [p.name for p in folder.iterdir()] == [features_lib.KEY_FILE]
    assert json.loads((folder / features_lib.KEY_FILE).read_text())["version"] == \
        features_lib.CACHE_VERSION


@pytest.mark.long  # trains a run of its own, in a process of its own
def test_cached_features_under_a_mirrored_strategy_with_mixed_precision(tmp_path, demo_dir):
    """Extraction outside the strategy, the head fitted by two replicas in float16, the
    classifier's optimizer shared, phase 2 end to end after it."""
    weights = _weights_file(tmp_path / "backbone.weights.h5")
    script = textwrap.dedent(f"""
        import logging
        logging.basicConfig(level=logging.INFO)
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from train.config import TrainConfig
        from train.trainer import train
        train(TrainConfig(data={str(demo_dir)!r}, out={str(tmp_path / "run")!r}, img_size={SIZE},
                          alpha={ALPHA}, weights={str(weights)!r}, epochs=2, fine_tune_epochs=1,
                          batch_size=16, strategy="mirrored", mixed_precision=True))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "phase 1 on cached features" in proc.stderr
    history = read_history(tmp_path / "run" / "history.csv")
    assert [(r["epoch"], r["phase"]) for r in history] == [(1, 1), (2, 1), (3, 2)]
    device = json.loads((tmp_path / "run" / "config.json").read_text())["device"]
    assert device["replicas"] == 2 and device["mixed_precision"] is True
