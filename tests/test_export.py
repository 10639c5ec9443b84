"""Export: every variant loads with the dtypes the manifest claims and is verified against Keras."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from common.labels import read_labels
from edge_runtime.classifier import Classifier, quantize
from edge_runtime.manifest import Manifest
from export import exporter, quant_debug
from export.calibration import calibration_files, check_calibration
from export.cli import main
from export.errors import ExportError
from export.exporter import ExportConfig
from export.formats import FORMATS, parse_formats
from export.quant_debug import verdict
from export.verify import mcnemar_p
from train.splits import Splits

MANIFEST_KEYS = ("input", "labels", "variants", "keras_accuracy", "eval_split", "source")
VARIANT_KEYS = ("file", "bytes", "input_dtype", "output_dtype", "accuracy", "agreement",
                "max_abs_diff")


def test_manifest_holds_the_contract_and_variants_match_it(exported_run):
    bundle = exported_run / "export"
    manifest = json.loads((bundle / "manifest.json").read_text())
    for key in MANIFEST_KEYS:
        assert key in manifest, key
    assert manifest["input"] == {"height": 64, "width": 64, "channels": 3, "color": "RGB",
                                 "range": [0, 255], "resize": "bilinear", "dtype": "float32"}
    assert read_labels(bundle / "labels.txt") == manifest["labels"]
    assert set(manifest["variants"]) == {"fp32", "fp16", "int8"}
    expected_io = {"fp32": "float32", "fp16": "float32", "int8": "uint8"}
    for name, entry in manifest["variants"].items():
        for key in VARIANT_KEYS:
            assert key in entry, (name, key)
        path = bundle / entry["file"]
        assert path.stat().st_size == entry["bytes"] > 0
        classifier = Classifier(path)
        assert classifier.input_dtype.name == entry["input_dtype"] == expected_io[name]
        assert classifier.output_dtype.name == entry["output_dtype"] == expected_io[name]
        assert 0.0 <= entry["accuracy"] <= 1.0 and 0.0 <= entry["agreement"] <= 1.0
        # the paired counts are the accuracy difference, image by image
        won, lost = entry["variant_only_correct"], entry["keras_only_correct"]
        assert entry["accuracy_drop_points"] == \
            pytest.approx(100 * (lost - won) / manifest["num_eval"], abs=0.01)
        assert entry["mcnemar_p"] == mcnemar_p(lost, won)
    assert manifest["variants"]["int8"]["input_quantization"]["scale"] > 0
    sizes = {n: e["bytes"] for n, e in manifest["variants"].items()}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]
    assert len(manifest["source"]["model_sha256"]) == 64


def test_fp16_agrees_with_keras_and_int8_stays_close(exported_run):
    import keras

    variants = json.loads((exported_run / "export" / "manifest.json").read_text())["variants"]
    assert variants["fp32"]["agreement"] == 1.0 and variants["fp32"]["max_abs_diff"] < 1e-4
    diff = variants["fp16"]["max_abs_diff"]
    assert diff < 0.02
    # fp16 may flip only a near-tie: where its top-1 differs, Keras put the two classes within
    # twice fp16's largest error of each other (the tiny model's accuracy is 0.7 to 0.9 by the
    # machine that trained it; one of its ten images was such a tie, 0.9 agreement)
    data = np.load(exported_run / "export" / "eval_set.npz")
    flipped = np.flatnonzero(data["answers_fp16"] != data["keras_top1"])
    assert flipped.size <= 1, flipped
    probs = keras.models.load_model(exported_run / "model.keras").predict(
        data["pixels"].astype(np.float32), verbose=0)
    margins = (probs[flipped, data["keras_top1"][flipped]]
               - probs[flipped, data["answers_fp16"][flipped]])
    assert np.all(margins <= 2 * diff + 1e-5), (margins, diff)
    # the tiny model discriminates, with ranges calibrated on 40 images: on a borderline image of
    # its ten, int8 has moved a probability by 0.26 (no class may move by half)
    assert variants["int8"]["max_abs_diff"] < 0.5
    assert variants["int8"]["agreement"] >= 0.7


def test_calibration_images_come_only_from_the_train_split(exported_run):
    manifest = json.loads((exported_run / "export" / "manifest.json").read_text())
    splits = Splits.load(exported_run / "splits.json")
    used = set(manifest["calibration"]["files"])
    assert manifest["calibration"]["split"] == "train"
    assert used and used <= set(splits.files["train"])
    assert not used & (set(splits.files["test"]) | set(splits.files["val"]))
    assert len(manifest["calibration"]["per_class"]) == len(splits.classes)  # stratified
    # how settled the ranges were, over the images in the order the converter was fed them
    ranges = manifest["calibration"]["ranges"]
    assert ranges["images"] == manifest["calibration"]["samples"] == len(used)
    assert ranges["first_half"] == len(used) // 2 and ranges["layers"] > 30  # MobileNetV2's
    assert 0.0 <= ranges["widening"] <= 1.0 and ranges["layer"]
    assert ranges["settled"] == (ranges["widening"] < ranges["threshold"])


def test_calibration_sample_is_stratified_round_robin(tiny_run):
    splits = Splits.load(tiny_run / "splits.json")
    files = calibration_files(splits, 10)
    label_of = dict(zip(splits.paths("train"), splits.labels["train"]))
    counts = np.bincount([label_of[f] for f in files], minlength=len(splits.classes))
    assert counts.tolist() == [2] * 5


def test_degenerate_calibration_sets_are_refused_or_warned():
    images = np.random.default_rng(0).uniform(0, 255, (40, 8, 8, 3)).astype(np.float32)
    with pytest.raises(ExportError, match="--force-calibration"):
        check_calibration(images[:10], [0, 1] * 5, ["a", "b"], 200, force=False)
    assert check_calibration(images[:10], [0, 1] * 5, ["a", "b"], 200, force=True) == []
    same = np.repeat(images[:1], 40, axis=0)
    with pytest.raises(ExportError, match="distinct"):
        check_calibration(same, [0, 1] * 20, ["a", "b"], 200, force=False)
    warnings = check_calibration(images, [1] * 40, ["a", "b"], 200, force=False)
    assert len(warnings) == 1 and "'b'" in warnings[0]


def test_too_small_calibration_is_exit_2_unless_forced(run_copy, capsys):
    assert main([str(run_copy), "--formats", "int8", "--calibration-samples", "8",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--force-calibration" in err and "\n" not in err and "Traceback" not in err
    # forced, it exports (without the search for layers to keep in float: not what is tested)
    assert main([str(run_copy), "--formats", "int8", "--calibration-samples", "8",
                 "--force-calibration", "--max-accuracy-drop", "100", "--int8-target-drop", "off",
                 "--no-progress"]) == 0
    assert (run_copy / "export" / "model_int8.tflite").is_file()


@pytest.mark.long
def test_accuracy_drop_guard_fires_only_past_the_limit(run_copy, capsys, monkeypatch):
    real_evaluate = exporter.evaluate
    seen = {}

    def lossy_evaluate(*args, **kwargs):
        evaluation = real_evaluate(*args, **kwargs)
        n = seen["n"] = evaluation.num_eval  # fp16 now loses one image more than it did
        evaluation.variants["fp16"]["accuracy"] -= 1 / n
        paired = evaluation.paired["fp16"]
        paired["keras_only_correct"] += 1
        paired["mcnemar_p"] = mcnemar_p(paired["keras_only_correct"],
                                        paired["variant_only_correct"])
        seen["paired"] = paired
        return evaluation

    monkeypatch.setattr(exporter, "evaluate", lossy_evaluate)
    assert main([str(run_copy), "--formats", "fp16", "--max-accuracy-drop", "0",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "fp16 lost more than 0 accuracy point" in err
    won, lost = seen["paired"]["variant_only_correct"], seen["paired"]["keras_only_correct"]
    assert f"(won {won}, lost {lost}), within noise (McNemar p = " in err  # one image is noise
    drop = Manifest.load(run_copy / "export").variants["fp16"].accuracy_drop_points
    assert drop > 0
    assert main([str(run_copy), "--formats", "fp16", "--max-accuracy-drop", f"{drop + 0.1}",
                 "--no-progress"]) == 0


@pytest.mark.long
def test_debug_report_and_selective_quantization(run_copy, capsys, monkeypatch):
    command = [str(run_copy), "--formats", "int8", "--calibration-samples", "40", "--debug-quant",
               "--keep-float", "2", "--max-accuracy-drop", "100", "--no-progress"]
    assert main(command) == 0
    out = capsys.readouterr().out
    with open(run_copy / "export" / "quant_report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) > 10
    errors = [float(r["rmse_over_scale"]) for r in rows]
    assert errors == sorted(errors, reverse=True)
    assert [r["verdict"] for r in rows] == [verdict(e) for e in errors]
    assert f"\nquant_report.csv: {len(rows)} int8 layer(s) against the rounding-noise floor" \
        in out
    signal = [r["tensor_name"] for r in rows if r["verdict"] == "signal"]
    variants = Manifest.load(run_copy / "export").to_json()["variants"]
    # the tiny model's layers measure up to about 1.6× the floor: noise, so nothing is kept
    assert ("int8_keepfloat" in variants) == bool(signal)
    if not signal:
        assert "no layer stands out" in out and "none was kept in float" in out

    # With the bar lowered to the floor itself the worst layers count as signal, and the
    # selective variant is built from the two worst.
    monkeypatch.setattr(quant_debug, "SIGNAL_THRESHOLD", quant_debug.NOISE_FLOOR)
    assert main(command) == 0
    with open(run_copy / "export" / "quant_report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    variants = Manifest.load(run_copy / "export").to_json()["variants"]
    selective = variants["int8_keepfloat"]
    assert selective["float_layers"] == [r["tensor_name"] for r in rows[:2]]
    assert rows[1]["verdict"] == "signal"
    assert "recovered_points" in selective
    assert (run_copy / "export" / selective["file"]).is_file()
    # It keeps the int8 interface the camera feeds (uint8 by default); only an
    # end whose op stayed float may stay float32.
    assert selective["input_dtype"] == variants["int8"]["input_dtype"] == "uint8"
    assert selective["output_dtype"] in ("uint8", "float32")


@pytest.mark.parametrize("damage, message", [
    (lambda run: shutil.rmtree(run), "does not exist"),
    (lambda run: (run / "model.keras").unlink(), "model.keras is missing"),
    (lambda run: (run / "model.keras").write_bytes(b"PK\x03\x04 broken zip"), "cannot be loaded"),
])
def test_broken_runs_are_one_line_with_exit_2(run_copy, capsys, damage, message):
    damage(run_copy)
    assert main([str(run_copy), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_unknown_formats_are_named_with_the_valid_ones():
    assert parse_formats("int8, fp32,int8") == ("int8", "fp32")
    with pytest.raises(ValueError, match="unknown bf16.*fp32, fp16, dynamic, int8"):
        parse_formats("fp32,bf16")
    assert set(FORMATS) >= {"fp32", "fp16", "int8", "dynamic"}


@pytest.mark.long
@pytest.mark.parametrize("int8_io, formats", [("int8", ("int8",)), ("float32", ("int8", "dynamic"))])
def test_int8_io_types_and_the_dynamic_format(run_copy, exported_run, int8_io, formats):
    exporter.export(ExportConfig(run=str(run_copy), formats=formats, int8_io=int8_io,
                                 calibration_samples=40, eval_samples=0, max_accuracy_drop=100,
                                 progress=False))
    bundle = run_copy / "export"
    manifest = Manifest.load(bundle)
    assert list(manifest.variants) == list(formats)
    reference = Manifest.load(exported_run / "export")  # the same model, int8 with uint8 I/O
    fp32_bytes = reference.variants["fp32"].bytes
    pixels = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3)).astype(np.uint8)
    uint8_probs = Classifier(exported_run / "export" / "model_int8.tflite").probabilities(pixels)

    int8 = manifest.variants["int8"]
    classifier = Classifier(bundle / int8.file)
    assert (classifier.input_dtype.name == classifier.output_dtype.name == int8.input_dtype
            == int8.output_dtype == int8_io)
    scale, zero_point = classifier.input_quantization
    assert (int8.input_quantization.scale, int8.input_quantization.zero_point) == \
        (pytest.approx(scale), zero_point)
    assert (scale > 0) == (int8_io == "int8")  # float32 I/O: the quantize op is inside
    # the runtime's feed hands the interpreter the reference quantization of the pixels
    classifier.set_input_tensor(classifier.tensor_from_pixels(pixels[0]))
    index = classifier.interpreter.get_input_details()[0]["index"]
    received = classifier.interpreter.get_tensor(index)
    assert received.dtype == classifier.input_dtype
    assert np.array_equal(received, quantize(pixels.astype(np.float32), classifier.input_dtype,
                                             scale, zero_point))
    assert int8.bytes < reference.variants["fp16"].bytes
    # against Keras, as the uint8-I/O int8 of the same model did (a borderline image of the tiny
    # model's ten may move int8's probabilities by a quarter: only the interface may differ here)
    uint8_int8 = reference.variants["int8"]
    assert int8.agreement >= 0.7 and abs(int8.agreement - uint8_int8.agreement) <= 0.1
    assert int8.max_abs_diff == pytest.approx(uint8_int8.max_abs_diff, abs=0.02)
    # the I/O type changes the interface only: the same internals give the same probabilities
    np.testing.assert_allclose(classifier.probabilities(pixels), uint8_probs, atol=0.02)

    if "dynamic" in formats:
        dynamic = manifest.variants["dynamic"]
        assert dynamic.file == "model_dynamic.tflite"
        assert dynamic.input_dtype == dynamic.output_dtype == "float32"
        assert dynamic.bytes < fp32_bytes / 2  # int8 weights
        # int8 weights, float activations: close to Keras (of ten test images, one borderline
        # image may flip)
        assert dynamic.agreement >= 0.8 and dynamic.max_abs_diff < 0.2
    assert manifest.eval_set is None and not (bundle / "eval_set.npz").exists()  # 0: none


@pytest.mark.parametrize("flag, value", [
    ("--calibration-samples", "0"), ("--eval-samples", "-1"), ("--threads", "0"),
    ("--max-accuracy-drop", "-0.5"), ("--keep-float", "-1"), ("--threads", "two"),
    ("--int8-target-drop", "-1"),
])
def test_bad_numbers_are_one_line_usage_errors(tmp_path, capsys, flag, value):
    assert main([str(tmp_path), flag, value]) == 2
    err = capsys.readouterr().err.strip()
    assert flag in err and "\n" not in err



def test_a_sign_key_that_is_not_there_is_refused_before_any_work(run_copy, capsys):
    assert main([str(run_copy), "--sign-key", str(run_copy / "no-such-key")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--sign-key" in err and "no such readable key file" in err and "\n" not in err
    assert not (run_copy / "export").exists()


def test_int8_target_drop_needs_the_int8_variant(tmp_path, capsys):
    # given explicitly without int8: a usage error; by default it applies only to int8
    assert main([str(tmp_path), "--formats", "fp32", "--int8-target-drop", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "add int8 to --formats" in err and "\n" not in err
