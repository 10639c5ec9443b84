"""The classifier: raw RGB [0, 255] → in-graph preprocessing → backbone → head.

The backbone is one of :data:`BACKBONES` (MobileNetV2, MobileNetV3-Small, MobileNetV3-Large),
a nested Keras application; the head's layers are named "pool", "dropout" and "predictions"
whatever the backbone, so code can cut the model at "pool".
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

import keras
import numpy as np

from common.errors import UserError
from train import backbones
from train.backbones import BACKBONES, DEFAULT_BACKBONE

__all__ = ["BACKBONES", "WeightsUnavailable", "backbone_of", "build_model", "compile_model",
           "count_params", "set_phase"]

DOWNLOAD_TIMEOUT_S = 15
"""Seconds a stalled ImageNet download may hang before we give up."""


class WeightsUnavailable(UserError):
    """ImageNet weights could not be downloaded (offline machine)."""


def _imagenet_file(backbone: str, alpha: float, img_size: int) -> str:
    """The file name Keras caches the backbone's ImageNet weights under (no top)."""
    if backbone == "mobilenet_v2":
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{img_size}_no_top.h5"
    size = backbone.rsplit("_", 1)[1]  # small | large
    return f"weights_mobilenet_v3_{size}_224_{float(alpha)}_float_no_top_v2.h5"


def _imagenet_cached(backbone: str, alpha: float, img_size: int) -> bool:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (keras_home / "models" / _imagenet_file(backbone, alpha, img_size)).is_file()


def _application(backbone: str, img_size: int, alpha: float, weights: str | None) -> keras.Model:
    """The Keras application without its top, taking pixels in [-1, 1]: the preprocessing is
    the classifier's own "preprocess" layer, the same for every backbone (MobileNetV3's
    built-in Rescaling, the same x / 127.5 - 1, is left out so it is applied once)."""
    kwargs = {"input_shape": (img_size, img_size, 3), "alpha": alpha, "include_top": False,
              "weights": weights}
    if backbone != "mobilenet_v2":
        kwargs["include_preprocessing"] = False
    constructor = getattr(keras.applications, backbones.spec(backbone).application)
    with warnings.catch_warnings():
        # MobileNetV3's ImageNet weights were trained at 224 and fit any size: its warning
        # that "weights for input shape (224, 224) will be loaded" says nothing to act on
        warnings.filterwarnings("ignore", message=".*input_shape.*")
        return constructor(**kwargs)


def _backbone(backbone: str, img_size: int, alpha: float, weights: str) -> keras.Model:
    title = backbones.spec(backbone).title
    if weights == "none":
        return _application(backbone, img_size, alpha, None)
    if weights == "imagenet":
        problem = backbones.imagenet_problem(backbone, alpha, img_size)
        if problem:
            raise UserError(problem + " (or pass --weights none or a weights FILE)")
        previous = socket.getdefaulttimeout()
        # Keras downloads with urllib and no timeout: on a machine whose
        # firewall drops packets that would hang for minutes, not fail.
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            return _application(backbone, img_size, alpha, "imagenet")
        except Exception as exc:  # Keras wraps every network error in a bare Exception
            if _imagenet_cached(backbone, alpha, img_size):
                raise
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WeightsUnavailable(
                f"cannot download the ImageNet weights ({reason[-120:]}); on an offline machine pass "
                f"--weights FILE (a {title} backbone weights file) or --weights none") from None
        finally:
            socket.setdefaulttimeout(previous)
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"--weights {weights}: expected imagenet, none, or an existing weights file")
    try:
        return _application(backbone, img_size, alpha, str(path))
    except (ValueError, OSError) as exc:
        reason = str(exc).splitlines()[0][:160]
        raise UserError(f"--weights {weights}: does not fit {title} ({backbone}) alpha={alpha} "
                        f"at {img_size} px ({reason})") from None


def backbone_of(model: keras.Model) -> keras.Model:
    """The backbone (a Keras application) inside a classifier built by :func:`build_model`."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError("model has no nested backbone")


def build_model(num_classes: int, img_size: int = 160, alpha: float = 1.0,
                weights: str = "imagenet", dropout: float = 0.2,
                bn_momentum: float | None = None,
                backbone: str = DEFAULT_BACKBONE) -> keras.Model:
    """A classifier on ``backbone`` (one of :data:`BACKBONES`) taking raw RGB pixels in [0, 255].

    The input layer is "image"; a Rescaling layer "preprocess" maps [0, 255] to [-1, 1] (what
    every one of these backbones was trained on) in the graph, once; then the backbone, and the
    head "pool" (GlobalAveragePooling2D), "dropout", "predictions" (softmax, float32).

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
    base = _backbone(backbone, img_size, alpha, weights)
    momentum = bn_momentum if bn_momentum is not None else (None if pretrained else 0.9)
    if momentum is not None:
        for layer in base.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = momentum
    base.trainable = not pretrained

    inputs = keras.Input(shape=(img_size, img_size, 3), name="image")
    # mobilenet_v2.preprocess_input as a layer: x / 127.5 - 1, as MobileNetV3's own Rescaling
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
