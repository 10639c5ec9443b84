"""--debug-quant tells signal from noise: each layer against the rounding-noise floor, and
--keep-float keeps only layers clearly above it (none when none is), saying so.

The models are tiny Keras CNNs built here with weights set by hand; each conversion takes about
a second.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from export.quant_debug import (
    NOISE,
    NOISE_FLOOR,
    SIGNAL,
    SIGNAL_THRESHOLD,
    plan_float_layers,
    quantization_report,
    report_csv,
    verdict,
)
from export.table import format_quant_report

OUTLIER = "hidden"
"""The layer the planted-outlier model breaks."""


def _row(name: str, rmse_over_scale: float) -> dict:
    return {"op_name": "CONV_2D", "tensor_name": f"m/{name}/conv",
            "rmse_over_scale": rmse_over_scale,
            "times_floor": round(rmse_over_scale / NOISE_FLOOR, 3),
            "verdict": verdict(rmse_over_scale)}


def test_the_floor_is_uniform_rounding_noise_and_signal_starts_at_twice_it():
    assert NOISE_FLOOR == pytest.approx(0.2887, abs=1e-4)
    # rounding a spread of values to a grid of step 1 leaves rmse ≈ 1/√12
    values = np.random.default_rng(0).uniform(-50, 50, 100_000)
    assert math.sqrt(np.mean((np.round(values) - values) ** 2)) == pytest.approx(NOISE_FLOOR,
                                                                                 rel=0.01)
    assert SIGNAL_THRESHOLD == pytest.approx(2 * NOISE_FLOOR)
    assert verdict(0.39) == verdict(0.57) == NOISE  # issue 19's MobileNetV2: all 0.29–0.39
    assert verdict(0.58) == verdict(3.0) == SIGNAL


def test_keep_float_never_picks_noise_layers():
    rows = [_row("a", 2.0), _row("b", 0.9), _row("c", 0.5), _row("d", 0.3)]
    assert plan_float_layers(rows, 1).float_layers == ("m/a/conv",)
    assert plan_float_layers(rows, 5).float_layers == ("m/a/conv", "m/b/conv")
    quiet = [_row("c", 0.5), _row("d", 0.3)]
    assert plan_float_layers(quiet, 3).float_layers == ()


def test_report_says_plainly_when_no_layer_stands_out_and_what_helps():
    text = format_quant_report(plan_float_layers([_row("c", 0.39), _row("d", 0.29)], 3))
    assert "no layer stands out: every layer's rmse/scale is 0.29–0.39" in text
    assert "--calibration-samples" in text and "quantization-aware training" in text
    assert text.splitlines()[-1] == ("--keep-float 3: no layer stands out above the noise floor, "
                                     "so none was kept in float (no int8_keepfloat variant)")
    assert "signal  " not in text


def test_report_lists_signal_layers_and_says_when_fewer_than_asked_stand_out():
    rows = [_row("a", 2.0), _row("b", 0.9), _row("c", 0.5), _row("d", 0.3)]
    lines = format_quant_report(plan_float_layers(rows, 3)).splitlines()
    assert lines[0].startswith("quant_report.csv: 4 int8 layer(s) against the rounding-noise "
                               "floor (rmse/scale 0.289 = 1/√12; signal from 2× it)")
    assert lines[1].split() == ["signal", "6.93×", "floor", "rmse/scale", "2.000", "a/conv"]
    assert lines[2].split()[-1] == "b/conv"
    assert lines[3] == "  the other 2 layer(s) are noise (at most 1.73× the floor)"
    assert lines[4] == ("--keep-float 3: only 2 layer(s) stand out above the noise floor; kept "
                        "those in float (int8_keepfloat): a/conv, b/conv")
    enough = format_quant_report(plan_float_layers(rows, 1)).splitlines()[-1]
    assert enough == "--keep-float 1: kept the 1 worst signal layer(s) in float " \
                     "(int8_keepfloat): a/conv"
    only_debug = format_quant_report(plan_float_layers(rows, 0))
    assert "--keep-float" not in only_debug


def _tiny_cnn(outlier: bool):
    """8×8 RGB → two convolutions → pooled → dense 8 → softmax 4, seeded random weights.

    With ``outlier``, ``hidden`` gets a weight of 1000 on a feature that is always 0 (the
    second convolution's first channel, switched off): the output does not change, but each
    unit's int8 weight scale becomes 1000/127 and crushes its real weights (about 0.5) to 0.
    """
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(x)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, activation="relu", name=OUTLIER)(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="head")(x))
    if outlier:
        kernel, bias = model.get_layer("conv2").get_weights()
        kernel[..., 0], bias[0] = 0.0, -1.0  # channel 0 is always 0 after the ReLU
        model.get_layer("conv2").set_weights([kernel, bias])
        kernel, bias = model.get_layer(OUTLIER).get_weights()
        kernel[0, :] = 1000.0
        model.get_layer(OUTLIER).set_weights([kernel, bias])
    return model


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 8, 8, 3)).astype(np.uint8)


def test_a_model_without_outlier_layers_keeps_nothing_and_says_so(calibration):
    rows = quantization_report(_tiny_cnn(outlier=False), calibration)
    assert len(rows) >= 5 and all(r["verdict"] == NOISE for r in rows)
    assert all(r["rmse_over_scale"] < SIGNAL_THRESHOLD for r in rows)
    report = plan_float_layers(rows, 3)
    assert report.float_layers == ()
    assert "no layer stands out" in format_quant_report(report)
    # the CSV says it too, layer by layer
    written = list(csv.DictReader(io.StringIO(report_csv(rows))))
    assert {r["verdict"] for r in written} == {NOISE}
    assert float(written[0]["times_floor"]) < 2


def test_a_planted_outlier_is_the_one_layer_flagged_and_keeping_it_recovers(calibration,
                                                                             tmp_path):
    from edge_runtime.classifier import Classifier
    from export.convert import convert, selective_int8
    from export.formats import FORMATS

    model = _tiny_cnn(outlier=True)
    rows = quantization_report(model, calibration)
    signal = [r for r in rows if r["verdict"] == SIGNAL]
    assert len(signal) == 1 and f"/{OUTLIER}" in signal[0]["tensor_name"]
    assert signal[0]["times_floor"] > 10  # far from the floor, not a borderline call
    report = plan_float_layers(rows, 3)
    assert report.float_layers == (signal[0]["tensor_name"],)
    assert "only 1 layer(s) stand out" in format_quant_report(report)

    # keeping that one layer in float brings int8 back to Keras
    keras_probs = np.asarray(model.predict_on_batch(calibration.astype(np.float32)))

    def max_error(flatbuffer: bytes, name: str) -> float:
        path = tmp_path / name
        path.write_bytes(flatbuffer)
        classifier = Classifier(path)
        probs = classifier.probabilities(calibration)
        return float(np.max(np.abs(probs - keras_probs)))

    plain = max_error(convert(model, FORMATS["int8"], calibration, "uint8", progress=False),
                      "int8.tflite")
    kept = max_error(selective_int8(model, calibration, "uint8", list(report.float_layers)),
                     "keep.tflite")
    print(f"max |Δp| against Keras: int8 {plain:.3f}, {OUTLIER} kept in float {kept:.3f}")
    assert kept < plain / 3, (plain, kept)
