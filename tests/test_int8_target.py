"""--int8-target-drop (0.5 by default) keeps signal layers in float one at a time, only while
validation accuracy rises, and says plainly when nothing stands out; on a planted outlier it finds
that layer, and reports what it cost in size and in latency, both models timed here.

The models are tests/test_quant_debug.py's tiny CNNs; labels are Keras's own answers, so Keras
is right on every image and int8's accuracy is its agreement with Keras.
"""

from __future__ import annotations

import numpy as np
import pytest

from export.auto_float import (
    DEFAULT_TARGET_DROP,
    EXHAUSTED,
    NO_GAIN,
    NO_SIGNAL,
    REACHED,
    WITHIN,
    search_float_layers,
)
from export.cli import target_drop
from export.table import format_auto_float, short_tensor_name
from tests.test_quant_debug import OUTLIER, _row, _tiny_cnn


def _search(rows, accuracies: dict[tuple[str, ...], float], target: float = 0.5):
    """The search over fake conversions: a "model" is the tuple of float layers, encoded."""
    tried = []

    def convert(layers):
        tried.append(tuple(layers))
        return "|".join(layers).encode()

    def measure(model: bytes) -> float:
        return accuracies[tuple(model.decode().split("|"))]

    return search_float_layers(target, 0.90, accuracies[("",)], b"", measure, lambda: rows,
                               convert), tried


def test_search_adds_signal_layers_worst_first_and_stops_at_the_target():
    rows = [_row("a", 2.0), _row("b", 0.9), _row("c", 0.8), _row("d", 0.3)]
    a, b = "m/a/conv", "m/b/conv"
    auto, tried = _search(rows, {("",): 0.80, (a,): 0.85, (a, b): 0.897})
    assert tried == [(a,), (a, b)]  # c is signal too, but the target is met before it
    assert auto.outcome == REACHED and auto.float_layers == (a, b)
    assert auto.accuracy == 0.897 and auto.model == f"{a}|{b}".encode()


def test_search_keeps_a_layer_only_while_accuracy_rises_and_never_tries_noise():
    rows = [_row("a", 2.0), _row("b", 0.9), _row("d", 0.3)]
    a, b = "m/a/conv", "m/b/conv"
    auto, tried = _search(rows, {("",): 0.80, (a,): 0.85, (a, b): 0.85})
    assert tried == [(a,), (a, b)] and auto.outcome == NO_GAIN
    assert auto.float_layers == (a,) and auto.accuracy == 0.85
    assert [(s.layer, s.kept) for s in auto.steps] == [(a, True), (b, False)]
    auto, tried = _search(rows, {("",): 0.80, (a,): 0.81, (a, b): 0.82})
    assert tried == [(a,), (a, b)] and auto.outcome == EXHAUSTED  # d is noise: never tried
    auto, tried = _search(rows, {("",): 0.80, (a,): 0.79})
    assert auto.outcome == NO_GAIN and auto.float_layers == () and auto.model == b""


def test_search_does_nothing_within_the_target_or_without_signal():
    def fail():
        raise AssertionError("the debugger runs only when int8 misses the target")

    auto = search_float_layers(0.5, 0.90, 0.896, b"plain", fail, fail, fail)
    assert auto.outcome == WITHIN and auto.float_layers == () and auto.model == b"plain"
    auto, tried = _search([_row("c", 0.5), _row("d", 0.3)], {("",): 0.80})
    assert auto.outcome == NO_SIGNAL and tried == [] and auto.float_layers == ()


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray]:
    """(calibration, validation) random 8×8 images."""
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (64, 8, 8, 3)).astype(np.uint8),
            rng.integers(0, 256, (200, 8, 8, 3)).astype(np.uint8))


