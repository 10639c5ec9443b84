"""Copies of the tests' tiny bundle made different on purpose: another version of the same
model, a damaged file, answers a device would not give. Each copy but the damaged one is a
bundle export could have written: its manifest binds the files as they now are (:func:`rehash`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from common.fileio import sha256
from common.labels import labels_text, read_labels
from edge_runtime.eval_set import EvalSet
from edge_runtime.manifest import MANIFEST_FILE


def rehash(bundle: Path, **changes) -> Path:
    """Rewrite ``bundle``'s manifest with ``changes`` (top-level keys), binding the files as
    they now are (every file of the folder in ``files``, each variant's sha256 and size): the
    bundle export would have written."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest.update(changes)
    if "files" in manifest:
        manifest["files"] = {p.relative_to(bundle).as_posix(): sha256(p)
                             for p in sorted(bundle.rglob("*"))
                             if p.is_file() and p.name != MANIFEST_FILE
                             and p.relative_to(bundle).parts[0] != "bench"}
    for variant in manifest["variants"].values():
        variant["sha256"] = sha256(bundle / variant["file"])
        variant["bytes"] = (bundle / variant["file"]).stat().st_size
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


def relabelled(bundle: Path, out: Path, labels: list[str]) -> Path:
    """A copy of ``bundle`` whose classes are called ``labels``, in output order: the same
    model and answers, another version."""
    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("bench"))
    (out / "labels.txt").write_text(labels_text(labels), encoding="utf-8")
    return rehash(out, labels=labels)


def renamed(bundle: Path, out: Path, prefix: str) -> Path:
    """A copy of ``bundle`` whose class names start with ``prefix``: the same answers under
    other names (so which version gave a label is plain to see), and another version."""
    return relabelled(bundle, out, [prefix + name for name in read_labels(bundle / "labels.txt")])


def corrupted(bundle: Path, out: Path, variant: str = "int8") -> Path:
    """A copy with one byte of a variant's file changed (its size kept), as a bad copy leaves it."""
    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("bench"))
    path = out / f"model_{variant}.tflite"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return out


def answers_differ(bundle: Path, out: Path, prefix: str = "other-") -> Path:
    """A copy (another version) whose workstation answers for fp32 are not what the model gives:
    every answer moved to the next class, as a model that answers differently on the device."""
    renamed(bundle, out, prefix)
    eval_set = EvalSet.load(out / "eval_set.npz")
    classes = int(max(eval_set.labels.max(), eval_set.keras_top1.max())) + 1
    answers = dict(eval_set.variant_top1)
    answers["fp32"] = (np.asarray(answers["fp32"]) + 1) % max(classes, 2)
    (out / "eval_set.npz").unlink()
    EvalSet(eval_set.pixels, eval_set.labels, eval_set.keras_top1, answers).save(
        out / "eval_set.npz")
    return rehash(out)


DNN_PARAMS = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<dnnParams><networks><network name="model_mct" ordinal="0" type="">
  <inputTensors><inputTensor ordinal="0" name="image:0" scale="{scale}" format="{format}">
    <dimensions><dimension size="{height}" ordinal="0"/><dimension size="{width}" ordinal="1"/>
      <dimension size="3" ordinal="2"/></dimensions></inputTensor></inputTensors>
  <outputTensors><outputTensor ordinal="0" name="predictions:0" scale="0.00390625"
                               format="unsigned">
    <dimensions><dimension size="{classes}" ordinal="0"/></dimensions></outputTensor>
  </outputTensors>
</network></networks></dnnParams>"""
"""What Sony's converter writes in packerOut.zip, cut to what is read (tests/test_imx500.py
has the full one)."""


def with_sensor_network(bundle: Path, out: Path, scale: str = "0.0078125",
                        fmt: str = "signed") -> Path:
    """A copy of ``bundle`` with an ``imx500`` variant: a stand-in packerOut.zip whose
    dnnParams.xml takes the bundle's input size and gives a score a class (an input of
    ``scale`` and ``fmt``: signed 1/128 is what the sensor feeds)."""
    import zipfile

    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("bench"))
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    packed = out / "imx500" / "packerOut.zip"
    packed.parent.mkdir()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("dnnParams.xml", DNN_PARAMS.format(
            scale=scale, format=fmt, height=manifest["input"]["height"],
            width=manifest["input"]["width"], classes=len(manifest["labels"])))
        archive.writestr("l2staticData.bin", bytes(range(256)) * 4)
    (out / "imx500" / "memory_report.json").write_text('{"fits": true}')
    manifest["variants"]["imx500"] = {
        "file": "imx500/packerOut.zip", "input_dtype": "int8", "output_dtype": "uint8",
        "accuracy": 0.9, "agreement": 0.95, "max_abs_diff": 0.1, "runs_on": "imx500"}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return rehash(out)


def slim(bundle: Path, out: Path, keep: tuple[str, ...] = ("int8",)) -> Path:
    """A copy of ``bundle`` with only the variants ``keep`` (the others' files gone): a bundle
    whose checks run in a fraction of the time."""
    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("bench"))
    manifest = json.loads((out / MANIFEST_FILE).read_text(encoding="utf-8"))
    for name in [n for n in manifest["variants"] if n not in keep]:
        (out / manifest["variants"].pop(name)["file"]).unlink()
    (out / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return rehash(out)


def hand_made(out: Path, variants: tuple[str, ...] = ("int8",)) -> Path:
    """A bundle made by hand, without TensorFlow: a manifest binding labels.txt, an evaluation
    set and a file per variant that is no model (so it refuses at the answers check, after
    every check of what the bundle holds)."""
    out.mkdir(parents=True)
    labels = ["golden retriever", "crème brûlée"]
    (out / "labels.txt").write_text(labels_text(labels), encoding="utf-8")
    (out / "eval_set.npz").write_bytes(b"stand-in")
    entries = {}
    for name in variants:
        (out / f"model_{name}.tflite").write_bytes(f"not a {name} model".encode())
        entries[name] = {"file": f"model_{name}.tflite", "input_dtype": "float32",
                         "output_dtype": "float32", "accuracy": 1.0, "agreement": 1.0,
                         "max_abs_diff": 0.0}
    manifest = {"format_version": 1, "input": {"height": 8, "width": 8}, "labels": labels,
                "variants": entries,
                "eval_set": {"file": "eval_set.npz", "samples": 2, "split": "test"},
                "files": {}}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return rehash(out)
