"""The export bundle as a whole: swapped in complete, hashed, carrying its evaluation set, and
refused by the runtime when its manifest disagrees with its models."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.classifier import Classifier
from edge_runtime.errors import ManifestError, ModelError
from edge_runtime.eval_set import EvalSet
from edge_runtime.image import load_model_input
from edge_runtime.labels import read_labels
from edge_runtime.manifest import EvalSet as EvalSetEntry
from edge_runtime.manifest import InputSpec, Manifest
from export import exporter, images
from export.cli import main
from export.exporter import ExportConfig
from train.splits import Splits


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _leftovers(run: Path) -> list[str]:
    return [p.name for p in run.iterdir() if p.name.startswith(".export-")]


@pytest.fixture
def exported_copy(exported_run, tmp_path) -> Path:
    run = tmp_path / "exported"
    shutil.copytree(exported_run, run)
    return run


def test_variant_hashes_in_the_manifest_match_the_files(bundle):
    manifest = Manifest.load(bundle)
    assert manifest.variants
    for variant in manifest.variants.values():
        assert variant.sha256 == hashlib.sha256((bundle / variant.file).read_bytes()).hexdigest()


def test_the_eval_set_holds_the_verified_pixels_labels_and_keras_answers(exported_run):
    import keras

    bundle = exported_run / "export"
    manifest = Manifest.load(bundle)
    splits = Splits.load(exported_run / "splits.json")
    paths = splits.paths("test")
    assert len(paths) < 300  # the default keeps the whole (tiny) split, in order
    assert manifest.eval_set == EvalSetEntry("eval_set.npz", len(paths), "test")
    data = EvalSet.load(bundle / "eval_set.npz")
    expected = np.stack([load_model_input(p, (64, 64), "bilinear") for p in paths])
    assert data.pixels.dtype == np.uint8 and np.array_equal(data.pixels, expected)
    assert data.labels.tolist() == splits.labels["test"]
    model = keras.models.load_model(exported_run / "model.keras", compile=False)
    assert data.keras_top1.tolist() == model.predict(expected, verbose=0).argmax(1).tolist()
    assert np.mean(data.keras_top1 == data.labels) == pytest.approx(manifest.keras_accuracy)
    for variant in manifest.variants.values():  # what a device computes from the file alone
        top1 = Classifier(bundle / variant.file).predict(data.pixels.astype(np.float32)).argmax(1)
        assert np.mean(top1 == data.keras_top1) == pytest.approx(variant.agreement)
        assert np.mean(top1 == data.labels) == pytest.approx(variant.accuracy)


def test_re_export_replaces_the_whole_bundle_and_ignores_a_stale_manifest(run_copy, monkeypatch):
    stale = run_copy / "export"
    stale.mkdir()
    (stale / "model_dynamic.tflite").write_bytes(b"from an earlier export")
    (stale / "quant_report.csv").write_text("op_name\nold\n")
    (stale / "labels.txt").write_text("x\ny\n")
    # a manifest of another model (other size, other labels): verification must not read it
    Manifest(InputSpec(96, 96), ("x", "y"), {}).save(stale)
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "resize": "nearest"}))
    methods = set()
    real_load = images.load_model_pixels

    def spy(path, size, method):
        methods.add(method)
        return real_load(path, size, method)

    monkeypatch.setattr(images, "load_model_pixels", spy)
    exporter.export(ExportConfig(run=str(run_copy), formats=("fp32",), eval_samples=5,
                                 max_accuracy_drop=100, progress=False))

    assert sorted(_contents(stale)) == ["eval_set.npz", "labels.txt", "manifest.json",
                                        "model_fp32.tflite"]
    assert _leftovers(run_copy) == []
    manifest = Manifest.load(stale)
    assert manifest.input.size == (64, 64)
    assert manifest.input.resize == "nearest" and methods == {"nearest"}  # the run's filter
    assert list(manifest.labels) == read_labels(run_copy / "labels.txt") == \
        read_labels(stale / "labels.txt")
    assert manifest.variants["fp32"].agreement == 1.0
    data = EvalSet.load(stale / "eval_set.npz")
    assert manifest.eval_set.samples == len(data) == 5
    assert sorted(data.labels.tolist()) == [0, 1, 2, 3, 4]  # stratified: one per class


def test_an_interrupted_export_leaves_the_old_bundle_intact(exported_copy, monkeypatch, capsys):
    before = _contents(exported_copy / "export")

    def interrupted(*args, **kwargs):  # Ctrl-C after the new variants were written
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "evaluate", interrupted)
    assert main([str(exported_copy), "--formats", "fp32,dynamic", "--no-progress"]) == 130
    assert _contents(exported_copy / "export") == before
    assert _leftovers(exported_copy) == []
    assert "previous export/" in capsys.readouterr().err


def test_a_failed_swap_puts_the_old_bundle_back(exported_copy, monkeypatch):
    from export import bundle

    before = _contents(exported_copy / "export")
    real_rename = bundle.os.rename

    def rename(src, dst):
        if Path(src).name.startswith(bundle.STAGING_PREFIX):
            raise OSError("disk gone")
        real_rename(src, dst)

    monkeypatch.setattr(bundle.os, "rename", rename)
    with pytest.raises(OSError, match="disk gone"):
        exporter.export(ExportConfig(run=str(exported_copy), formats=("fp32",), eval_samples=0,
                                     progress=False))
    assert _contents(exported_copy / "export") == before
    assert _leftovers(exported_copy) == []


def test_a_converter_crash_is_exit_3_with_one_line_and_a_saved_traceback(exported_copy,
                                                                         monkeypatch, capsys):
    import tensorflow as tf

    class Exploding:
        def convert(self):
            raise RuntimeError("converter exploded")

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model",
                        staticmethod(lambda model: Exploding()))
    before = _contents(exported_copy / "export")
    assert main([str(exported_copy), "--formats", "fp32", "--no-progress"]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "internal error: RuntimeError: converter exploded" in err
    saved = Path(re.search(r"traceback saved to (\S+);", err).group(1))
    try:
        assert "Traceback" in saved.read_text() and "converter exploded" in saved.read_text()
    finally:
        saved.unlink()
    assert _contents(exported_copy / "export") == before and _leftovers(exported_copy) == []


def test_a_manifest_that_disagrees_with_the_model_is_refused(bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["input"]["height"] = data["input"]["width"] = 96
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="says 96x96 input but model_int8.tflite takes 64x64"):
        Classifier(copy / "model_int8.tflite")


@pytest.mark.parametrize("key, value, message", [
    ("resize", "cubicle", "resize 'cubicle', expected one of bilinear"),
    ("color", "BGR", "color 'BGR'"),
    ("range", [0, 1], r"range \[0, 1\], expected \[0, 255\]"),
])
def test_an_input_spec_the_runtime_cannot_produce_is_a_clear_error(bundle, tmp_path, key,
                                                                   value, message):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["input"][key] = value
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message) as error:
        Classifier(copy / "model_fp32.tflite")
    assert str(copy / "manifest.json") in str(error.value) and "\n" not in str(error.value)


def test_a_bad_resize_in_the_run_config_is_exit_2(run_copy, capsys):
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "resize": "cubicle"}))
    assert main([str(run_copy), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "resize 'cubicle'" in err and "\n" not in err
    assert not (run_copy / "export").exists()