def _auto_export(model, images, tmp_path, target: float, timed: list | None = None):
    """What the exporter does for --int8-target-drop, on in-memory validation images; the models
    timed go to ``timed``."""
    from export.convert import convert, selective_int8
    from export.formats import FORMATS
    from export.images import Batch
    from export.latency import interleaved_latency_ms
    from export.quant_debug import quantization_report
    from export.verify import evaluate

    calibration, val = images
    truth = np.asarray(model.predict_on_batch(val.astype(np.float32))).argmax(1)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\n")

    def measure(flatbuffer: bytes) -> float:
        path = tmp_path / "candidate.tflite"
        path.write_bytes(flatbuffer)
        batches = [Batch(val[i:i + 32], np.arange(i, min(i + 32, len(val))))
                   for i in range(0, len(val), 32)]
        evaluation = evaluate(model, {"int8": path}, labels, batches, truth)
        assert evaluation.keras_accuracy == 1.0
        return evaluation.variants["int8"]["accuracy"]

    def latency(plain: bytes, chosen: bytes) -> tuple[float, float]:
        if timed is not None:
            timed.append((plain, chosen))
        plain_ms, chosen_ms = interleaved_latency_ms([plain, chosen], calibration[:4],
                                                     rounds=3, runs=5, warmup=2)
        return plain_ms, chosen_ms

    plain = convert(model, FORMATS["int8"], calibration, "uint8", progress=False)
    return search_float_layers(
        target, 1.0, measure(plain), plain, measure,
        lambda: quantization_report(model, calibration),
        lambda keep: selective_int8(model, calibration, "uint8", keep), latency=latency)


def test_without_an_outlier_layer_nothing_is_kept_and_it_says_so(images, tmp_path):
    timed = []
    auto = _auto_export(_tiny_cnn(outlier=False), images, tmp_path, target=0.0, timed=timed)
    print(format_auto_float(auto))
    assert auto.plain_accuracy < 1.0  # int8 does lose against Keras on these images...
    assert auto.outcome == NO_SIGNAL and auto.float_layers == () and auto.steps == ()
    assert timed == [] and auto.latency_ms is None  # nothing kept: nothing to time
    layers, signal, worst = auto.debugger
    assert layers >= 4 and signal == 0 and 0 < worst < 2  # the debugger's verdict, kept
    assert auto.model and len(auto.model) == auto.plain_bytes  # ...and plain int8 stays
    text = format_auto_float(auto)
    assert "no layer stands out above the rounding-noise floor, so none was kept in float " \
           "(plain int8)" in text
    assert "--calibration-samples" in text and "quantization-aware training" in text


def test_a_planted_outlier_is_the_one_layer_kept_and_validation_accuracy_recovers(images,
                                                                                 tmp_path):
    # target 15: the random-weight model without an outlier loses 15.5 points on these images
    # (noise of near-uniform probabilities); the outlier adds the rest, 100 points
    timed = []
    auto = _auto_export(_tiny_cnn(outlier=True), images, tmp_path, target=15.0, timed=timed)
    print(format_auto_float(auto))
    assert len(auto.float_layers) == 1 and f"/{OUTLIER}" in auto.float_layers[0]
    assert [s.layer for s in auto.steps] == list(auto.float_layers)  # the first try was it
    assert auto.plain_accuracy < 0.1  # the outlier wrecks plain int8 ...
    assert auto.outcome == REACHED and auto.accuracy >= 0.85  # ... and float brings it back
    assert len(auto.model) > auto.plain_bytes  # a float layer costs bytes
    lines = format_auto_float(auto).splitlines()
    assert lines[1].split() == ["kept", "val", "acc", f"{auto.accuracy:.3f}",
                                short_tensor_name(auto.float_layers[0])]
    assert lines[-1].startswith("kept 1 layer(s) in float in model_int8.tflite (target reached)")
    assert "bytes (+" in lines[-1]
    # the latency cost, measured from the two models: plain int8 and the one chosen
    assert timed == [(timed[0][0], auto.model)] and len(timed[0][0]) == auto.plain_bytes
    plain_ms, chosen_ms = auto.latency_ms
    assert plain_ms > 0 and chosen_ms > 0
    assert f"latency {plain_ms:.2f} → {chosen_ms:.2f} ms" in lines[-1]
    assert auto.to_json("val")["latency_ms"] == {"plain": plain_ms, "chosen": chosen_ms}


