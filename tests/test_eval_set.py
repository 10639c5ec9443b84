"""The bundle's eval_set.npz keeps each variant's workstation answers, and reads older files."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.eval_set import EvalSet

pytestmark = pytest.mark.edge


def _eval_set(**answers) -> EvalSet:
    pixels = np.arange(5 * 4 * 4 * 3, dtype=np.uint8).reshape(5, 4, 4, 3)
    return EvalSet(pixels, np.arange(5) % 2, np.zeros(5, np.int64), answers)


def test_variant_answers_survive_a_save_and_load(tmp_path):
    original = _eval_set(fp32=np.array([0, 1, 0, 1, 1]), int8_keepfloat=np.array([1, 1, 0, 0, 1]))
    loaded = EvalSet.load(original.save(tmp_path / "eval_set.npz"))
    assert set(loaded.variant_top1) == {"fp32", "int8_keepfloat"}
    for name, answers in original.variant_top1.items():
        np.testing.assert_array_equal(loaded.variant_top1[name], answers)
    with np.load(tmp_path / "eval_set.npz") as data:
        assert sorted(data.files) == ["answers_fp32", "answers_int8_keepfloat", "keras_top1",
                                      "labels", "pixels"]


def test_an_older_eval_set_without_answers_loads_with_none(tmp_path):
    old = _eval_set()
    with (tmp_path / "old.npz").open("wb") as f:
        np.savez_compressed(f, pixels=old.pixels, labels=old.labels, keras_top1=old.keras_top1)
    assert EvalSet.load(tmp_path / "old.npz").variant_top1 == {}


def test_answers_for_another_number_of_images_are_refused():
    with pytest.raises(ValueError, match="5 images but 4 answers of int8"):
        _eval_set(int8=np.zeros(4, np.int64))
