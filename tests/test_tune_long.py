"""edge-tune for real on tiny sizes: a probe of three untrained candidates, timed by the device
bench, then a search that trains the two within the budget (1 epoch each) and the winner.
Long: it converts three models and trains three."""

from __future__ import annotations

import json

import pytest

from benchmarks.cli import main as bench_main
from common.rundir import check_run
from tune.cli import main as tune_main

pytestmark = pytest.mark.long


def test_probe_bench_search_end_to_end(demo_dir, tmp_path):
    probe = tmp_path / "probe"
    assert tune_main(["probe", str(probe), "--backbones", "mobilenet_v2,mobilenet_v3_small",
                      "--alphas", "0.35", "--sizes", "32,96,8", "--classes", "5",
                      "--no-progress"]) == 0
    listed = json.loads((probe / "probe.json").read_text())
    assert len(listed["candidates"]) == 4
    assert {(s["img_size"]) for s in listed["skipped"]} == {8}  # too small for edge-train

    assert bench_main([str(probe), "--runs", "20", "--repeats", "2", "--warmup", "2",
                       "--no-memory", "--no-progress"]) == 0
    rows = json.loads((probe / "bench" / "report.json").read_text())["rows"]
    assert len(rows) == 4
    # a budget between the two 32 px candidates and the 96 px ones: only the 32 px ones fit
    fast = sorted(r["latency_ms"]["p50"] for r in rows if r["img_size"] == 32)
    slow = sorted(r["latency_ms"]["p50"] for r in rows if r["img_size"] == 96)
    assert fast[-1] < slow[0], (fast, slow)
    budget = (fast[-1] + slow[0]) / 2

    out = tmp_path / "runs" / "tuned"
    assert tune_main(["search", "--data", str(demo_dir), "--device",
                      str(probe / "bench" / "report.json"), "--budget-ms", f"{budget:.4f}",
                      "--out", str(out), "--weights", "none", "--epochs", "1",
                      "--fine-tune-epochs", "0", "--batch-size", "16", "--finalists", "2",
                      "--calibration-samples", "8", "--no-progress"]) == 0
    check_run(out)  # an ordinary run directory, ready for edge-export
    report = json.loads((out / "tune" / "report.json").read_text())
    by_size = {c["name"]: c for c in report["candidates"]}
    for candidate in by_size.values():
        trained = candidate["val_accuracy"] is not None
        assert trained == (candidate["img_size"] == 32), candidate  # never over the budget
    assert report["chosen"]["p50_ms"] <= budget
    chosen = by_size[report["chosen"]["name"]]
    assert chosen["val_accuracy"] == max(c["val_accuracy"] for c in by_size.values()
                                         if c["val_accuracy"] is not None)
    config = json.loads((out / "config.json").read_text())
    assert (config["backbone"], config["alpha"], config["img_size"]) == \
        (chosen["backbone"], chosen["alpha"], chosen["img_size"])
    assert (out / "tune" / "pareto.png").stat().st_size > 0
    assert not (tmp_path / "runs" / "tuned.tune").exists()