def test_the_report_names_the_steps_and_the_cost():
    from export.auto_float import AutoFloat, Step

    auto = AutoFloat(target=0.5, keras_accuracy=0.9, plain_accuracy=0.8, plain_bytes=1000,
                     outcome=REACHED, steps=(Step("m/net/a/conv", 0.85, True),
                                             Step("m/net/b/conv", 0.897, True)),
                     float_layers=("m/net/a/conv", "m/net/b/conv"), accuracy=0.897,
                     model=b"x" * 1100)
    assert format_auto_float(auto).splitlines() == [
        "--int8-target-drop 0.5: int8 −10.00 pt against Keras on val (0.800 vs 0.900); signal "
        "layers tried worst first:",
        "  kept     val acc 0.850  a/conv",
        "  kept     val acc 0.897  b/conv",
        "kept 2 layer(s) in float in model_int8.tflite (target reached): val −0.30 pt (was "
        "−10.00); size 1,000 → 1,100 bytes (+100, +10.0 %)"]
    within = AutoFloat(target=0.5, keras_accuracy=0.9, plain_accuracy=0.9, plain_bytes=1000,
                       outcome=WITHIN, accuracy=0.9, model=b"x" * 1000)
    assert format_auto_float(within) == ("--int8-target-drop 0.5: int8 +0.00 pt against Keras "
                                         "on val (0.900 vs 0.900): within the target, plain "
                                         "int8 kept")
    entry = auto.to_json("val")
    assert entry["float_layers"] == ["m/net/a/conv", "m/net/b/conv"]
    assert (entry["plain_bytes"], entry["bytes"], entry["split"]) == (1000, 1100, "val")


def test_the_latency_cost_is_timed_on_the_plain_and_the_chosen_model_only_when_layers_are_kept():
    rows = [_row("a", 2.0), _row("d", 0.3)]
    a = "m/a/conv"
    models = {b"plain": 0.80, a.encode(): 0.90}
    timed = []

    def latency(plain: bytes, chosen: bytes) -> tuple[float, float]:
        timed.append((plain, chosen))
        return 0.5, 0.75

    auto = search_float_layers(0.5, 0.9, 0.80, b"plain", models.__getitem__, lambda: rows,
                               lambda keep: "|".join(keep).encode(), latency=latency,
                               paired=(12, 2, 0.0129))
    assert timed == [(b"plain", a.encode())] and auto.latency_ms == (0.5, 0.75)
    text = format_auto_float(auto)
    assert "(0.800 vs 0.900; won 2, lost 12, McNemar p = 0.013: a significant loss)" in text
    assert text.splitlines()[-1].endswith("; latency 0.50 → 0.75 ms (+50.0 %, interleaved on this "
                                          "machine)")
    assert auto.to_json("val")["paired"] == {"keras_only_correct": 12, "int8_only_correct": 2,
                                             "mcnemar_p": 0.0129}
    # nothing kept (the layer did not help; or within the target): nothing timed
    models[a.encode()] = 0.79
    timed.clear()
    auto = search_float_layers(0.5, 0.9, 0.80, b"plain", models.__getitem__, lambda: rows,
                               lambda keep: "|".join(keep).encode(), latency=latency)
    assert auto.outcome == NO_GAIN and timed == [] and auto.latency_ms is None
    auto = search_float_layers(0.5, 0.9, 0.897, b"plain", models.__getitem__, lambda: rows,
                               lambda keep: "|".join(keep).encode(), latency=latency)
    assert auto.outcome == WITHIN and timed == []


def test_interleaved_latency_invokes_each_model_as_often(monkeypatch, images):
    """Both models are timed, each its own share of the rounds: no model is timed twice."""
    from edge_runtime.classifier import Classifier
    from export.convert import convert
    from export.formats import FORMATS
    from export.latency import interleaved_latency_ms

    calibration, _ = images
    model = _tiny_cnn(outlier=False)
    plain = convert(model, FORMATS["int8"], calibration, "uint8", progress=False)
    fp32 = convert(model, FORMATS["fp32"], None, "uint8", progress=False)
    invoked: dict[bytes, int] = {}
    original = Classifier.invoke

    def counting(self):
        key = self.model_path.read_bytes()
        invoked[key] = invoked.get(key, 0) + 1
        original(self)

    monkeypatch.setattr(Classifier, "invoke", counting)
    times = interleaved_latency_ms([plain, fp32], calibration[:3], rounds=4, runs=6, warmup=2)
    assert len(times) == 2 and all(t > 0 for t in times)
    assert invoked == {plain: 2 + 4 * (1 + 6), fp32: 2 + 4 * (1 + 6)}


