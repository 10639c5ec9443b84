"""The export says how settled the int8 ranges were: how much the last half of the calibration
images still widened any layer's range, measured on the Keras model batch by batch."""

from __future__ import annotations

import numpy as np
import pytest

from export.ranges import SETTLED_WIDENING, calibration_settledness, layer_extremes, settledness
from export.table import calibration_line


def test_ranges_that_stopped_moving_are_settled():
    rng = np.random.default_rng(0)
    # 200 images, 3 layers: ranges set early (values bounded, the extremes met in the first half)
    minima = -rng.uniform(0.9, 1.0, (200, 3))
    maxima = rng.uniform(5.0, 6.0, (200, 3))
    minima[0], maxima[0] = -1.0, 6.0
    s = settledness(["a", "b", "c"], minima, maxima)
    assert (s.images, s.first_half, s.layers) == (200, 100, 3)
    assert s.widening == 0.0 and s.settled


def test_one_late_image_that_widens_a_range_is_named_with_its_share():
    minima, maxima = np.zeros((200, 3)), np.ones((200, 3))
    maxima[150, 1] = 1.7  # image 150 of 200 stretches layer b from [0, 1] to [0, 1.7]
    maxima[20, 2] = 3.0   # layer c: its extreme came early, which changes nothing
    s = settledness(["a", "b", "c"], minima, maxima)
    assert s.layer == "b" and s.widening == pytest.approx(1 - 1 / 1.7)  # 41 % of its range
    assert not s.settled
    entry = s.to_json()
    assert entry == {"images": 200, "first_half": 100, "widening": 0.4118, "layer": "b",
                     "layers": 3, "settled": False, "threshold": SETTLED_WIDENING}


def test_widening_just_under_the_threshold_is_settled_and_constant_layers_are_left_out():
    minima, maxima = np.zeros((10, 2)), np.ones((10, 2))
    maxima[7, 0] = 1 / (1 - SETTLED_WIDENING) - 1e-6  # just under the threshold's share of the final range
    maxima[:, 1] = minima[:, 1] = 4.0                 # a constant output: no range at all
    s = settledness(["a", "const"], minima, maxima)
    assert s.layer == "a" and s.widening < SETTLED_WIDENING and s.settled
    maxima[7, 0] = 1 / (1 - SETTLED_WIDENING) + 1e-6
    assert not settledness(["a", "const"], minima, maxima).settled
    assert settledness(["a"], np.zeros((1, 1)), np.ones((1, 1))).widening == 0.0  # one image


def _nested_model():
    """image → rescaling → inner model (conv, conv, batch norm, ReLU6) → pooled → dense:
    extremes must reach into the inner model, as they must into MobileNetV2 inside the
    project's classifier, and leave out the outputs the converter fuses away."""
    import keras

    keras.utils.set_random_seed(0)
    inner_in = keras.Input((8, 8, 4))
    y = keras.layers.Conv2D(6, 3, activation="relu", name="inner_conv")(inner_in)
    y = keras.layers.Conv2D(5, 3, name="inner_conv2")(y)
    y = keras.layers.BatchNormalization(name="inner_bn")(y)
    y = keras.layers.ReLU(6.0, name="inner_relu")(y)
    inner = keras.Model(inner_in, y, name="backbone")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="pre")(inputs)
    x = keras.layers.Conv2D(4, 1, name="stem")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(inner(x))
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x))


def test_layer_extremes_reach_into_nested_models_and_match_each_output():
    import keras

    model = _nested_model()
    pixels = np.random.default_rng(1).integers(0, 256, (37, 8, 8, 3)).astype(np.uint8)
    names, minima, maxima = layer_extremes(model, pixels, batch_size=16)  # 16 + 16 + 5
    # inner_conv2 and inner_bn fold into one op with inner_relu: only its output is quantized
    assert names == ["pre", "stem", "backbone/inner_conv", "backbone/inner_relu", "pool",
                     "head"]
    assert minima.shape == maxima.shape == (37, 6)
    inner = model.get_layer("backbone")
    stem = keras.Model(model.inputs, model.get_layer("stem").output)
    inner_conv = keras.Model(inner.inputs, inner.get_layer("inner_conv").output)
    stem_out = np.asarray(stem.predict_on_batch(pixels.astype(np.float32)))
    conv_out = np.asarray(inner_conv.predict_on_batch(stem_out)).reshape(37, -1)
    np.testing.assert_allclose(maxima[:, 2], conv_out.max(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(minima[:, 2], conv_out.min(1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maxima[:, 1], stem_out.reshape(37, -1).max(1), rtol=1e-5)
    s = calibration_settledness(model, pixels)
    assert s.images == 37 and s.first_half == 18 and s.layer in names


def test_the_printed_line_says_settled_or_what_to_do():
    settled = {"train_images": 5000, "ranges": {"images": 200, "first_half": 100,
                                                "widening": 0.0213, "layer": "x",
                                                "settled": True}}
    assert calibration_line(settled) == ("calibration: 200 train images; the last 100 widened "
                                         "no layer's range by more than 3 % (settled)")
    loose = {"train_images": 5000, "ranges": {"images": 200, "first_half": 100,
                                              "widening": 0.4118, "layer": "block_12_add",
                                              "settled": False}}
    assert calibration_line(loose) == (
        "calibration: 200 train images; warning: the last 100 widened block_12_add's range by "
        "42 % (≥ 15 %): ranges had not settled; try --calibration-samples 800")
    loose["train_images"] = 500
    assert calibration_line(loose).endswith("try --calibration-samples 500")
    loose["train_images"] = 200  # every train image was used: no bigger set to suggest
    assert calibration_line(loose).endswith("; the train split holds no more images: more "
                                            "training images would")
    assert calibration_line({"split": "train"}) is None  # a manifest from before
    assert calibration_line(None) is None
