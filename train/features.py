"""Phase 1 on cached backbone features: the frozen backbone runs over each image once.

With a pretrained backbone, phase 1 trains only the head (``dropout`` → ``predictions``) on top
of a frozen network that always runs BatchNorm in inference mode, so the output of the ``pool``
layer for an image never changes during phase 1. Running the backbone over every image in every
epoch (what Keras's ``fit`` does end to end) recomputes the same numbers again and again; here
they are computed once, kept in the run directory, and the head trains on them ("fast feature
extraction", seed 003). The head is the full model's own ``dropout`` and ``predictions`` layer
objects, so what it learns is what the full model computes: no weights are copied.

Augmentation cannot happen after the backbone, so ``views`` > 1 caches that many versions of
each training image: the image itself and ``views - 1`` randomly flipped, rotated and zoomed
copies (the same augmentation as end to end); each epoch shows one view of each image, picked at
random.

The cache is a folder of chunks (``<split>-v<view>-c<chunk>.npz``, each written atomically) and
``key.json``, the fingerprint of everything the features depend on: the split's files and
labels, the image size, the backbone and its weights (hashed from the layers themselves), the
views and the seed. An interrupted extraction keeps its finished chunks and continues after them;
a different fingerprint empties the folder first.

Only layer names are used (``image`` input, ``pool``, ``dropout``, ``predictions``), never the
backbone's internals, so every backbone :func:`train.model.build_model` makes works alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.fileio import atomic_write, write_json
from common.progress import progress_bar
from train.config import TrainConfig
from train.dataset import AUTOTUNE, DecodeFailures, augmentation, decoded
from train.splits import Splits

log = logging.getLogger(__name__)

FEATURES_DIR = "features"
"""The cache's folder, inside the run's ``checkpoints/`` (deleted with it when the run ends)."""
KEY_FILE = "key.json"
CHUNK_IMAGES = 256
"""Images per chunk file: what an interrupted extraction loses at most, per split and view."""
CACHE_VERSION = 1
POOL, DROPOUT, PREDICTIONS = "pool", "dropout", "predictions"


def feature_extractor(model: keras.Model) -> keras.Model:
    """The classifier up to its ``pool`` layer (raw pixels in, pooled features out), sharing its
    layers and weights."""
    return keras.Model(model.inputs, model.get_layer(POOL).output, name="feature_extractor")


def head_of(model: keras.Model) -> keras.Model:
    """The classifier's head as a model of its own: pooled features → ``dropout`` →
    ``predictions``. The layers are the classifier's own objects: training the head trains the
    classifier."""
    width = model.get_layer(POOL).output.shape[-1]
    inputs = keras.Input(shape=(width,), name="features")
    x = model.get_layer(DROPOUT)(inputs)
    outputs = model.get_layer(PREDICTIONS)(x)
    return keras.Model(inputs, outputs, name="head")


def split_fingerprint(splits: Splits) -> str:
    """SHA-256 (hex) of the split: classes, files relative to the data folder, labels."""
    content = json.dumps([splits.classes, splits.files, splits.labels], sort_keys=True)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def weights_fingerprint(model: keras.Model) -> str:
    """SHA-256 (hex) of a model's weights, names, shapes and values: changes with the backbone,
    its width, its weights file."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.asarray(keras.ops.convert_to_numpy(weight), np.float32)
        digest.update(f"{weight.path}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def cache_key(extractor: keras.Model, splits: Splits, config: TrainConfig, views: int,
              chunk_images: int = CHUNK_IMAGES) -> dict:
    """Everything the cached features depend on: the split, the image size, the backbone and its
    weights (the values themselves, not only the file's name), the views and their seed."""
    return {"split": split_fingerprint(splits), "img_size": config.img_size,
            "backbone": config.backbone, "alpha": config.alpha,
            "weights": config.weights, "weights_sha256": weights_fingerprint(extractor),
            "views": views, "seed": config.seed, "chunk_images": chunk_images}


@dataclass
class Features:
    """Cached features of one split: ``features[view, image]`` and the images' labels (images
    that failed to decode are left out of both)."""

    features: np.ndarray
    labels: np.ndarray

    @property
    def views(self) -> int:
        return self.features.shape[0]


class FeatureCache:
    """The cache folder of one run, tied to a fingerprint (:data:`KEY_FILE`).

    Args:
        folder: where the chunks live (created if needed).
        key: what the features depend on; a folder holding another key is emptied.
    """

    def __init__(self, folder: Path, key: dict) -> None:
        self.folder, self.key = Path(folder), {"version": CACHE_VERSION, **key}
        key_path = self.folder / KEY_FILE
        if self.folder.is_dir():
            try:
                saved = json.loads(key_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            if saved != self.key:
                log.info("cached features in %s were made for other settings: extracting afresh",
                         self.folder)
                shutil.rmtree(self.folder)
        if not key_path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(key_path, self.key)

    def chunk_path(self, split: str, view: int, chunk: int) -> Path:
        return self.folder / f"{split}-v{view}-c{chunk:05d}.npz"

    def read_chunk(self, split: str, view: int, chunk: int) -> tuple[np.ndarray, np.ndarray] | None:
        """A finished chunk's (features, labels), or None when it is not there yet."""
        path = self.chunk_path(split, view, chunk)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                return data["features"], data["labels"]
        except (OSError, ValueError, KeyError) as exc:  # written atomically: should not happen
            log.warning("cached features %s unreadable (%s): extracting it again", path, exc)
            return None

    def write_chunk(self, split: str, view: int, chunk: int, features: np.ndarray,
                    labels: np.ndarray) -> None:
        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, features=features, labels=labels)

        atomic_write(self.chunk_path(split, view, chunk), save)


