"""The int8 calibration study (benchmarks/calibration_study.py): sizes, rows, report files."""

from __future__ import annotations

import json

import pytest

from benchmarks.calibration_study import OUT, main, study_sizes
from export.ranges import SETTLED_WIDENING


def test_sizes_double_below_the_train_split_then_take_all_of_it():
    assert study_sizes(70) == [25, 50, 70]
    assert study_sizes(1050) == [25, 50, 100, 200, 400, 800, 1050]
    assert study_sizes(25) == [25]


@pytest.mark.long  # two int8 exports of its own (about 45 s): make test stays under 10 minutes
def test_the_study_measures_int8_on_val_for_each_size(run_copy, capsys):
    assert main([str(run_copy), "--sizes", "10,70", "--no-progress"]) == 0
    study = json.loads((run_copy / OUT / "report.json").read_text())
    rows = study["rows"]
    assert [r["calibration_images"] for r in rows] == [10, 70]
    val = len(json.loads((run_copy / "splits.json").read_text())["val"])
    assert study["val_images"] == val
    for row in rows:
        assert 0 <= row["val_accuracy"] <= 1 and 0 <= row["agreement"] <= 1
        # the paired counts are the drop, image by image, on the validation split
        assert row["drop_points"] == \
            round(100 * (row["keras_only_correct"] - row["int8_only_correct"]) / val, 2)
        assert 0 <= row["widening"] <= 1 and row["settled"] == (row["widening"] < SETTLED_WIDENING)
    assert rows[0]["keras_val_accuracy"] == rows[1]["keras_val_accuracy"]
    table = (run_copy / OUT / "report.md").read_text()
    assert table.count("\n| 10 |") == 1 and table.count("\n| 70 |") == 1
    assert (run_copy / OUT / "curve.png").stat().st_size > 0
    assert "report: " in capsys.readouterr().out


def test_a_missing_run_is_one_line_exit_2(tmp_path, capsys):
    assert main([str(tmp_path / "nothing"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing" in err
