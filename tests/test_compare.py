"""edge-compare: the same images through two models, McNemar's verdict, the exit code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import compare_cli
from benchmarks.compare import VERDICTS, tally
from common.labels import labels_text, read_labels
from tests.bundle_variants import rehash


def test_tally_counts_the_images_only_one_side_got_right():
    images = [(Path(f"{i}.jpg"), "cat" if i < 3 else "dog") for i in range(6)]
    a = ["cat", "cat", "dog", "dog", "cat", None]
    b = ["cat", "dog", "cat", "dog", "dog", "dog"]
    per_class, a_only, b_only, a_right, b_right = tally(images, a, b)
    assert per_class == {"cat": {"images": 3, "a": 2 / 3, "b": 2 / 3},
                         "dog": {"images": 2, "a": 0.5, "b": 1.0}}  # 5.jpg: A could not read it
    assert a_only == ["1.jpg"] and b_only == ["2.jpg", "4.jpg"]
    assert (a_right, b_right) == (3, 4)


def test_every_difference_kind_has_a_verdict():
    assert set(VERDICTS.values()) == {"better", "same", "worse"}


def _swapped_bundle(bundle: Path, tmp_path: Path) -> Path:
    """A copy of the bundle whose labels.txt is rotated: the same network, wrong on nearly
    every image (the Classifier reads labels.txt beside the model first); its manifest binds
    the new labels.txt, as export would have."""
    copy = tmp_path / "swapped" / "export"
    shutil.copytree(bundle, copy)
    labels = read_labels(copy / "labels.txt")
    (copy / "labels.txt").write_text(labels_text(labels[1:] + labels[:1]))
    return rehash(copy)


def test_the_same_bundle_is_the_same(exported_run, tmp_path, capsys):
    bundle = exported_run / "export"
    code = compare_cli.main([str(bundle), str(bundle), "--out", str(tmp_path / "r")])
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["verdict"] == "same" and report["mcnemar_p"] == 1.0
    assert report["a_only_correct"] == report["b_only_correct"] == []
    # the default images: the run's test split, none it trained or validated on
    test = json.loads((exported_run / "splits.json").read_text())["test"]
    assert report["images"] == len(test)
    assert (tmp_path / "r" / "report.md").read_text().count("the same within noise") == 1
    assert (tmp_path / "r" / "per_class.png").stat().st_size > 0


def test_a_worse_candidate_exits_1_and_a_better_one_0(exported_run, demo_dir, tmp_path):
    good = exported_run / "export"
    bad = _swapped_bundle(good, tmp_path)
    # a copied bundle has no run around it: --data gives the images
    assert compare_cli.main([str(good), str(bad), "--data", str(demo_dir),
                             "--out", str(tmp_path / "w")]) == 1
    worse = json.loads((tmp_path / "w" / "report.json").read_text())
    assert worse["verdict"] == "worse" and worse["mcnemar_p"] < 0.05
    assert len(worse["a_only_correct"]) > len(worse["b_only_correct"])
    assert compare_cli.main([str(bad), str(good), "--data", str(demo_dir),
                             "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "report.json").read_text())["verdict"] == "better"


def test_a_run_against_its_own_bundle(exported_run, tmp_path):
    """A run side goes through Keras, a bundle side through the edge runtime: same images."""
    code = compare_cli.main([str(exported_run), str(exported_run / "export"), "--variant",
                             "fp32", "--out", str(tmp_path / "r")])
    assert code == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["a"]["kind"] == "run" and report["b"]["variant"] == "fp32"
    assert report["verdict"] == "same"


@pytest.mark.parametrize("argv, message", [
    (["{bundle}", "{nowhere}"], "does not exist"),
    (["{bundle}", "{bundle}", "--variant", "int4"], "has no variant 'int4'"),
    (["{copied}", "{copied}"], "give --data DIR"),
])
def test_bad_input_is_one_line_and_exit_2(exported_run, tmp_path, capsys, argv, message):
    copied = tmp_path / "copied"
    shutil.copytree(exported_run / "export", copied)
    names = {"bundle": exported_run / "export", "nowhere": tmp_path / "nowhere",
             "copied": copied}
    code = compare_cli.main([a.format(**names) for a in argv] + ["--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err, err
