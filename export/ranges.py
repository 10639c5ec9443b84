"""How settled the int8 activation ranges were: did the last half of the calibration images
still widen them?

The converter calibrates each activation's int8 range as the running minimum and maximum over
the calibration images. A range still widening as images are added had not settled: another
set of the same size would have given other scales, and the images met in the field will push
past the range it fixed. So the Keras model is run over the calibration images in the order
they are fed, a batch at a time, keeping each layer output's minimum and maximum per image,
and the export reports the largest share of a layer's final range that the second half of the
images added (:func:`settledness`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export.images import BATCH_SIZE

SETTLED_WIDENING = 0.15
"""The last half of the calibration images may add less than this share of any layer's range.

Doubling the images widens a range that comes from a light tail only a little: the largest of n
Gaussian values grows like √(2 ln n), 7 % from 100 to 200 images and 5 % from 1,000 to 2,000,
and MobileNetV2's ReLU6 outputs stop at 6. Measured (``python -m benchmarks.calibration_study``
on the demo run, 2026-11-30): from 50 to all 1,050 train images the widest layer widened by
9–12 % whatever the size, its int8 within 1 point of Keras on val at every size (all within
noise), and only 25 images reached 17 %. So 15 % or more means few images set a range; the 9–12 %
of MobileNetV2's heavier-tailed projections is not fixed by more images. On the held-out texture
run (``benchmarks/heldout_data.py``, 840 train images) the widest layer settled at 12 % from 400
images on, and 200 reached 19 % on one layer (flagged), its int8 still within noise. The test
suite's 64-px MobileNetV2 measures 21 % on all 70 of its train images and 32 % on 20: too few
images, and said so."""


@dataclass(frozen=True)
class Settledness:
    """What the second half of the calibration images did to the ranges of the first."""

    images: int
    """Calibration images measured."""
    first_half: int
    """Images of the first half (the ranges it set are compared with the final ones)."""
    widening: float
    """The largest share of a layer's final range that the second half added (0: none)."""
    layer: str
    """The layer it widened most ("" when no layer has a range)."""
    layers: int
    """Layer outputs measured."""

    @property
    def settled(self) -> bool:
        """No layer's range widened by :data:`SETTLED_WIDENING` or more."""
        return self.widening < SETTLED_WIDENING

    def to_json(self) -> dict:
        """The manifest's ``calibration["ranges"]`` entry."""
        return {"images": self.images, "first_half": self.first_half,
                "widening": round(self.widening, 4), "layer": self.layer,
                "layers": self.layers, "settled": self.settled,
                "threshold": SETTLED_WIDENING}


def settledness(names: list[str], minima: np.ndarray, maxima: np.ndarray) -> Settledness:
    """The largest widening the second half of the images brought to any layer's range.

    Args:
        names: the layers, one per column.
        minima, maxima: (images, layers) each image's smallest and largest value of each
            layer's output, in the order the images were fed.

    A layer's widening is ``1 − range(first half) / range(all)``: the share of its final int8
    range the second half added (0 when it added nothing, 1 when the first half saw one
    constant value). A layer constant over all images has no range and is left out.
    """
    minima, maxima = np.asarray(minima, np.float64), np.asarray(maxima, np.float64)
    n = len(minima)
    if n < 2 or not names:
        return Settledness(n, n, 0.0, "", len(names))
    half = n // 2
    full = maxima.max(0) - minima.min(0)
    first = maxima[:half].max(0) - minima[:half].min(0)
    has_range = full > 0
    widening = np.zeros_like(full)
    widening[has_range] = 1 - first[has_range] / full[has_range]
    worst = int(np.argmax(widening))
    return Settledness(n, half, float(widening[worst]), names[worst] if has_range.any() else "",
                       len(names))


def layer_extremes(model, pixels: np.ndarray,
                   batch_size: int = BATCH_SIZE) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Each image's minimum and maximum of every layer output of ``model``, nested models
    included, run ``batch_size`` images at a time (memory stays at a batch).

    Returns:
        (layer names, minima, maxima), the arrays (images, layers) in the order of ``pixels``.
    """
    probe = _Probe(model)
    minima, maxima = [], []
    for start in range(0, len(pixels), batch_size):
        lows, highs = probe(pixels[start:start + batch_size].astype(np.float32))
        minima.append(lows)
        maxima.append(highs)
    if not minima:
        return probe.names, np.zeros((0, len(probe.names))), np.zeros((0, len(probe.names)))
    return probe.names, np.concatenate(minima), np.concatenate(maxima)


def calibration_settledness(model, pixels: np.ndarray) -> Settledness:
    """:func:`settledness` of ``model``'s layer ranges over the calibration ``pixels``."""
    return settledness(*layer_extremes(model, pixels))


FUSED_NEXT = ("BatchNormalization", "ReLU", "Activation")
"""Layers the converter folds into the op before them: that op's own output is never quantized."""


def _fused_into_next(model) -> set[int]:
    """ids of the layers whose one consumer is a :data:`FUSED_NEXT` layer (a convolution
    before its batch norm, a batch norm before its ReLU6): TFLite folds the pair into one op and
    quantizes only the second's output, so the first's range calibrates nothing."""
    import keras

    consumers: dict[int, list] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        for tensor in keras.tree.flatten(keras.Operation.input.fget(layer)):
            producer = tensor._keras_history.operation  # the layer that made this tensor
            consumers.setdefault(id(producer), []).append(layer)
    return {key for key, users in consumers.items()
            if len(users) == 1 and type(users[0]).__name__ in FUSED_NEXT}


class _Probe:
    """A functional model turned into per-image (min, max) of every layer output.

    Keras cannot reach into a nested model's layers from the outer graph, so each functional
    model gets its own probe, returning its layers' extremes and the inputs of the models
    nested in it, which their probes then take.
    """

    def __init__(self, model, prefix: str = "") -> None:
        import keras

        self.names: list[str] = []
        outputs, self._nested = [], []
        fused = _fused_into_next(model)
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer) or id(layer) in fused:
                continue
            if isinstance(layer, keras.Model) and hasattr(layer, "_run_through_graph"):
                # a functional model: its layers get a probe of their own, fed what it was
                # fed here (Model.input names its own inputs; Operation.input, the tensor
                # it was called on in this graph)
                sub = _Probe(layer, f"{prefix}{layer.name}/")
                self._nested.append((len(outputs), sub))
                outputs.append(keras.Operation.input.fget(layer))
                self.names.extend(sub.names)
                continue
            for i, tensor in enumerate(keras.tree.flatten(layer.output)):
                axes = tuple(range(1, len(tensor.shape)))
                low = keras.ops.min(tensor, axis=axes) if axes else tensor
                high = keras.ops.max(tensor, axis=axes) if axes else tensor
                outputs.append(keras.ops.stack([low, high], axis=1))
                self.names.append(f"{prefix}{layer.name}" + (f":{i}" if i else ""))
        self._model = keras.Model(model.inputs, outputs)

    def __call__(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        results = self._model.predict_on_batch(pixels)
        results = results if isinstance(results, list) else [results]
        nested = dict(self._nested)
        lows, highs = [], []
        for i, result in enumerate(results):
            if i in nested:
                sub_lows, sub_highs = nested[i](np.asarray(result))
                lows.append(sub_lows)
                highs.append(sub_highs)
            else:
                extremes = np.asarray(result, np.float64).reshape(len(pixels), 2)
                lows.append(extremes[:, :1])
                highs.append(extremes[:, 1:])
        return np.concatenate(lows, 1), np.concatenate(highs, 1)