def test_the_default_target_applies_when_int8_is_exported_and_off_turns_it_off():
    assert target_drop(None, ("fp32", "int8")) == DEFAULT_TARGET_DROP == 0.5
    assert target_drop(None, ("fp32",)) is None  # no int8: nothing to check
    assert target_drop("off", ("int8",)) is None
    assert target_drop(2.0, ("int8",)) == 2.0
    with pytest.raises(ValueError, match="add int8 to --formats"):
        target_drop(0.5, ("fp32", "fp16"))


def test_a_default_export_checks_int8_on_val_and_says_so_in_one_line(exported_run):
    from edge_runtime.manifest import Manifest
    from export.table import format_table, int8_line

    manifest = Manifest.load(exported_run / "export")  # tests/tiny_bundle.py: default target
    entry = manifest.extra["int8_target_drop"]
    assert (entry["points"], entry["split"]) == (DEFAULT_TARGET_DROP, "val")
    assert set(entry["paired"]) == {"keras_only_correct", "int8_only_correct", "mcnemar_p"}
    assert manifest.variants["int8"].extra["float_layers"] == list(entry["float_layers"])
    line = int8_line(manifest)
    print(line)
    assert line.startswith("int8 on val: ") and "McNemar p = " in line and "\n" not in line
    assert line in format_table(manifest).splitlines()


@pytest.mark.long
def test_an_export_that_keeps_a_layer_in_float_times_both_models(run_copy, capsys, monkeypatch):
    """Through edge-export itself: plain int8 is made to look 20 points worse on val and every
    layer counts as signal, so the default target keeps a layer in float; the latencies in the
    manifest and the printed line are those measured from plain and kept-float int8."""
    from edge_runtime.manifest import Manifest
    from export import exporter, quant_debug
    from export.cli import main

    monkeypatch.setattr(quant_debug, "SIGNAL_THRESHOLD", quant_debug.NOISE_FLOOR)
    real_evaluate, calls = exporter.evaluate, []

    def evaluate(*args, **kwargs):
        evaluation = real_evaluate(*args, **kwargs)
        calls.append(evaluation)
        if len(calls) == 1:  # the first is plain int8 on val
            evaluation.variants["int8"]["accuracy"] -= 0.2
        return evaluation

    real_latency, timed = exporter.interleaved_latency_ms, []

    def latency(models, *args, **kwargs):
        result = real_latency(models, *args, **kwargs)
        timed.append((list(models), result))
        return result

    monkeypatch.setattr(exporter, "evaluate", evaluate)
    monkeypatch.setattr(exporter, "interleaved_latency_ms", latency)
    assert main([str(run_copy), "--formats", "int8", "--calibration-samples", "40",
                 "--max-accuracy-drop", "100", "--eval-samples", "0", "--no-progress"]) == 0
    manifest = Manifest.load(run_copy / "export")
    entry = manifest.extra["int8_target_drop"]
    assert entry["points"] == DEFAULT_TARGET_DROP and entry["float_layers"]
    assert manifest.variants["int8"].extra["float_layers"] == entry["float_layers"]
    [(models, (plain_ms, chosen_ms))] = timed
    assert len(models) == 2 and models[0] != models[1]
    assert len(models[0]) == entry["plain_bytes"] and len(models[1]) == entry["bytes"]
    assert entry["latency_ms"] == {"plain": plain_ms, "chosen": chosen_ms}
    line = [s for s in capsys.readouterr().out.splitlines() if s.startswith("int8 on val:")]
    assert len(line) == 1 and f"latency {plain_ms:.2f} → {chosen_ms:.2f} ms" in line[0]
