"""The device side of edge-tune: ``edge-bench PROBE_DIR`` times every candidate of a probe,
TensorFlow-free, into one report row each (what ``edge-tune search --device`` reads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main as bench_main
from benchmarks.probe_bench import PROBE_FILE, Probe, ProbeCandidate
from common.fileio import sha256

ROOT = Path(__file__).resolve().parents[1]


def probe_from_bundle(bundle: Path, folder: Path) -> Path:
    """A probe of two candidates made of the bundle's fp32 and int8 models (any .tflite of an
    image classifier will do: the device bench never needs TensorFlow to make them)."""
    folder.mkdir()
    candidates = []
    for alpha, variant in ((1.0, "fp32"), (0.35, "int8")):
        name = f"mobilenet_v2-a{alpha:g}-64.tflite"
        shutil.copyfile(bundle / f"model_{variant}.tflite", folder / name)
        candidates.append(ProbeCandidate("mobilenet_v2", alpha, 64, name,
                                         bytes=(folder / name).stat().st_size,
                                         sha256=sha256(folder / name)))
    Probe(candidates=tuple(candidates), classes=3,
          skipped=({"backbone": "mobilenet_v3_small", "alpha": 0.35, "img_size": 16,
                    "reason": "16 px: too small"},)).save(folder)
    return folder


@pytest.mark.edge
def test_edge_bench_times_each_candidate_of_a_probe_without_tensorflow(bundle, tmp_path):
    probe = probe_from_bundle(bundle, tmp_path / "probe")
    script = ("import sys; from benchmarks.cli import main; "
              f"code = main([{str(probe)!r}, '--runs', '6', '--repeats', '2', '--warmup', '1', "
              "'--no-progress']); "
              "assert 'tensorflow' not in sys.modules, 'the probe bench imported TensorFlow'; "
              "sys.exit(code)")
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((probe / "bench" / "report.json").read_text())
    assert report["kind"] == "probe"
    rows = {r["model"]: r for r in report["rows"]}
    assert set(rows) == {"mobilenet_v2-a1-64", "mobilenet_v2-a0.35-64"}
    for row in rows.values():
        assert row["img_size"] == 64 and row["backbone"] == "mobilenet_v2"
        assert 0 < row["latency_ms"]["p50"] <= row["latency_ms"]["p99"]
        assert row["runs"] == 6
        assert row["peak_rss_mb"] > 0  # a fresh process per candidate
        assert row["accuracy"] is None  # random weights: nothing to measure
    assert rows["mobilenet_v2-a0.35-64"]["input_dtype"] == "uint8"
    assert "mobilenet_v3_small-a0.35-16: 16 px: too small" in \
        (probe / "bench" / "report.md").read_text()


@pytest.mark.edge
def test_edge_bench_refuses_a_probe_with_an_altered_candidate(bundle, tmp_path, capsys):
    probe = probe_from_bundle(bundle, tmp_path / "probe")
    with open(probe / "mobilenet_v2-a1-64.tflite", "ab") as f:
        f.write(b"\0")
    code = bench_main([str(probe), "--runs", "2", "--repeats", "1", "--no-memory",
                       "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "does not match probe.json" in err
    assert not (probe / "bench").exists()


@pytest.mark.edge
def test_a_probe_json_of_a_newer_format_says_to_upgrade(tmp_path, capsys):
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / PROBE_FILE).write_text(json.dumps({"format_version": 99, "kind": "probe",
                                                "candidates": []}))
    assert bench_main([str(probe), "--no-progress"]) == 2
    assert "upgrade" in capsys.readouterr().err
