"""The accuracy guard tells a significant loss from noise: the exact McNemar test on the images
a variant and Keras disagree about, the table's won/lost columns and the guard's wording."""

from __future__ import annotations

import math

import pytest

from edge_runtime.manifest import InputSpec, Manifest, Variant
from export.table import format_table, guard_message
from export.verify import difference_kind, mcnemar_p


@pytest.mark.parametrize("keras_only, variant_only, p", [
    (0, 0, 1.0),                    # nothing told them apart
    (5, 0, 2 / 2**5),               # all 5 discordant images one way: 0.0625, not significant
    (0, 6, 2 / 2**6),               # 6 of 6: 0.03125, significant
    (9, 1, 2 * 11 / 2**10),         # P(X ≤ 1 | n=10) = (1 + 10) / 1024, doubled
    (9, 3, 2 * 299 / 2**12),        # (1 + 12 + 66 + 220) / 4096, doubled: 0.146
    (6, 6, 1.0),                    # a tie: the doubled tail passes 1 and is capped
])
def test_mcnemar_p_is_the_exact_two_sided_binomial_tail(keras_only, variant_only, p):
    assert mcnemar_p(keras_only, variant_only) == pytest.approx(p, rel=1e-12)
    assert mcnemar_p(variant_only, keras_only) == mcnemar_p(keras_only, variant_only)


def test_mcnemar_p_stays_exact_on_large_splits():
    # 1,000 discordant images, 600 against 400: the normal approximation with continuity
    # correction gives 3.1e-10; the exact tail is a little smaller, and no float overflows
    assert mcnemar_p(600, 400) == pytest.approx(2.7284641560660184e-10, rel=1e-9)
    assert mcnemar_p(5000, 5000) == 1.0
    assert mcnemar_p(5001, 4999) == pytest.approx(0.9920, abs=1e-4)  # nearly a tie
    assert 0.0 <= mcnemar_p(10_000, 0) < 1e-300  # 2 / 2**10000 underflows, no OverflowError
    with pytest.raises(ValueError, match="≥ 0"):
        mcnemar_p(-1, 3)


def test_difference_kind_names_loss_gain_noise_and_same():
    assert difference_kind(0, 0, 1.0) == "same"
    assert difference_kind(9, 3, mcnemar_p(9, 3)) == "noise"
    assert difference_kind(9, 1, mcnemar_p(9, 1)) == "loss"
    assert difference_kind(0, 6, mcnemar_p(0, 6)) == "gain"
    assert math.isclose(mcnemar_p(5, 0), 0.0625) and difference_kind(5, 0, 0.0625) == "noise"


def _variant(accuracy: float, keras_only: int | None, variant_only: int | None,
             keras_accuracy: float = 0.9) -> Variant:
    extra = {} if keras_only is None else {
        "keras_only_correct": keras_only, "variant_only_correct": variant_only,
        "mcnemar_p": mcnemar_p(keras_only, variant_only)}
    return Variant(file="m.tflite", bytes=1_000_000, input_dtype="uint8", output_dtype="uint8",
                   accuracy=accuracy, agreement=0.95, max_abs_diff=0.1,
                   accuracy_drop_points=round(100 * (keras_accuracy - accuracy), 2), extra=extra)


def _manifest(**variants: Variant) -> Manifest:
    return Manifest(input=InputSpec(height=8, width=8), labels=("a", "b"), variants=variants,
                    keras_accuracy=0.9, eval_split="test", num_eval=400)


def _cells(table: str) -> list[dict[str, str]]:
    """The table's rows as column → cell, cut where the dashes under the header are."""
    lines = table.splitlines()
    spans, at = [], 0
    for dashes in lines[1].split("  "):
        spans.append((at, at + len(dashes)))
        at += len(dashes) + 2
    names = [lines[0][a:b].strip() for a, b in spans]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, spans)} for line in lines[2:]]


def test_table_shows_won_lost_p_and_whether_the_difference_is_noise():
    # 400 images: 9 lost and 3 won is −1.5 points, 40 lost and 4 won is −9 points
    manifest = _manifest(int8=_variant(0.885, 9, 3), fp16=_variant(0.9, 0, 0),
                         bad=_variant(0.81, 40, 4))
    table = format_table(manifest)
    rows = {row["variant"]: row for row in _cells(table)[:4]}
    assert list(rows["int8"]) == ["variant", "size", "in/out", "test acc", "Δ pt", "won/lost",
                                  "p", "Δ is", "agree", "max|Δp|"]
    pick = ("Δ pt", "won/lost", "p", "Δ is")
    assert [rows["int8"][k] for k in pick] == ["−1.5", "3/9", "0.146", "noise"]
    assert [rows["fp16"][k] for k in pick] == ["+0.0", "0/0", "1.000", "same"]
    assert [rows["bad"][k] for k in pick] == ["−9.0", "4/40", "<0.001", "loss"]
    assert [rows["keras"][k] for k in pick] == ["", "", "", ""]
    lines = table.splitlines()
    assert lines[-2].startswith("won/lost: test images only the variant / only Keras got right")
    assert lines[-1].startswith("MediaPipe Tasks loads:")


def test_table_of_an_older_manifest_has_no_paired_columns():
    table = format_table(_manifest(int8=_variant(0.885, None, None)))
    int8 = _cells(table)[1]
    assert list(int8) == ["variant", "size", "in/out", "test acc", "Δ pt", "agree", "max|Δp|"]
    assert int8["Δ pt"] == "−1.5"
    assert not any(line.startswith("won/lost:") for line in table.splitlines())


def test_guard_message_says_whether_the_loss_is_significant_or_noise():
    manifest = _manifest(int8=_variant(0.885, 9, 3), bad=_variant(0.81, 40, 4))
    noise = guard_message(manifest, ["int8"], 1.0)
    assert noise.startswith("int8 lost more than 1 accuracy point(s) against Keras: int8 −1.50 pt")
    assert "(won 3, lost 9)" in noise and "within noise (McNemar p = 0.146 ≥ 0.05" in noise
    assert "significant" not in noise
    both = guard_message(manifest, ["int8", "bad"], 1.0)
    assert both.startswith("int8, bad lost more than 1 accuracy point(s)")
    assert "bad −9.00 pt on 400 test images (won 4, lost 40), a significant loss " \
           "(McNemar p = <0.001)" in both
    assert "\n" not in both
