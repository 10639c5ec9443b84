"""The ``python -m`` entry points are on the commands' plumbing (common/command.py): ``--help``
exits 0, a bad flag is one line and exit code 2, never a traceback."""

from __future__ import annotations

import importlib

import pytest

ENTRY_POINTS = ["benchmarks.calibration_study", "benchmarks.camera_loop",
                "benchmarks.feature_cache", "benchmarks.memprobe", "tests.tiny_bundle", "train.splits",
                "tune.e2e"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_and_a_bad_flag(module, capsys):
    main = importlib.import_module(module).main
    assert main(["--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: python -m {module}")
    assert main(["--no-such-flag"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: " in err and "--help" in err, err


def test_camera_loop_names_what_it_expects(capsys):
    # its own int type once printed "invalid _positive_int value"
    from benchmarks.camera_loop import main

    assert main(["--model", "m", "--video", "v", "--frames", "0"]) == 2
    assert "argument --frames: 0 is not a positive integer" in capsys.readouterr().err


def test_a_missing_splits_file_is_one_line_and_exit_2(tmp_path, capsys):
    from train.splits import main

    assert main([str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable splits.json" in err


def test_memprobe_reports_a_model_it_cannot_load_in_one_line(tmp_path, capsys):
    from benchmarks.memprobe import main

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model")
    assert main(["--kind", "tflite", "--model", str(junk)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured
