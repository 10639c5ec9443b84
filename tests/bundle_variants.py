"""Copies of the tests' tiny bundle made different on purpose: another version of the same
model, a damaged file, answers a device would not give."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from edge_runtime.eval_set import EvalSet
from edge_runtime.manifest import MANIFEST_FILE


def renamed(bundle: Path, out: Path, prefix: str) -> Path:
    """A copy of ``bundle`` whose class names start with ``prefix``: the same answers under
    other names (so which version gave a label is plain to see), and another version."""
    shutil.copytree(bundle, out, ignore=shutil.ignore_patterns("bench"))
    labels = [prefix + name for name in (out / "labels.txt").read_text().split()]
    (out / "labels.txt").write_text("\n".join(labels) + "\n")
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    manifest["labels"] = labels
    (out / MANIFEST_FILE).write_text(json.dumps(manifest))
    return out


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
    return out
