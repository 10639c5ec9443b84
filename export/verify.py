"""Every variant run through the edge runtime (the code that ships) on the evaluation images,
compared with Keras on the same pixels.

One pass over the images serves Keras and all variants: each batch is read once, as uint8,
and memory stays bounded by the batch whatever the size of the split.

Whether a variant's loss is real or noise is a paired question (the same images went through
both), so each variant also counts the images it alone got right and those Keras alone got
right, and the exact McNemar test (:func:`mcnemar_p`) says whether that difference could be
chance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.quiet import quiet_output
from edge_runtime.classifier import Classifier
from edge_runtime.errors import ModelError
from edge_runtime.manifest import Quantization
from export.errors import ExportError
from export.images import Batch

SIGNIFICANCE_LEVEL = 0.05
"""A difference with McNemar's p below this is called significant; at or above it, noise."""

Observer = Callable[[Batch, np.ndarray], None]
"""Called with each batch and Keras's top-1 for it (e.g. to keep the bundle's eval set)."""


@dataclass
class _Tally:
    classifier: Classifier
    correct: int = 0
    agree: int = 0
    max_abs_diff: float = 0.0
    keras_only: int = 0
    variant_only: int = 0


@dataclass(frozen=True)
class Evaluation:
    """What one pass over the evaluation images measured."""

    num_eval: int
    """Images verified (the readable ones of the split)."""
    keras_accuracy: float
    variants: dict[str, dict] = field(default_factory=dict)
    """Variant name → the :class:`edge_runtime.manifest.Variant` fields measured: I/O types
    and quantization, ``accuracy``, ``agreement``, ``max_abs_diff``, ``backend``."""
    paired: dict[str, dict] = field(default_factory=dict)
    """Variant name → ``keras_only_correct`` (images Keras got right and the variant wrong),
    ``variant_only_correct`` (the reverse) and ``mcnemar_p`` (:func:`mcnemar_p` of the two)."""


def mcnemar_p(keras_only: int, variant_only: int) -> float:
    """Two-sided exact McNemar p-value of a paired comparison.

    Only the discordant images tell two classifiers apart: under "no difference" each of
    the ``keras_only + variant_only`` of them is equally likely to fall either way, so the
    smaller count is binomial(n, 1/2); the p-value is twice its tail, at most 1.

    >>> mcnemar_p(5, 0)  # 2 / 2**5
    0.0625
    >>> mcnemar_p(0, 0)
    1.0
    """
    if keras_only < 0 or variant_only < 0:
        raise ValueError(f"counts must be ≥ 0, got {keras_only} and {variant_only}")
    n = keras_only + variant_only
    term = tail = 1  # comb(n, 0); each next term from the last, in exact integers
    for i in range(min(keras_only, variant_only)):
        term = term * (n - i) // (i + 1)
        tail += term
    return min(1.0, 2 * tail / 2 ** n)  # int / int rounds once, at the end


def difference_kind(keras_only: int, variant_only: int, p: float) -> str:
    """``"loss"`` or ``"gain"`` (significant at :data:`SIGNIFICANCE_LEVEL`), ``"noise"``
    (a difference chance explains), or ``"same"`` (no image told them apart)."""
    if keras_only == variant_only == 0:
        return "same"
    if p >= SIGNIFICANCE_LEVEL:
        return "noise"
    return "loss" if keras_only > variant_only else "gain"


def keras_probabilities(model, pixels: np.ndarray) -> np.ndarray:
    """Keras's class probabilities for a uint8 batch (N, H, W, 3), float32 (N, classes)."""
    # predict_on_batch: one forward pass, without predict()'s per-call dataset set-up
    return np.asarray(model.predict_on_batch(pixels.astype(np.float32)), np.float32)


def evaluate(model, variants: Mapping[str, Path], labels_path: Path, batches: Iterable[Batch],
             truth: np.ndarray, threads: int | None = None,
             observers: Sequence[Observer] = ()) -> Evaluation:
    """Accuracy of Keras and of each variant file, and each variant's agreement with Keras.

    Args:
        variants: name → ``.tflite`` file, each loaded by :class:`Classifier` with
            ``labels_path`` (the bundle's own labels).
        batches: the evaluation images (:func:`export.images.iter_batches`).
        truth: the true class of every file the batches index into.
        observers: also called with each batch and Keras's top-1.

    Raises:
        ExportError: no image could be read.
        BackendError: no TFLite interpreter works here.
        RuntimeError: a converted variant does not load (a converter/runtime mismatch).
    """
    tallies = {}
    for name, path in variants.items():
        try:
            with quiet_output():  # the interpreter's "Created XNNPACK delegate" line
                tallies[name] = _Tally(Classifier(path, labels_path=labels_path, threads=threads))
        except ModelError as exc:  # the converter's own output: not the user's input
            raise RuntimeError(f"{name}: the converted model does not load in the edge "
                               f"runtime ({exc})") from exc
    seen = keras_correct = 0
    for batch in batches:
        labels = truth[batch.indices]
        keras = keras_probabilities(model, batch.pixels)
        keras_top1 = keras.argmax(1)
        seen += len(batch.pixels)
        keras_correct += int(np.sum(keras_top1 == labels))
        for tally in tallies.values():
            # the uint8 pixels through the classifier's own feed, as on the device
            probs = tally.classifier.probabilities(batch.pixels)
            top1 = probs.argmax(1)
            right, keras_right = top1 == labels, keras_top1 == labels
            tally.correct += int(np.sum(right))
            tally.keras_only += int(np.sum(keras_right & ~right))
            tally.variant_only += int(np.sum(right & ~keras_right))
            tally.agree += int(np.sum(top1 == keras_top1))
            tally.max_abs_diff = max(tally.max_abs_diff, float(np.max(np.abs(probs - keras))))
        for observe in observers:
            observe(batch, keras_top1)
    if not seen:
        raise ExportError("no readable image in the evaluation split to verify against")
    measured, paired = {}, {}
    for name, tally in tallies.items():
        c = tally.classifier
        measured[name] = {
            "input_dtype": c.input_dtype.name, "output_dtype": c.output_dtype.name,
            "input_quantization": Quantization(float(c.input_quantization[0]),
                                               int(c.input_quantization[1])),
            "output_quantization": Quantization(float(c.output_quantization[0]),
                                                int(c.output_quantization[1])),
            "accuracy": tally.correct / seen, "agreement": tally.agree / seen,
            "max_abs_diff": tally.max_abs_diff, "backend": c.backend,
        }
        paired[name] = {"keras_only_correct": tally.keras_only,
                        "variant_only_correct": tally.variant_only,
                        "mcnemar_p": mcnemar_p(tally.keras_only, tally.variant_only)}
    return Evaluation(num_eval=seen, keras_accuracy=keras_correct / seen, variants=measured,
                      paired=paired)
