"""A class called ``golden retriever`` or ``crème brûlée`` is one label all the way: training's
folder scan, the bundle (labels.txt one label a line, the manifest), edge-model activate,
edge-classify and edge-compare (common/labels.py: the one rule). TensorFlow-free: the bundle is
the tiny one with its classes renamed, as export writes labels (``labels_text``); the labels
in each model's own metadata are tests/test_metadata.py's."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from common.labels import read_labels
from deploy.store import Store, activate
from edge_runtime.manifest import Manifest
from tests.bundle_variants import relabelled
from train.splits import scan_folder

REPO = Path(__file__).resolve().parents[1]
LABELS = ["golden retriever", "crème brûlée", "日本酒", "no. 2", "tasse à café"]
"""The tiny run's five classes, renamed in output order."""


def test_a_label_with_spaces_and_accents_survives_train_bundle_activate_classify_compare(
        bundle, demo_dir, tmp_path):
    # training: the class folders are the labels, spaces and accents and all
    old = read_labels(bundle / "labels.txt")
    data = tmp_path / "kept apart"
    for label, name in zip(LABELS, old):
        shutil.copytree(demo_dir / name, data / label)
    assert sorted(scan_folder(data)[1]) == sorted(LABELS)
    # the bundle export writes for those classes (the same network, renamed in output order)
    renamed = relabelled(bundle, tmp_path / "export", LABELS)
    assert read_labels(renamed / "labels.txt") == list(Manifest.load(renamed).labels) == LABELS

    store = Store(tmp_path / "models")
    done = activate(store, renamed)
    assert done.result == "activated", done.to_json()
    assert next(c for c in done.checks if c.name == "labels").detail == "5 classes"

    images = [str(next((data / label).iterdir())) for label in LABELS]
    classify = subprocess.run(
        [sys.executable, "-m", "edge_runtime.commands.classify", "--model",
         str(store.root / "current" / "model_int8.tflite"), "--json", "--top-k", "5", *images],
        cwd=REPO, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert classify.returncode == 0, classify.stderr
    results = [json.loads(line) for line in classify.stdout.splitlines()]
    assert {p["label"] for r in results for p in r["top_k"]} == set(LABELS)

    compare = subprocess.run(
        [sys.executable, "-m", "benchmarks.compare_cli", str(store.root / "current"),
         str(renamed), "--data", str(data), "--out", str(tmp_path / "compared")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert compare.returncode == 0, compare.stderr
    report = json.loads((tmp_path / "compared" / "report.json").read_text(encoding="utf-8"))
    assert set(report["per_class"]) == set(LABELS)
    assert report["a"]["unknown_labels"] == [] and report["verdict"] == "same"
    assert report["a"]["accuracy"] > 0.4  # the names matched: a model well above chance (0.2)
