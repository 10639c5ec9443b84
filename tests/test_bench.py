"""edge-bench: the report's contract, the noise flag, and one-line errors for unusable runs."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from benchmarks.cli import main
from benchmarks.report import build_rows, verdict, verdicts
from benchmarks.timing import ModelResult, chunk_sizes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def benched(exported_run, tmp_path_factory):
    """A copy of the exported tiny run after one short ``edge-bench``, and what it printed.

    It runs on a fake Raspberry Pi that reaches its soft temperature limit during the run
    (a thermal zone in a folder, a ``vcgencmd`` on PATH: see tests/test_thermal.py)."""
    from benchmarks import thermal
    from tests.test_thermal import fake_sysfs, fake_vcgencmd

    run = tmp_path_factory.mktemp("bench") / "tiny"
    shutil.copytree(exported_run, run)
    fake = tmp_path_factory.mktemp("pi")
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch, contextlib.redirect_stdout(out):
        monkeypatch.setattr(thermal, "THERMAL_ROOT",
                            fake_sysfs(fake / "sys", [("cpu-thermal", "79000")]))
        fake_vcgencmd(fake / "bin", monkeypatch, "0x0", "0x80008")
        code = main([str(run), "--runs", "6", "--repeats", "2", "--warmup", "2",
                     "--no-progress"])
    return run, code, out.getvalue()


def test_report_json_has_every_contract_key_with_sane_values(benched):
    run, code, _ = benched
    assert code == 0
    report = json.loads((run / "bench" / "report.json").read_text(encoding="utf-8"))
    for key in ("cpu", "cores", "os", "python", "tensorflow", "keras", "backends", "backend",
                "threads", "tensorflow_threads"):
        assert report["machine"][key], key
    assert report["machine"]["gpus"] == []  # this CPU-only machine; a GPU would be named here
    assert report["eval"]["source"] == "split" and report["eval"]["images"] > 0
    rows = {row["model"]: row for row in report["rows"]}
    assert list(rows) == ["keras", "keras_compiled", "fp32", "fp16", "int8"]
    for name, row in rows.items():
        for key in ("accuracy", "agreement", "size_bytes", "latency_ms", "throughput_ips",
                    "peak_rss_mb", "load_seconds", "repeat_medians_ms", "spread_ms", "noisy"):
            assert key in row, (name, key)
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"], name
        assert lat["mean"] > 0 and row["throughput_ips"] > 0, name
        assert 0 <= row["accuracy"] <= 1 and 0 <= row["agreement"] <= 1, name
        assert row["size_bytes"] > 0 and row["peak_rss_mb"] > 0 and row["load_seconds"] >= 0
        assert row["runs"] == 6 and len(row["repeat_medians_ms"]) == 2
        spread = row["spread_ms"]
        assert spread["min"] <= spread["median"] <= spread["max"]
    assert rows["keras"]["agreement"] == 1.0
    assert rows["keras_compiled"]["accuracy"] == pytest.approx(rows["keras"]["accuracy"])
    manifest = json.loads((run / "export" / "manifest.json").read_text(encoding="utf-8"))
    for name, entry in manifest["variants"].items():
        assert rows[name]["size_bytes"] == entry["bytes"]
        assert rows[name]["accuracy"] == pytest.approx(entry["accuracy"])
        # measured alone in its own process: no TensorFlow in a TFLite model's footprint
        assert rows[name]["peak_rss_mb"] < rows["keras"]["peak_rss_mb"]
    assert rows["fp32"]["compared_with"] == "keras_compiled"
    assert rows["int8"]["compared_with"] == "fp32"


def test_report_md_has_table_verdicts_and_timing_notes(benched):
    run, _, printed = benched
    text = (run / "bench" / "report.md").read_text(encoding="utf-8")
    assert "| model |" in text and "keras_compiled" in text and "model.predict" in text
    for name in ("fp32", "fp16", "int8"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"- {name}: "))
        assert " pt accuracy, " in line and "× " in line and " than " in line
    assert "| int8 |" in printed and "int8: " in printed


def test_the_workstation_bench_flags_a_throttled_run_too(benched):
    run, _, printed = benched
    report = json.loads((run / "bench" / "report.json").read_text(encoding="utf-8"))
    heat = report["machine"]["thermal"]
    assert heat["before"]["temperature"]["celsius"] == 79.0
    assert heat["after"]["throttled"]["now"] == ["soft_temp_limit"]
    assert heat["throttled"] is True
    assert heat["reason"] == "soft temperature limit at the start or end of the run"
    text = (run / "bench" / "report.md").read_text(encoding="utf-8")
    warning = "⚠ throttled: soft temperature limit at the start or end of the run. The timings"
    assert warning in text and warning in printed
    # the workstation bench runs on the test split, which has no workstation answers to check
    assert "same as workstation" not in text
    assert all("workstation_agreement" not in row for row in report["rows"])


def test_plots_are_png_files(benched):
    run, _, _ = benched
    for name in ("latency.png", "accuracy_size.png"):
        data = (run / "bench" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000, name


def test_run_without_export_names_edge_export(tiny_run, capsys):
    assert main([str(tiny_run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"edge-export {tiny_run}" in err and "--export" in err
    assert not (tiny_run / "bench").exists()


def test_missing_run_directory_is_one_line(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err and "Traceback" not in err


def test_missing_variant_file_is_one_line(exported_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (run / "export" / "model_int8.tflite").unlink()
    assert main([str(run), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model_int8.tflite" in err


def test_fewer_runs_than_repeats_is_refused(tmp_path, capsys):
    assert main([str(tmp_path), "--runs", "3", "--repeats", "5"]) == 2
    assert "--runs 3" in capsys.readouterr().err


def test_chunks_cover_every_run():
    assert chunk_sizes(100, 5) == [20] * 5
    assert chunk_sizes(7, 3) == [3, 2, 2]


def _result(name: str, kind: str, medians: list[float], size: int = 1000,
            accuracy: float = 0.9) -> ModelResult:
    return ModelResult(name, kind, f"{name}.file", size, accuracy=accuracy, agreement=1.0,
                       latencies_ms=[m for m in medians for _ in range(3)],
                       repeat_medians_ms=medians, loop_seconds=1.0)


def test_difference_within_the_spread_is_flagged_noisy():
    results = {
        "keras": _result("keras", "keras", [50, 52, 51], size=4000),
        "keras_compiled": _result("keras_compiled", "keras", [10, 11, 10], size=4000),
        "fp32": _result("fp32", "tflite", [4.0, 6.0, 5.0]),
        "fp16": _result("fp16", "tflite", [4.8, 5.1, 4.9], size=500),  # 0.1 ms off, 2 ms spread
        "int8": _result("int8", "tflite", [2.0, 2.1, 2.0], size=250, accuracy=0.896),
    }
    rows = {r["model"]: r for r in build_rows(results, repeats=3)}
    assert rows["fp16"]["noisy"] is True
    assert rows["int8"]["noisy"] is False and rows["fp32"]["noisy"] is False
    assert rows["int8"]["speedup"] == pytest.approx(2.5)
    lines = verdicts(list(rows.values()))
    assert set(lines) == {"fp32", "fp16", "int8"}
    assert lines["int8"] == "int8: −0.4 pt accuracy, 4.0× smaller, 2.5× faster than fp32"
    assert "noisy" in lines["fp16"]
    assert build_rows(results, repeats=1)[3]["noisy"] is None


def test_verdict_near_one_keeps_two_decimals():
    base = {"model": "fp32", "accuracy": 0.5, "size_bytes": 100, "spread_ms": {}}
    row = {"model": "fp16", "accuracy": 0.5, "size_bytes": 50, "speedup": 0.97, "noisy": False}
    assert verdict(row, base) == ("fp16: +0.0 pt accuracy, 2.0× smaller, 1.03× slower "
                                  "than fp32")


def test_corrupt_variant_is_one_line(exported_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(exported_run, run)
    (run / "export" / "model_fp16.tflite").write_bytes(b"\0\0\0\0TFL3 but nothing after")
    assert main([str(run), "--no-progress", "--no-memory"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.splitlines()[-1].startswith("edge-bench: error: ")
    assert "fp16" in err.splitlines()[-1]


def test_compiled_keras_synchronises_only_when_asked(exported_run, monkeypatch):
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.runners import KerasCompiled

    model = keras.models.load_model(exported_run / "model.keras", compile=False)
    calls = []
    monkeypatch.setattr(tf.test.experimental, "sync_devices", lambda: calls.append(1))
    pixels = np.zeros((*model.input_shape[1:3], 3), np.uint8)
    assert KerasCompiled(model).synchronise is False  # no GPU here: nothing to wait for
    for synchronise, expected in ((False, 0), (True, 1)):
        calls.clear()
        runner = KerasCompiled(model, synchronise=synchronise)
        runner.prepare(pixels)
        runner.run()  # the clock stops when run() returns: a GPU must have finished by then
        assert len(calls) == expected
        assert runner.output().shape == (model.output_shape[-1],)
