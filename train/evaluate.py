"""Evaluating a trained model on a split, and the float32 copy that evaluation and export use."""

from __future__ import annotations

import keras
import numpy as np

from train import model as model_lib
from train.config import TrainConfig
from train.dataset import make_dataset
from train.report import classification_metrics
from train.splits import Splits


def float32_copy(model: keras.Model, config: TrainConfig, num_classes: int) -> keras.Model:
    """The same network with float32 layers, outside any distribution strategy:
    what evaluation, export and the device expect."""
    keras.mixed_precision.set_global_policy("float32")
    clone = model_lib.build_model(num_classes, config.img_size, config.alpha, "none",
                                  config.dropout, config.bn_momentum, backbone=config.backbone)
    clone.set_weights(model.get_weights())
    return clone


def evaluate(model: keras.Model, splits: Splits, split: str, config: TrainConfig) -> dict:
    if not splits.files[split]:
        return {"accuracy": None, "per_class_accuracy": {}, "confusion_matrix": []}
    ds = make_dataset(splits, split, config.img_size, config.batch_size, cache="none")
    y_true = np.concatenate([labels.numpy() for _, labels in ds])
    probs = model.predict(ds, verbose=0)
    return classification_metrics(y_true, probs.argmax(axis=1), splits.classes)
