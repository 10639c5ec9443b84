"""edge-train --init-from: the parent's network, its head rows kept by class name, new classes
appended, a gone class refused unless allowed, the parent recorded; per-class counts said."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.errors import UserError
from common.labels import read_labels
from train import cli as train_cli
from train.init_from import class_mapping


def test_class_mapping_keeps_rows_by_name_and_appends_new_ones():
    mapping = class_mapping(["cat", "dog", "fox"], ["ant", "cat", "dog", "fox"], False)
    assert mapping == {"kept": [(1, 0), (2, 1), (3, 2)], "new": [0], "dropped": []}


def test_a_gone_class_is_refused_unless_allowed():
    with pytest.raises(UserError, match="the parent knows fox.*--allow-dropped-classes"):
        class_mapping(["cat", "dog", "fox"], ["cat", "dog"], False)
    assert class_mapping(["cat", "dog", "fox"], ["cat", "dog"], True)["dropped"] == ["fox"]


def _with_new_class(demo_dir: Path, tmp_path: Path, drop: str | None = None) -> Path:
    """The demo data plus a class 'zz_new' (copies of the first class's pictures, flipped)."""
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    first = sorted(p for p in data.iterdir() if p.is_dir())[0]
    (data / "zz_new").mkdir()
    for path in sorted(first.iterdir())[:12]:
        Image.open(path).transpose(Image.Transpose.ROTATE_90).save(data / "zz_new" / path.name)
    if drop:
        shutil.rmtree(data / drop)
    return data


def test_model_from_parent_keeps_the_old_rows(tiny_run, demo_dir, tmp_path):
    from train.init_from import model_from_parent
    from train.saved_run import load_run

    parent, _, labels = load_run(tiny_run)
    classes = sorted([*labels, "aa_new"])  # the new class comes first: every old row moves
    model, record = model_from_parent(tiny_run, classes, False, seed=1)
    old_kernel, old_bias = parent.get_layer("predictions").get_weights()
    kernel, bias = model.get_layer("predictions").get_weights()
    assert kernel.shape == (old_kernel.shape[0], len(labels) + 1)
    for i, name in enumerate(labels):
        np.testing.assert_array_equal(kernel[:, classes.index(name)], old_kernel[:, i])
        assert bias[classes.index(name)] == old_bias[i]
    assert record["new"] == ["aa_new"] and record["kept"] == labels
    # the backbone is the parent's own
    np.testing.assert_array_equal(model.get_layer("preprocess").output.shape,
                                  parent.get_layer("preprocess").output.shape)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights()[:-2],
                                                    parent.get_weights()[:-2]))


def test_bad_parent_is_one_line_exit_2(tmp_path, capsys):
    code = train_cli.main(["--data", "demo", "--out", str(tmp_path / "r"),
                           "--init-from", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "does not exist" in err, err


def test_a_dropped_class_is_refused_before_training(tiny_run, demo_dir, tmp_path, capsys):
    gone = sorted(p.name for p in demo_dir.iterdir() if p.is_dir())[-1]
    data = _with_new_class(demo_dir, tmp_path, drop=gone)
    code = train_cli.main(["--data", str(data), "--out", str(tmp_path / "r"),
                           "--init-from", str(tiny_run), "--epochs", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert f"the parent knows {gone}" in err[-1] and "--allow-dropped-classes" in err[-1]
    assert not (tmp_path / "r" / "model.keras").exists()


@pytest.mark.long
def test_init_from_trains_a_child_that_records_its_parent(tiny_run, demo_dir, tmp_path, capsys):
    data = _with_new_class(demo_dir, tmp_path)
    (data / "tiny_class").mkdir()  # 4 pictures: trained on, but not silently
    for path in sorted((data / "zz_new").iterdir())[:4]:
        shutil.copy(path, data / "tiny_class" / path.name)
    out = tmp_path / "child"
    code = train_cli.main(["--data", str(data), "--out", str(out), "--init-from",
                           str(tiny_run), "--epochs", "2", "--fine-tune-epochs", "0",
                           "--batch-size", "16", "--val-split", "0.25", "--test-split", "0.25"])
    said = capsys.readouterr()
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    parent = json.loads((tiny_run / "config.json").read_text())
    assert config["init_from"] == str(tiny_run)
    assert config["parent"]["new"] == ["tiny_class", "zz_new"]
    assert config["parent"]["dropped"] == []
    # the network is the parent's: its size and width, not edge-train's defaults
    assert (config["img_size"], config["alpha"]) == (parent["img_size"], parent["alpha"])
    assert "tiny_class 4 (2/1/1)" in said.out
    assert "fewer than 10 images: tiny_class (4)" in said.err
    assert read_labels(out / "labels.txt") == config["classes"]
