"""tf.data input pipelines: decode → resize → cache → shuffle → batch → augment → prefetch.

Decoding goes through :func:`edge_runtime.image.load_model_pixels` (Pillow,
inside ``tf.numpy_function``) so training sees exactly the pixels the device
will: same EXIF handling, colour conversion and resize filter. Decoded
images are cached as uint8 after the first epoch, so later epochs cost no
decoding at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from edge_runtime.image import ImageError, load_model_pixels
from train.splits import Splits

AUTOTUNE = tf.data.AUTOTUNE

log = logging.getLogger(__name__)


class DecodeFailures:
    """Files that failed to decode inside the pipeline (after the up-front scan).

    The scan in :mod:`train.splits` decodes every file once, so this only
    fills when a file changes or breaks while training runs. Such a file is
    dropped from the epoch with a warning instead of crashing it.
    """

    def __init__(self) -> None:
        self.paths: set[str] = set()

    def add(self, path: str, reason: str) -> None:
        if path not in self.paths:
            self.paths.add(path)
            log.warning("skipping %s: %s", path, reason)


def augmentation(seed: int) -> tf.keras.Sequential:
    """Random flip, rotation and zoom, as in the tutorials (training only)."""
    from keras import layers

    return tf.keras.Sequential([
        layers.RandomFlip("horizontal", seed=seed),
        layers.RandomRotation(0.1, seed=seed + 1),
        layers.RandomZoom(0.1, seed=seed + 2),
    ], name="augmentation")


def decoded(paths: Sequence[str], labels: Sequence[int], img_size: int,
            failures: DecodeFailures | None = None, parallel: bool = True) -> tf.data.Dataset:
    """(uint8 image, label) pairs; undecodable files are dropped and reported.

    ``parallel=False`` decodes in order, one file at a time.
    """
    failures = failures if failures is not None else DecodeFailures()
    size = (img_size, img_size)

    def load(path: bytes) -> tuple[np.ndarray, np.bool_]:
        path_str = path.decode("utf-8")
        try:
            return load_model_pixels(path_str, size), np.bool_(True)
        except ImageError as exc:
            failures.add(path_str, str(exc).split(": ", 1)[-1])
            return np.zeros((img_size, img_size, 3), np.uint8), np.bool_(False)

    def to_image(path: tf.Tensor, label: tf.Tensor):
        image, ok = tf.numpy_function(load, [path], [tf.uint8, tf.bool], stateful=False)
        image.set_shape((img_size, img_size, 3))
        ok.set_shape(())
        return image, label, ok

    ds = tf.data.Dataset.from_tensor_slices((list(map(str, paths)), list(labels)))
    ds = ds.map(to_image, num_parallel_calls=AUTOTUNE if parallel else None)
    ds = ds.filter(lambda image, label, ok: ok)
    return ds.map(lambda image, label, ok: (image, label))


def make_dataset(splits: Splits, split: str, img_size: int, batch_size: int, *,
                 training: bool = False, seed: int = 0, cache: str = "memory",
                 augment: bool = True, failures: DecodeFailures | None = None,
                 drop_remainder: bool = False, deterministic: bool = False) -> tf.data.Dataset:
    """The batched dataset of one split, images as float32 in [0, 255].

    Args:
        cache: ``memory``, ``none``, or a file path prefix (one cache file per split).
        training: shuffle every epoch and, with ``augment``, apply augmentation.
        drop_remainder: only full batches; Keras cannot split a ragged last batch across
            several replicas.
        deterministic: op determinism is on (``--deterministic``). Every map then runs in
            order: TensorFlow serialises the random augmentation anyway, and rewriting a
            pipeline of parallel maps for it logs a spurious ``NodeDef mentions attribute
            use_unbounded_threadpool`` error (TF 2.21). Decoding is cached after the first epoch.
    """
    parallel = None if deterministic else AUTOTUNE
    ds = decoded([str(p) for p in splits.paths(split)], splits.labels[split], img_size, failures,
                 parallel=not deterministic)
    if cache == "memory":
        ds = ds.cache()
    elif cache != "none":
        ds = ds.cache(f"{cache}.{split}")
    if training:
        ds = ds.shuffle(max(1, splits.count(split)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda images, labels: (tf.cast(images, tf.float32), labels),
                num_parallel_calls=parallel)
    if training and augment:
        augmenter = augmentation(seed)
        ds = ds.map(lambda images, labels: (augmenter(images, training=True), labels),
                    num_parallel_calls=parallel)
    return ds.prefetch(AUTOTUNE)