def _chunk_images(splits: Splits, split: str, img_size: int, chunk: int, chunk_images: int,
                  view: int, seed: int, batch_size: int, failures: DecodeFailures,
                  parallel: bool) -> tf.data.Dataset:
    """Batches of one chunk's images as float32 [0, 255]; views above 0 augmented, each chunk
    with a seed of its own so that a resumed extraction makes the same views."""
    start = chunk * chunk_images
    paths = [str(p) for p in splits.paths(split)[start:start + chunk_images]]
    labels = splits.labels[split][start:start + chunk_images]
    ds = decoded(paths, labels, img_size, failures, parallel=parallel).batch(batch_size)
    ds = ds.map(lambda images, y: (tf.cast(images, tf.float32), y))
    if view > 0:
        augmenter = augmentation(seed + 1009 * view + 7919 * chunk)
        ds = ds.map(lambda images, y: (augmenter(images, training=True), y))
    return ds.prefetch(AUTOTUNE)


def _predict(extractor: keras.Model, batch: tf.Tensor, batch_size: int) -> np.ndarray:
    """Features of one batch; a short last batch is padded to ``batch_size`` so that every
    call has one shape (each new shape would trace the model again)."""
    n = int(batch.shape[0])
    if n < batch_size:
        batch = tf.pad(batch, [[0, batch_size - n], [0, 0], [0, 0], [0, 0]])
    return np.asarray(extractor.predict_on_batch(batch), np.float32)[:n]


def extract(extractor: keras.Model, cache: FeatureCache, splits: Splits, plan: dict[str, int],
            img_size: int, batch_size: int, seed: int, *, failures: DecodeFailures | None = None,
            parallel: bool = True, chunk_images: int = CHUNK_IMAGES,
            progress: bool = True) -> dict[str, Features]:
    """The features of each split in ``plan`` (split → number of views), from the cache where
    there, else computed and cached chunk by chunk.

    Returns:
        split → :class:`Features`.

    Side effects:
        Writes the missing chunks; a progress bar on a terminal; KeyboardInterrupt keeps the
        chunks finished so far.
    """
    failures = failures if failures is not None else DecodeFailures()
    chunks = {split: math.ceil(splits.count(split) / chunk_images) for split in plan}
    jobs = [(split, view, c) for split, views in plan.items() for view in range(views)
            for c in range(chunks[split])]
    width = extractor.output_shape[-1]
    parts: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}
    todo = []
    for job in jobs:
        found = cache.read_chunk(*job)
        if found is None:
            todo.append(job)
        else:
            parts[job] = found
    if todo:
        images = sum(len(splits.files[s][c * chunk_images:(c + 1) * chunk_images])
                     for s, _, c in todo)
        log.info("extracting backbone features of %d image view(s) once%s ...", images,
                 f" ({len(jobs) - len(todo)} of {len(jobs)} chunks already cached)"
                 if len(todo) < len(jobs) else "")
        started = time.perf_counter()
        with progress_bar(images, "features", enabled=progress) as bar:
            for split, view, c in todo:
                feats, labels = [], []
                for batch, y in _chunk_images(splits, split, img_size, c, chunk_images, view, seed,
                                              batch_size, failures, parallel):
                    feats.append(_predict(extractor, batch, batch_size))
                    labels.append(y.numpy())
                    bar.update(len(y))
                part = (np.concatenate(feats) if feats else np.zeros((0, width), np.float32),
                        np.concatenate(labels) if labels else np.zeros((0,), np.int32))
                cache.write_chunk(split, view, c, *part)
                parts[(split, view, c)] = part
        log.info("features extracted in %.0f s", time.perf_counter() - started)
    elif jobs:
        log.info("backbone features read from the cache in %s", cache.folder)
    result = {}
    for split, views in plan.items():
        if not chunks[split]:
            result[split] = Features(np.zeros((views, 0, width), np.float32),
                                     np.zeros((0,), np.int32))
            continue
        per_view = [[parts[(split, v, c)] for c in range(chunks[split])] for v in range(views)]
        labels = [np.concatenate([p[1] for p in view]) for view in per_view]
        if any(len(lab) != len(labels[0]) or (lab != labels[0]).any() for lab in labels):
            raise RuntimeError(f"the cached views of the {split} split disagree (an image "
                               "decoded in one view and not another): rerun to extract afresh")
        result[split] = Features(np.stack([np.concatenate([p[0] for p in view])
                                           for view in per_view]), labels[0])
    return result


def feature_dataset(data: Features, batch_size: int, *, training: bool = False, seed: int = 0,
                    drop_remainder: bool = False) -> tf.data.Dataset:
    """Batches of (features, label); in training, shuffled every epoch and each image's view
    picked at random every epoch."""
    n, views = len(data.labels), data.views
    flat = tf.constant(data.features.reshape(views * n, -1))
    labels = tf.constant(data.labels)
    ds = tf.data.Dataset.range(n)
    if training:
        ds = ds.shuffle(max(1, n), seed=seed, reshuffle_each_iteration=True)
        if views > 1:
            picks = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
            ds = tf.data.Dataset.zip(ds, picks).map(lambda i, r: i + n * (r % views))
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.map(lambda idx: (tf.gather(flat, idx), tf.gather(labels, idx % n))).prefetch(AUTOTUNE)
