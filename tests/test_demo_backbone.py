"""The demo's pre-trained backbone (train/demo_backbone.py): shapes the demo never shows, a
shipped file its record describes, and the command that remakes it."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from common.fileio import sha256
from train import demo_backbone
from train import model as model_lib
from train.demo_data import (
    CLASSES,
    DEMO_TRAIN_SETTINGS,
    PRETRAIN_CLASSES,
    draw_example,
    write_demo_dataset,
)


def test_the_pretraining_shapes_are_none_of_the_demos_and_each_is_drawn():
    assert not set(PRETRAIN_CLASSES) & set(CLASSES)
    for kind in PRETRAIN_CLASSES:
        picture = np.asarray(draw_example(kind, np.random.default_rng(0)), dtype=np.float64)
        assert picture.shape == (128, 128, 3)
    # two shapes drawn with the same randomness differ only where the shapes do
    ring, circle = (np.asarray(draw_example(k, np.random.default_rng(3)), np.float64)
                    for k in ("ring", "circle"))
    assert 0.05 < np.mean(np.abs(ring - circle).max(axis=2) > 60) < 0.5


def test_threads_drawing_classes_side_by_side_write_the_files_one_thread_writes(tmp_path):
    one, three = (write_demo_dataset(tmp_path / name, per_class=3, size=48, workers=workers,
                                     classes=("heart", "ring", "star"))
                  for name, workers in (("one", 1), ("three", 3)))
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert len(files) == 9 and files == sorted(p.relative_to(three) for p in three.rglob("*")
                                               if p.is_file())
    assert all((one / f).read_bytes() == (three / f).read_bytes() for f in files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "three"]  # no leftovers


def test_the_shipped_backbone_is_what_its_record_says_and_the_demo_starts_from_it():
    record = json.loads(demo_backbone.RECORD.read_text())
    assert record["sha256"] == sha256(demo_backbone.WEIGHTS)
    assert record["classes"] == list(PRETRAIN_CLASSES) and record["val_accuracy"] >= 0.8
    assert DEMO_TRAIN_SETTINGS["weights"] == str(demo_backbone.WEIGHTS)
    settings = {k: DEMO_TRAIN_SETTINGS[k] for k in ("backbone", "alpha", "img_size")}
    assert {k: record["settings"][k] for k in settings} == settings
    model = model_lib.build_model(len(CLASSES), weights=DEMO_TRAIN_SETTINGS["weights"], **settings)
    fresh = model_lib.build_model(len(CLASSES), weights="none", **settings)
    loaded, random = (model_lib.backbone_of(m).get_weights() for m in (model, fresh))
    assert len(loaded) == len(random) and not model_lib.backbone_of(model).trainable
    assert sum(not np.allclose(a, b) for a, b in zip(loaded, random, strict=True)) > len(loaded) // 2


@pytest.mark.long
def test_pretrain_writes_a_backbone_and_its_record_in_place(tmp_path, capsys):
    out = tmp_path / "small.weights.h5"
    assert demo_backbone.main(["--out", str(out), "--per-class", "4", "--img-size", "32",
                               "--epochs", "1"]) == 0
    record = json.loads((tmp_path / "demo_backbone.json").read_text())
    assert record["sha256"] == sha256(out) and record["per_class"] == 4
    assert record["settings"]["img_size"] == 32 and record["settings"]["epochs"] == 1
    assert f"wrote {out}: val accuracy {record['val_accuracy']:.3f}" in capsys.readouterr().out
    model = model_lib.build_model(2, img_size=32, weights=str(out), backbone="mobilenet_v3_small")
    assert isinstance(model, keras.Model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo_backbone.json", out.name]
