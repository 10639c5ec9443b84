"""The arithmetic between pixels and probabilities: quantize, dequantize, top-k."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.classifier import Prediction, dequantize, quantize, top_k

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
