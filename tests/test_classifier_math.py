"""The arithmetic between pixels and probabilities: quantize, the pixel lookup table and the
one feed into the interpreter, dequantize, top-k."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edge_runtime.classifier import Classifier, Prediction, dequantize, pixel_table, quantize, top_k

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge


def test_quantize_rounds_to_the_nearest_step_and_saturates():
    values = np.array([0.0, 0.49, 0.51, 1.0, 100.0, -100.0], np.float32)
    # scale 0.5, zero point 10: q = round(v / 0.5) + 10
    assert quantize(values, np.dtype(np.uint8), 0.5, 10).tolist() == [10, 11, 11, 12, 210, 0]
    assert quantize(values, np.dtype(np.int8), 0.5, 10).tolist() == [10, 11, 11, 12, 127, -128]


def test_uint8_input_with_unit_scale_takes_pixels_unchanged():
    # what export writes for uint8 input: scale 1, zero point 0 — pixels pass as they are
    pixels = np.arange(256, dtype=np.float32)
    assert np.array_equal(quantize(pixels, np.dtype(np.uint8), 1.0, 0), np.arange(256))


def _every_pixel_value(size: tuple[int, int]) -> np.ndarray:
    """Model pixels (H, W, 3) holding every value 0..255, in a shuffled order."""
    flat = np.resize(np.arange(256, dtype=np.uint8), size[0] * size[1] * 3)
    return np.random.default_rng(0).permutation(flat).reshape(*size, 3)


@pytest.mark.parametrize("dtype, scale, zero_point", [
    (np.int8, 1.0, -128),  # what int8 I/O takes for pixels
    (np.int8, 2 / 255, -128),  # pixel 1: 127.49999 steps in float32, 127.5 in float64
    (np.uint8, 256 / 255, 0),  # pixel 128 likewise
    (np.uint8, 0.5, 0),  # saturates from pixel 128 on
    (np.float32, 0.0, 0),
])
def test_the_pixel_table_is_the_reference_quantization_of_every_value(dtype, scale, zero_point):
    pixels = _every_pixel_value((16, 16))
    expected = quantize(pixels.astype(np.float32), np.dtype(dtype), scale, zero_point)
    table = pixel_table(np.dtype(dtype), scale, zero_point)
    assert table is not None and table[pixels].dtype == expected.dtype
    assert np.array_equal(table[pixels], expected)
    assert pixel_table(np.dtype(np.uint8), 1.0, 0) is None  # raw pixels pass as they are


@pytest.mark.parametrize("variant", ["fp32", "fp16", "int8"])
def test_the_interpreter_gets_the_reference_quantization_of_the_pixels(bundle, variant):
    # the one feed (uint8 model pixels → lookup → tensor) against quantizing the float32 pixels
    # Keras takes, read back from the interpreter itself
    classifier = Classifier(bundle / f"model_{variant}.tflite")
    pixels = _every_pixel_value(classifier.input_size)
    expected = quantize(pixels.astype(np.float32)[np.newaxis], classifier.input_dtype,
                        *classifier.input_quantization)
    classifier.set_input_tensor(classifier.tensor_from_pixels(pixels))
    index = classifier.interpreter.get_input_details()[0]["index"]
    received = classifier.interpreter.get_tensor(index)
    assert received.dtype == expected.dtype and np.array_equal(received, expected)
    # a picture and a batch go the same way: the same tensor, the same probabilities
    assert np.array_equal(classifier.input_tensor(Image.fromarray(pixels)), expected)
    scores = classifier.run(expected)
    assert np.array_equal(classifier.probabilities(pixels[np.newaxis]), scores[np.newaxis])


def test_the_feed_takes_only_uint8_pixels_of_the_input_size(bundle):
    classifier = Classifier(bundle / "model_fp32.tflite")
    pixels = _every_pixel_value(classifier.input_size)
    with pytest.raises(ValueError, match="uint8 model pixels of shape"):
        classifier.tensor_from_pixels(pixels.astype(np.float32))
    with pytest.raises(ValueError, match="uint8 model pixels of shape"):
        classifier.tensor_from_pixels(pixels[:-1])
    with pytest.raises(ValueError, match=r"a batch of model pixels \(N, H, W, 3\)"):
        classifier.probabilities(pixels)
    assert classifier.probabilities(pixels[np.newaxis][:0]).shape == (0, len(classifier.labels))


def test_float_tensors_are_neither_quantized_nor_dequantized():
    values = np.array([0.25, 254.5], np.float32)
    assert quantize(values, np.dtype(np.float32), 0.0, 0).tolist() == [0.25, 254.5]
    assert dequantize(values, 0.0, 0).dtype == np.float32
    assert dequantize(values, 0.0, 0).tolist() == [0.25, 254.5]


def test_dequantize_inverts_quantize_within_half_a_step():
    scale, zero_point = 1 / 256, 0
    probabilities = np.random.default_rng(0).dirichlet(np.ones(5), size=20).astype(np.float32)
    q = quantize(probabilities, np.dtype(np.uint8), scale, zero_point)
    back = dequantize(q, scale, zero_point)
    assert np.max(np.abs(back - probabilities)) <= scale / 2 + 1e-7
    assert dequantize(np.array([-128, 0, 127], np.int8), 0.5, -128).tolist() == [0.0, 64.0, 127.5]


def test_top_k_orders_by_score_and_keeps_ties_in_index_order():
    probs = np.array([0.1, 0.3, 0.3, 0.2, 0.1], np.float32)
    labels = ["a", "b", "c", "d", "e"]
    assert top_k(probs, labels, 3) == [Prediction("b", 1, pytest.approx(0.3)),
                                       Prediction("c", 2, pytest.approx(0.3)),
                                       Prediction("d", 3, pytest.approx(0.2))]


def test_top_k_threshold_and_k_bounds():
    probs = np.array([0.6, 0.3, 0.1], np.float32)
    labels = ["x", "y", "z"]
    assert [p.label for p in top_k(probs, labels, 3, threshold=0.3)] == ["x", "y"]
    assert [p.label for p in top_k(probs, labels, 10)] == ["x", "y", "z"]
    assert [p.label for p in top_k(probs, labels, 0)] == ["x"]  # at least one class is asked for
    assert top_k(probs, labels, 3, threshold=0.9) == []
