"""Starting a run from a finished one (``edge-train --init-from RUN``): its network and head.

The parent's ``model.keras`` is loaded whole (backbone and head). A class the new data shares
with the parent keeps its row of the head (the "predictions" layer's kernel column and bias),
whatever its position; a new class gets a new row, initialised as Keras initialises a fresh
head; a class of the parent with no folder in the new data is refused unless the caller
allows dropping it (its row is then left out). No TensorFlow at import: :func:`parent_settings`
answers before TensorFlow starts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.errors import UserError
from common.fileio import sha256
from common.rundir import CONFIG, MODEL, check_run, read_config

log = logging.getLogger(__name__)

ARCHITECTURE = ("backbone", "img_size", "alpha", "dropout", "bn_momentum", "weights")
"""Settings a child takes from its parent unless given: the network must be the same one."""


def parent_settings(run: str | Path) -> dict:
    """The parent's architecture settings (:data:`ARCHITECTURE`, those its config.json holds).

    Raises:
        RunError: ``run`` is not a finished edge-train run.
        UserError: its config.json lacks them.
    """
    run = Path(run)
    check_run(run)
    config = read_config(run)
    if "img_size" not in config:
        raise UserError(f"--init-from {run}: {run / CONFIG} does not say how the model was "
                        "built (no img_size)")
    settings = {key: config[key] for key in ARCHITECTURE if key in config}
    settings.setdefault("backbone", "mobilenet_v2")  # runs from before the choice
    return settings


def check_same_network(run: Path, config) -> None:
    """The child's network settings are the parent's.

    Raises:
        UserError: naming the first setting that differs.
    """
    parent = parent_settings(run)
    for key in ("backbone", "img_size", "alpha"):
        if key in parent and parent[key] != getattr(config, key):
            raise UserError(f"--init-from {run}: its {key} is {parent[key]}, this run's "
                            f"{getattr(config, key)}; leave --{key.replace('_', '-')} out to "
                            "use the parent's")


def class_mapping(parent: list[str], child: list[str], allow_dropped: bool) -> dict[str, list]:
    """How the child's classes relate to the parent's: ``kept`` (child index, parent index)
    pairs, ``new`` child indices, ``dropped`` parent class names.

    Raises:
        UserError: a parent class is missing from the new data and ``allow_dropped`` is False.
    """
    position = {name: i for i, name in enumerate(parent)}
    kept = [(i, position[name]) for i, name in enumerate(child) if name in position]
    new = [i for i, name in enumerate(child) if name not in position]
    dropped = [name for name in parent if name not in set(child)]
    if dropped and not allow_dropped:
        raise UserError(f"--init-from: the parent knows {', '.join(dropped)}, which the new data "
                        f"has no folder for; add {'it' if len(dropped) == 1 else 'them'} to the "
                        "data (the model would forget the class), or pass --allow-dropped-classes "
                        "to train without")
    return {"kept": kept, "new": new, "dropped": dropped}


def parent_record(run: Path, mapping: dict, parent_classes: list[str],
                  child_classes: list[str]) -> dict:
    """What ``config.json`` records of the parent under ``"parent"``."""
    return {"run": str(run.resolve()), "model_sha256": sha256(run / MODEL),
            "classes": parent_classes,
            "kept": [child_classes[i] for i, _ in mapping["kept"]],
            "new": [child_classes[i] for i in mapping["new"]],
            "dropped": mapping["dropped"]}


def model_from_parent(run: Path, classes: list[str], allow_dropped: bool, seed: int):
    """The parent's model with a head for ``classes``, and the ``parent`` record.

    Returns:
        ``(keras.Model, record)``; the model is the parent's own when the classes are the
        same, in the same order.

    Raises:
        UserError: a dropped class not allowed; a model whose head is not "predictions".
    """
    import keras
    import numpy as np

    from train.saved_run import load_run

    model, _splits, parent_classes = load_run(run)
    mapping = class_mapping(parent_classes, classes, allow_dropped)
    record = parent_record(run, mapping, parent_classes, classes)
    log.info(f"starting from {run}: {len(mapping['kept'])} class(es) keep their head row"
             + (f", new: {', '.join(record['new'])}" if record["new"] else "")
             + (f", dropped: {', '.join(record['dropped'])}" if record["dropped"] else ""))
    if parent_classes == classes:
        return model, record
    try:
        head = model.get_layer("predictions")
        features = model.get_layer("dropout").output
    except ValueError:
        raise UserError(f"--init-from {run}: its model has no 'dropout'/'predictions' head "
                        "(not an edge-train model)") from None
    old_kernel, old_bias = head.get_weights()
    keras.utils.set_random_seed(seed)
    dense = keras.layers.Dense(len(classes), activation="softmax", dtype="float32",
                               name="predictions")
    outputs = dense(features)
    kernel, bias = (np.array(w) for w in dense.get_weights())
    for child, parent in mapping["kept"]:
        kernel[:, child] = old_kernel[:, parent]
        bias[child] = old_bias[parent]
    dense.set_weights([kernel, bias])
    return keras.Model(model.inputs, outputs, name=model.name), record

