"""A candidate's int8 accuracy on the validation split: export's conversion, the edge runtime's
answers (what will ship), never the test split."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.progress import progress_bar
from common.rundir import LABELS

log = logging.getLogger(__name__)

INT8_IO = "uint8"


@dataclass(frozen=True)
class Int8Accuracy:
    """What one measurement found."""

    int8: float
    """int8 top-1 on the validation split, through :class:`edge_runtime.classifier.Classifier`."""
    keras: float
    """The Keras model's top-1 on the same images."""
    images: int


def int8_val_accuracy(run: Path, calibration_samples: int = 100, threads: int | None = None,
                      seed: int = 0, progress: bool = True) -> Int8Accuracy:
    """Convert ``run``'s model to int8 as ``edge-export`` does (calibrated on the train split)
    and measure it on the validation split; the flatbuffer goes to a temporary folder.

    Small data sets are accepted with fewer calibration images than export demands
    (``force``): every candidate is calibrated alike, and the search compares them.

    Raises:
        RunError: a broken run. ExportError: no validation image could be read.
    """
    from export.calibration import load_calibration
    from export.convert import convert
    from export.errors import ExportError
    from export.exporter import resize_method
    from export.formats import FORMATS
    from export.images import iter_batches
    from export.verify import evaluate
    from train.saved_run import load_run

    model, splits, labels = load_run(run)
    paths = splits.paths("val")
    if not paths:
        raise ExportError(f"{run}: no validation images to measure int8 on")
    method = resize_method(run)
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    calibration = load_calibration(splits, labels, calibration_samples, size, method,
                                   seed=seed, force=True, progress=progress)
    flatbuffer = convert(model, FORMATS["int8"], calibration.pixels, INT8_IO, progress)
    truth = np.asarray(splits.labels["val"])
    with tempfile.TemporaryDirectory(prefix="edge-tune-int8-") as scratch:
        file = Path(scratch) / FORMATS["int8"].file
        file.write_bytes(flatbuffer)
        with progress_bar(len(paths), "int8 on val", progress) as bar:
            result = evaluate(model, {"int8": file}, run / LABELS,
                              iter_batches(paths, size, method, bar=bar), truth, threads)
    return Int8Accuracy(int8=result.variants["int8"]["accuracy"],
                        keras=result.keras_accuracy, images=result.num_eval)
