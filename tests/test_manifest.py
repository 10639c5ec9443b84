"""The typed manifest: round trip, validation at load, and what the classifier does with it."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.classifier import Classifier
from edge_runtime.errors import ManifestError, ModelError
from edge_runtime.eval_set import EvalSet, stratified_indices
from edge_runtime.manifest import (
    FORMAT_VERSION,
    InputSpec,
    Manifest,
    Variant,
    bundle_folder,
    find_manifest,
)
from tests.helpers import demo_images

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge

MISSING = object()
DAMAGED = [  # (where in manifest.json, what is put there): each is exit 2 naming the key
    (("input", "height"), "abc"),
    (("input", "width"), None),
    (("input", "channels"), "three"),
    (("input",), MISSING),
    (("input",), [64, 64]),
    (("labels",), 5),
    (("variants",), []),
    (("variants", "fp32", "file"), "../../elsewhere.tflite"),
    (("variants", "fp32", "accuracy"), "high"),
    (("variants", "fp32", "bytes"), "many"),
    (("variants", "fp32", "input_quantization", "scale"), "x"),
    (("eval_set", "samples"), "many"),
    (("eval_set",), "eval_set.npz"),
    (("keras_accuracy",), "good"),
    (("num_eval",), [1]),
]


def test_an_exported_manifest_round_trips_unchanged(bundle):
    raw = json.loads((bundle / "manifest.json").read_text())
    manifest = Manifest.load(bundle)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.to_json() == {**raw, "format_version": FORMAT_VERSION,
                                  "eval_set": raw.get("eval_set")}
    assert set(manifest.variants) >= {"fp32", "fp16", "int8"}
    assert manifest.input.size == (64, 64)


@pytest.mark.parametrize("field, value, message", [
    ("resize", "cubic-ish", "resize 'cubic-ish', expected one of bilinear"),
    ("color", "BGR", "color 'BGR'"),
    ("range", [-1, 1], "range [-1, 1], expected [0, 255]"),
    ("channels", 1, "1 channels, expected 3"),
])
def test_an_input_the_runtime_cannot_produce_is_refused_at_load(tmp_path, bundle, field, value,
                                                                message):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    data = json.loads((copy / "manifest.json").read_text())
    data["input"][field] = value
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Manifest.load(copy)
    with pytest.raises(ModelError, match=field):
        Classifier(copy / "model_fp32.tflite")


def test_a_manifest_from_a_newer_toolchain_says_to_upgrade(tmp_path, bundle):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    data = json.loads((copy / "manifest.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="newer than this edge-toolchain reads"):
        Manifest.load(copy)


def test_a_size_mismatch_between_manifest_and_model_is_a_model_error(tmp_path, bundle):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    manifest = Manifest.load(copy)
    replace(manifest, input=replace(manifest.input, height=96, width=96)).save(copy)
    with pytest.raises(ModelError, match="manifest.json says 96x96 input but model_fp32.tflite "
                                         "takes 64x64"):
        Classifier(copy / "model_fp32.tflite")


def test_the_resize_method_comes_from_the_manifest(tmp_path, bundle):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    manifest = Manifest.load(copy)
    replace(manifest, input=replace(manifest.input, resize="nearest")).save(copy)
    assert Classifier(copy / "model_fp32.tflite").resize_method == "nearest"
    assert Classifier(bundle / "model_fp32.tflite").resize_method == manifest.input.resize


def test_input_spec_defaults_describe_the_models_contract():
    spec = InputSpec(height=96, width=128)
    assert spec.to_json() == {"height": 96, "width": 128, "channels": 3, "color": "RGB",
                              "range": [0, 255], "resize": "bilinear", "dtype": "float32"}
    assert InputSpec.from_json(spec.to_json()) == spec


def test_eval_set_round_trip_and_shape_checks(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    original = EvalSet(pixels, np.arange(5) % 2, np.zeros(5, int))
    loaded = EvalSet.load(original.save(tmp_path / "eval_set.npz"))
    assert np.array_equal(loaded.pixels, pixels) and loaded.labels.tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(ValueError, match="uint8"):
        EvalSet(pixels.astype(np.float32), original.labels, original.keras_top1)
    with pytest.raises(ValueError, match="5 images but 4 labels"):
        EvalSet(pixels, original.labels[:4], original.keras_top1)
    (tmp_path / "broken.npz").write_bytes(b"not an archive")
    with pytest.raises(ManifestError, match="not a readable eval set"):
        EvalSet.load(tmp_path / "broken.npz")


def test_stratified_indices_take_classes_in_turn():
    labels = [0] * 90 + [1] * 9 + [2] * 1
    chosen = stratified_indices(labels, 10, seed=3)
    picked = np.asarray(labels)[chosen]
    assert len(chosen) == 10 and list(chosen) == sorted(chosen)
    assert (picked == 2).sum() == 1 and (picked == 1).sum() >= 4  # the rare classes are kept
    assert list(stratified_indices(labels, 500)) == list(range(100))


def _damage(bundle, tmp_path, where: tuple[str, ...], value):
    copy = shutil.copytree(bundle, tmp_path / "bundle")
    data = json.loads((copy / "manifest.json").read_text())
    parent = data
    for key in where[:-1]:
        parent = parent[key]
    if value is MISSING:
        del parent[where[-1]]
    else:
        parent[where[-1]] = value
    (copy / "manifest.json").write_text(json.dumps(data))
    return copy


@pytest.mark.parametrize("where, value", DAMAGED,
                         ids=[".".join(w) + ("=missing" if v is MISSING else f"={v!r}")
                              for w, v in DAMAGED])
def test_a_damaged_manifest_is_exit_2_naming_the_key(tmp_path, bundle, demo_dir, capfd, where,
                                                     value):
    from benchmarks.cli import main as bench_main
    from edge_runtime.commands.classify import main as classify_main

    copy = _damage(bundle, tmp_path, where, value)
    with pytest.raises(ManifestError, match=f"'{where[-1]}'"):
        Manifest.load(copy)
    image = demo_images(demo_dir)[0]
    for command in (["--model", str(copy / "model_fp32.tflite"), str(image)],
                    [str(copy), "--runs", "1", "--repeats", "1", "--warmup", "0", "--no-memory",
                     "--no-progress"]):
        main = bench_main if command[0] == str(copy) else classify_main
        code = main(command)
        err = capfd.readouterr().err.strip()
        assert code == 2, err
        assert "\n" not in err and f"'{where[-1]}'" in err and "manifest.json" in err


# -------------------------------------------------- which variants run where, whose manifest

def _variant(file: str, **extra) -> Variant:
    return Variant(file=file, bytes=1, input_dtype="uint8", output_dtype="uint8", accuracy=0.9,
                   agreement=0.9, max_abs_diff=0.1, extra=extra)


def test_cpu_variants_leave_the_sensor_s_network_out():
    manifest = Manifest(input=InputSpec(64, 64), labels=("a", "b"), variants={
        "fp32": _variant("model_fp32.tflite"), "imx500": _variant("imx500/packerOut.zip",
                                                                  runs_on="imx500"),
        "int8": _variant("model_int8.tflite", runs_on="cpu")})
    assert list(manifest.cpu_variants()) == ["fp32", "int8"]
    name, variant = manifest.sensor_variant()
    assert name == "imx500" and not variant.on_cpu
    only_cpu = replace(manifest, variants=manifest.cpu_variants())
    assert only_cpu.sensor_variant() is None


def test_a_model_finds_its_bundle_s_manifest_beside_it_or_one_folder_up(tmp_path):
    bundle = tmp_path / "my bündle"
    (bundle / "imx500").mkdir(parents=True)
    Manifest(input=InputSpec(64, 64), labels=("a",), variants={}).save(bundle)
    assert bundle_folder(bundle / "model_int8.tflite") == bundle
    assert bundle_folder(bundle / "imx500" / "packerOut.zip") == bundle
    assert find_manifest(bundle / "imx500" / "network.rpk").labels == ("a",)
    assert find_manifest(bundle / "model_int8.tflite") == Manifest.load(bundle)
    assert find_manifest(tmp_path / "lone.tflite") is None  # no bundle: its own metadata
    (bundle / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        find_manifest(bundle / "model_int8.tflite")


def _bound(tmp_path: Path) -> tuple[Manifest, Path]:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "labels.txt").write_text("golden retriever\ncrème brûlée\n")
    (folder / "model_int8.tflite").write_bytes(b"int8 bytes")
    from common.fileio import sha256

    files = {name: sha256(folder / name) for name in ("labels.txt", "model_int8.tflite")}
    int8 = Variant(file="model_int8.tflite", bytes=10, input_dtype="uint8", output_dtype="uint8",
                   accuracy=1.0, agreement=1.0, max_abs_diff=0.0,
                   sha256=files["model_int8.tflite"])
    return Manifest(InputSpec(8, 8), ("golden retriever", "crème brûlée"), {"int8": int8},
                    files=files), folder


def test_files_bind_every_file_and_survive_a_round_trip(tmp_path):
    manifest, folder = _bound(tmp_path)
    manifest.save(folder)
    loaded = Manifest.load(folder)
    assert loaded.files == manifest.files and loaded == manifest
    loaded.check_files(folder)
    (folder / "labels.txt").write_text("golden\nretriever\ncrème brûlée\n")
    (folder / "model_int8.tflite").unlink()
    assert [name for name, _ in loaded.damaged_files(folder)] == ["model_int8.tflite",
                                                                  "labels.txt"]
    with pytest.raises(ManifestError, match="variant int8: .*model_int8.tflite is missing"):
        loaded.check_files(folder)


@pytest.mark.parametrize("files, says", [
    ({"../escape": "0" * 64}, "not a file name in the bundle"),
    ({"a/b/c": "0" * 64}, "not a file name in the bundle"),
    ({"labels.txt": "not hex"}, "not 64 lower-case hex digits"),
    (["labels.txt"], "'files' is"),
])
def test_files_that_are_not_names_in_the_bundle_with_sha256s_are_refused(tmp_path, files,
                                                                         says):
    manifest, folder = _bound(tmp_path)
    data = {**manifest.to_json(), "files": files}
    with pytest.raises(ManifestError, match=says):
        Manifest.from_json(data)


def test_a_variant_the_files_leave_out_or_hash_otherwise_is_refused(tmp_path):
    manifest, folder = _bound(tmp_path)
    with pytest.raises(ManifestError, match="not among the manifest's files"):
        replace(manifest, files={"labels.txt": manifest.files["labels.txt"]}).check_files(folder)
    with pytest.raises(ManifestError, match="two sha256s"):
        replace(manifest, files={**manifest.files, "model_int8.tflite": "0" * 64}).check_files(
            folder)
    assert manifest.cpu_variants() == {"int8": manifest.variants["int8"]}
