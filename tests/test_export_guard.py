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


def _with_int8_entry(entry: dict | None, ranges_settled: bool = True) -> Manifest:
    """The manifest of a 400-test-image export whose int8 lost 1.5 points on test, with the
    ``int8_target_drop`` entry ``entry`` and 200 of 1,000 train images calibrating."""
    manifest = _manifest(int8=_variant(0.885, 9, 3), fp16=_variant(0.9, 0, 0))
    manifest.extra.update(calibration={"samples": 200, "train_images": 1000, "ranges": {
        "images": 200, "first_half": 100, "widening": 0.09 if ranges_settled else 0.2,
        "layer": "block_1_project", "settled": ranges_settled}}, int8_target_drop=entry)
    return manifest


def _entry(outcome: str, int8_accuracy: float, **more) -> dict:
    return {"points": 0.5, "split": "val", "outcome": outcome, "keras_accuracy": 0.9,
            "int8_accuracy": int8_accuracy, "accuracy": int8_accuracy, "float_layers": [],
            "steps": [], "plain_bytes": 1_000_000, "bytes": 1_000_000,
            "paired": {"keras_only_correct": 5, "int8_only_correct": 1, "mcnemar_p": 0.21875},
            "debugger": None, "latency_ms": None, **more}


def test_the_int8_line_says_what_export_tried_and_why_it_could_not():
    from export.table import int8_line

    nothing = _with_int8_entry(_entry("no signal layer", 0.8867, debugger={
        "layers": 65, "signal_layers": 0, "worst_times_floor": 1.35}))
    line = int8_line(nothing)
    assert line == (
        "int8 on val: −1.33 pt against Keras (won 1, lost 5, McNemar p = 0.219: within noise), "
        "past the 0.5-pt target; tried: 200 calibration images (ranges settled), the "
        "quantization debugger (no layer of 65 above the rounding-noise floor, worst 1.35×: the "
        "loss is rounding noise), so plain int8; what could help: more calibration images "
        "(--calibration-samples 800), quantization-aware training (not offered here: see "
        "docs/export.md)")
    table = format_table(nothing).splitlines()
    assert table[-2] == line and table[-1].startswith("MediaPipe Tasks loads:")
    guard = guard_message(nothing, ["int8"], 1.0)
    assert guard.endswith(f". What export tried: {line}") and "\n" not in guard
    assert "What export tried" not in guard_message(nothing, ["fp16"], 0.0)
    # calibration used every train image, ranges unsettled: then more training images
    unsettled = _with_int8_entry(_entry("no signal layer", 0.8867, debugger={
        "layers": 65, "signal_layers": 0, "worst_times_floor": 1.35}), ranges_settled=False)
    unsettled.extra["calibration"]["train_images"] = 200
    assert "200 calibration images (ranges had not settled)" in int8_line(unsettled)
    assert "what could help: more training images (calibration used all)" in int8_line(unsettled)
    # signal layers tried, none helped
    tried = _with_int8_entry(_entry("no further gain", 0.8867, steps=[
        {"layer": "m/a/conv", "accuracy": 0.88, "kept": False}]))
    assert "; tried: 200 calibration images (ranges settled), 1 signal layer(s) in float " \
           "(none raised val accuracy), so plain int8; what could help:" in int8_line(tried)


def test_the_int8_line_states_the_size_and_latency_of_layers_kept_in_float():
    from export.table import int8_line

    reached = _with_int8_entry(_entry(
        "target reached", 0.85, accuracy=0.8967, float_layers=["m/net/a/conv"],
        bytes=1_120_000, latency_ms={"plain": 0.41, "chosen": 0.52},
        paired={"keras_only_correct": 16, "int8_only_correct": 1, "mcnemar_p": 0.000274}))
    assert int8_line(reached) == (
        "int8 on val: −5.00 pt against Keras (won 1, lost 16, McNemar p = <0.001: a significant "
        "loss), past the 0.5-pt target; kept 1 layer(s) in float: −0.33 pt (target reached), "
        "size +12.0 %, latency 0.41 → 0.52 ms on the export machine")
    short = _with_int8_entry(_entry(
        "no signal layer left", 0.85, accuracy=0.88, float_layers=["m/net/a/conv"],
        bytes=1_120_000, latency_ms={"plain": 0.41, "chosen": 0.52}))
    assert "−2.00 pt (target not reached), size +12.0 %, latency 0.41 → 0.52 ms on the export " \
           "machine; what could help: more calibration images" in int8_line(short)


def test_the_int8_line_within_the_target_off_and_without_validation():
    from export.table import int8_line

    within = _with_int8_entry(_entry("within target", 0.8967, paired={
        "keras_only_correct": 2, "int8_only_correct": 1, "mcnemar_p": 1.0}))
    assert int8_line(within) == ("int8 on val: −0.33 pt against Keras (won 1, lost 2, McNemar "
                                 "p = 1.000: within noise), within the 0.5-pt target: plain int8")
    assert int8_line(_with_int8_entry({"points": None, "split": "val", "outcome": "off"})) == \
        "int8 on val: not checked against a target (--int8-target-drop off)"
    assert int8_line(_with_int8_entry({"points": 0.5, "split": "val",
                                       "outcome": "no validation images"})) == \
        "int8 on val: not checked against the 0.5-pt target: the run has no validation images"
    assert int8_line(_with_int8_entry(None)) is None  # a manifest written before the check
    assert not any(line.startswith("int8 on") for line in format_table(_manifest(
        int8=_variant(0.885, 9, 3))).splitlines())
