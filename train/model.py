"""The classifier: raw RGB [0, 255] → in-graph MobileNetV2 preprocessing → backbone → head."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import keras
import numpy as np

from common.errors import UserError

IMAGENET_SIZES = (96, 128, 160, 192, 224)
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
DOWNLOAD_TIMEOUT_S = 15
"""Seconds a stalled ImageNet download may hang before we give up."""


class WeightsUnavailable(UserError):
    """ImageNet weights could not be downloaded (offline machine)."""


def _imagenet_cached(alpha: float, img_size: int) -> bool:
    name = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{img_size}_no_top.h5"
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (keras_home / "models" / name).is_file()


def _backbone(img_size: int, alpha: float, weights: str) -> keras.Model:
    shape = (img_size, img_size, 3)
    if weights == "none":
        return keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False,
                                              weights=None)
    if weights == "imagenet":
        if alpha not in IMAGENET_ALPHAS:
            raise UserError(f"--alpha {alpha}: ImageNet weights exist for {IMAGENET_ALPHAS}")
        if img_size not in IMAGENET_SIZES:
            raise UserError(f"--img-size {img_size}: ImageNet weights exist for {IMAGENET_SIZES}")
        previous = socket.getdefaulttimeout()
        # Keras downloads with urllib and no timeout: on a machine whose
        # firewall drops packets that would hang for minutes, not fail.
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            return keras.applications.MobileNetV2(input_shape=shape, alpha=alpha,
                                                  include_top=False, weights="imagenet")
        except Exception as exc:  # Keras wraps every network error in a bare Exception
            if _imagenet_cached(alpha, img_size):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WeightsUnavailable(
                f"cannot download the ImageNet weights ({reason[-120:]}); on an offline machine pass "
                "--weights FILE (a MobileNetV2 backbone weights file) or --weights none") from None
        finally:
            socket.setdefaulttimeout(previous)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"--weights {weights}: expected imagenet, none, or an existing weights file")
    try:
        return keras.applications.MobileNetV2(input_shape=shape, alpha=alpha, include_top=False,
                                              weights=str(path))
    except (ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise UserError(f"--weights {weights}: does not fit MobileNetV2 alpha={alpha} "
                        f"at {img_size} px ({reason})") from None


def backbone_of(model: keras.Model) -> keras.Model:
    """The MobileNetV2 sub-model inside a classifier built by :func:`build_model`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError("model has no nested backbone")


def build_model(num_classes: int, img_size: int = 160, alpha: float = 1.0,
                weights: str = "imagenet", dropout: float = 0.2,
                bn_momentum: float | None = None) -> keras.Model:
    """A MobileNetV2 classifier taking raw RGB pixels in [0, 255].

    With pretrained weights the backbone starts frozen (phase 1) and always
    runs BatchNorm in inference mode, as the Keras transfer-learning guide
    does, so fine-tuning does not wreck the learnt statistics. From scratch
    (``weights="none"``) BatchNorm must learn its statistics, and Keras's
    momentum of 0.999 leaves them near their initial values after a short
    run: validation then sits at chance while training accuracy climbs. So
    from scratch the default momentum is 0.9, and the whole backbone trains
    from phase 1 on (a frozen random backbone extracts no useful feature).

    Raises:
        UserError: impossible settings or unusable weights.
        WeightsUnavailable: ImageNet weights could not be downloaded.
    """
    if num_classes < 2:
        raise UserError(f"need at least 2 classes, got {num_classes}")
    pretrained = weights != "none"
    base = _backbone(img_size, alpha, weights)
    momentum = bn_momentum if bn_momentum is not None else (None if pretrained else 0.9)
    if momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = momentum
    base.trainable = not pretrained

    inputs = keras.Input(shape=(img_size, img_size, 3), name="image")
    # mobilenet_v2.preprocess_input as a layer: x / 127.5 - 1
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = base(x, training=False) if pretrained else base(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    return keras.Model(inputs, outputs, name="edge_classifier")


def set_phase(model: keras.Model, phase: int, fine_tune_at: int, pretrained: bool = True) -> None:
    """Phase 1: only the head trains (the whole network from scratch).
    Phase 2: the head and the backbone layers from ``fine_tune_at`` on."""
    base = backbone_of(model)
    if phase == 1:
        base.trainable = not pretrained
        return
    if not 0 <= fine_tune_at < len(base.layers):
        raise UserError(f"--fine-tune-at {fine_tune_at}: the backbone has {len(base.layers)} "
                        f"layers; expected 0 to {len(base.layers) - 1}")
    base.trainable = True
    for layer in base.layers[:fine_tune_at]:
        layer.trainable = False


def count_params(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


def compile_model(model: keras.Model, lr: float) -> None:
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
