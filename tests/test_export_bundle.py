"""The export bundle as a whole: swapped in complete, hashed, carrying its evaluation set, and
refused by the runtime when its manifest disagrees with its models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from common.labels import read_labels
from deploy.signature import SIGNATURE_FILE, matches
from edge_runtime.classifier import Classifier
from edge_runtime.errors import ManifestError, ModelError
from edge_runtime.eval_set import EvalSet
from edge_runtime.image import load_model_pixels
from edge_runtime.manifest import EvalSet as EvalSetEntry
from edge_runtime.manifest import InputSpec, Manifest
from export import exporter, images
from export.cli import main
from export.exporter import ExportConfig
from train.splits import Splits


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes()
            for p in sorted(folder.rglob("*"))}


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


def test_the_manifest_binds_every_file_of_the_bundle(bundle):
    """``files``: each file export wrote but manifest.json (whose own sha256 is the version),
    each variant's with the variant's sha256 (what edge-model activate holds a bundle to)."""
    manifest = Manifest.load(bundle)
    written = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*")
               if p.is_file() and p.relative_to(bundle).parts[0] != "bench"}
    assert set(manifest.files) == written - {"manifest.json"}
    assert {"labels.txt", "eval_set.npz", "model_int8.tflite"} <= set(manifest.files)
    for name, digest in manifest.files.items():
        assert digest == hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    assert all(manifest.files[v.file] == v.sha256 for v in manifest.variants.values())
    manifest.check_files(bundle)


def test_the_eval_set_holds_the_verified_pixels_labels_and_keras_answers(exported_run):
    import keras

    bundle = exported_run / "export"
    manifest = Manifest.load(bundle)
    splits = Splits.load(exported_run / "splits.json")
    paths = splits.paths("test")
    assert len(paths) < 300  # the default keeps the whole (tiny) split, in order
    assert manifest.eval_set == EvalSetEntry("eval_set.npz", len(paths), "test")
    data = EvalSet.load(bundle / "eval_set.npz")
    expected = np.stack([load_model_pixels(p, (64, 64), "bilinear") for p in paths])
    assert data.pixels.dtype == np.uint8 and np.array_equal(data.pixels, expected)
    assert data.labels.tolist() == splits.labels["test"]
    model = keras.models.load_model(exported_run / "model.keras", compile=False)
    assert data.keras_top1.tolist() == \
        model.predict(expected.astype(np.float32), verbose=0).argmax(1).tolist()
    assert np.mean(data.keras_top1 == data.labels) == pytest.approx(manifest.keras_accuracy)
    for variant in manifest.variants.values():  # what a device computes from the file alone
        top1 = Classifier(bundle / variant.file).probabilities(data.pixels).argmax(1)
        assert np.mean(top1 == data.keras_top1) == pytest.approx(variant.agreement)
        assert np.mean(top1 == data.labels) == pytest.approx(variant.accuracy)


def test_re_export_replaces_the_whole_bundle_and_ignores_a_stale_manifest(run_copy, monkeypatch,
                                                                          tmp_path):
    stale = run_copy / "export"
    stale.mkdir()
    (stale / "model_dynamic.tflite").write_bytes(b"from an earlier export")
    (stale / SIGNATURE_FILE).write_text("-----BEGIN SSH SIGNATURE-----\nof the old manifest\n")
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
    key = None  # signed at export where OpenSSH is here (everywhere but a bare container)
    if shutil.which("ssh-keygen"):
        key = tmp_path / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
    result = exporter.export(ExportConfig(run=str(run_copy), formats=("fp32",), eval_samples=5,
                                          max_accuracy_drop=100, progress=False, sign_key=key))

    # the earlier signature was export's own file: replaced by a new one, or gone unsigned
    assert sorted(_contents(stale)) == ["eval_set.npz", "labels.txt", "manifest.json",
                                        *([SIGNATURE_FILE] if key else []), "model_fp32.tflite"]
    if key is not None:
        assert result.signed_with == matches(stale) and "ED25519 key SHA256:" in matches(stale)
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

    # export converts from the SavedModel it writes once (export.convert.saved_model)
    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model",
                        staticmethod(lambda folder: Exploding()))
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


def test_a_re_export_refuses_to_delete_files_it_did_not_write(exported_copy, capsys):
    bundle = exported_copy / "export"
    (bundle / "notes.txt").write_text("my notes")
    (bundle / "photos").mkdir()
    (bundle / "photos" / "cat.jpg").write_bytes(b"a photo")
    (bundle / "bench").mkdir()
    (bundle / "bench" / "pi4.txt").write_text("my measurements")
    before = _tree(bundle)
    assert main([str(exported_copy), "--formats", "fp32", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    for name in ("notes.txt", "photos", "bench/pi4.txt"):
        assert name in err
    assert "move them out" in err
    assert _tree(bundle) == before and _leftovers(exported_copy) == []


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_an_export_that_is_not_a_folder_is_refused_and_left_untouched(run_copy, tmp_path,
                                                                     capsys, kind):
    out = run_copy / "export"
    if kind == "file":
        out.write_text("mine")
    else:
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
        out.symlink_to(tmp_path / "elsewhere")
    assert main([str(run_copy), "--formats", "fp32", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(out) in err and f"is a {kind.replace('symlink', 'symbolic link')}" in err
    if kind == "file":
        assert out.is_file() and not out.is_symlink() and out.read_text() == "mine"
    else:
        assert out.is_symlink() and (out / "notes.txt").read_text() == "mine"
    assert _leftovers(run_copy) == []


def test_a_file_put_into_export_during_the_export_is_kept(exported_copy, monkeypatch, capsys):
    bundle = exported_copy / "export"
    real_evaluate = exporter.evaluate

    def user_adds_a_file(*args, **kwargs):  # after the first check, before the swap
        (bundle / "notes.txt").write_text("my notes")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(exporter, "evaluate", user_adds_a_file)
    assert main([str(exported_copy), "--formats", "fp32", "--eval-samples", "0",
                 "--no-progress"]) == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (bundle / "notes.txt").read_text() == "my notes"
    assert (bundle / "model_int8.tflite").is_file()  # the old bundle, untouched
    assert _leftovers(exported_copy) == []


def test_a_re_export_drops_what_export_and_edge_bench_wrote_before(exported_copy):
    from benchmarks.cli import main as bench_main

    bundle = exported_copy / "export"
    # edge-bench's report on the old variants: stale once they are replaced
    assert bench_main([str(bundle), "--runs", "2", "--repeats", "1", "--warmup", "0",
                       "--no-memory", "--no-progress"]) == 0
    assert (bundle / "bench" / "report.json").is_file()
    (bundle / "bench" / ".report.1a2b3c4d.md").write_text("half")  # a bench killed mid-write
    # a variant an older toolchain wrote, named by its manifest
    manifest = Manifest.load(bundle)
    old = replace(manifest.variants["fp32"], file="model_old.tflite")
    replace(manifest, variants={**manifest.variants, "old": old}).save(bundle)
    (bundle / "model_old.tflite").write_bytes(b"an old variant")
    (bundle / "quant_report.csv").write_text("op_name\nold\n")
    (bundle / ".manifest.5e6f7a8b.json").write_text("{")  # a write killed halfway
    exporter.export(ExportConfig(run=str(exported_copy), formats=("fp32",), eval_samples=0,
                                 max_accuracy_drop=100, progress=False))
    assert sorted(_tree(bundle)) == ["labels.txt", "manifest.json", "model_fp32.tflite"]
    assert _leftovers(exported_copy) == []


def test_the_swap_syncs_the_new_files_before_the_rename_and_the_parent_after(tmp_path,
                                                                             monkeypatch):
    from export import bundle

    out = tmp_path / "run" / "export"
    out.mkdir(parents=True)
    (out / "labels.txt").write_text("old\n")
    events: list[tuple[str, int | str]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", Path(src).name))
        real_rename(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    with bundle.staged_bundle(out) as folder:
        (folder / "model_fp32.tflite").write_bytes(b"written without a flush")
        (folder / "bench").mkdir()
        (folder / "bench" / "report.md").write_text("nested")
        staging = folder.name
    synced_before = {ino for what, ino in events[:events.index(("rename", staging))]
                     if what == "fsync"}
    for path in (out, out / "model_fp32.tflite", out / "bench", out / "bench" / "report.md"):
        assert path.stat().st_ino in synced_before, path
    assert ("fsync", out.parent.stat().st_ino) in events[events.index(("rename", staging)) + 1:]


def test_discarding_an_old_bundle_removes_only_what_export_and_edge_bench_write(tmp_path,
                                                                                caplog):
    from export import bundle

    old = tmp_path / ".export-old-1234"
    (old / "bench").mkdir(parents=True)
    for name in ("labels.txt", "manifest.json", "model_int8.tflite", "bench/report.json"):
        (old / name).write_text("ours")
    (old / "notes.txt").write_text("theirs")
    with caplog.at_level(logging.WARNING):
        bundle.discard(old)
    assert _tree(old) == {"notes.txt": b"theirs"}
    assert "notes.txt" in caplog.text
    (old / "notes.txt").unlink()
    bundle.discard(old)
    assert not old.exists()


def test_a_failure_to_delete_the_old_bundle_leaves_the_new_one_in_place(tmp_path, monkeypatch,
                                                                       caplog):
    from export import bundle

    out = tmp_path / "export"
    out.mkdir()
    (out / "labels.txt").write_text("old\n")

    def discard(old):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(bundle, "discard", discard)
    with caplog.at_level(logging.WARNING), bundle.staged_bundle(out) as folder:
        (folder / "labels.txt").write_text("new\n")
    assert (out / "labels.txt").read_text() == "new\n"
    assert "could not delete the previous bundle" in caplog.text
