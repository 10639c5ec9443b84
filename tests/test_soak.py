"""The soak benchmark's fit (benchmarks/soak.py): a leak is told from a flat run."""

from __future__ import annotations

import pytest

from benchmarks.soak import fit, main, slope_per_hour

pytestmark = pytest.mark.edge


def samples(rss_per_s: float, fds_every_s: float | None = None) -> list[dict]:
    return [{"t": float(t), "rss_mb": 80.0 + rss_per_s * t + (0.3 if t % 20 else 0.0),
             "fds": 12 + (int(t // fds_every_s) if fds_every_s else 0), "threads": 9}
            for t in range(0, 600, 5)]


def test_a_flat_run_is_flat_and_a_leak_is_not():
    assert slope_per_hour([0.0, 1.0, 2.0], [0.0, 1.0, 2.0]) == pytest.approx(3600.0)
    flat = fit(samples(0.0), warmup_s=60)
    assert flat["verdict"] == "flat" and flat["fitted_from_s"] == 60
    assert abs(flat["rss_mb"]["slope_per_hour"]) < 1.0 and flat["fds"]["slope_per_hour"] == 0
    leaking = fit(samples(10 / 3600), warmup_s=60)  # 10 MB an hour
    assert leaking["verdict"] == "growing"
    assert leaking["rss_mb"]["slope_per_hour"] == pytest.approx(10, rel=0.05)
    fds = fit(samples(0.0, fds_every_s=60), warmup_s=60)  # a descriptor a minute
    assert fds["verdict"] == "growing" and fds["fds"]["slope_per_hour"] == pytest.approx(60, 0.1)
    # a short run keeps two thirds of its samples whatever the warm-up asked
    assert fit(samples(0.0)[:30], warmup_s=600)["fitted_from_s"] == pytest.approx(145 / 3, abs=0.1)


def test_usage_errors_are_one_line(tmp_path, capsys):
    assert main(["--model", str(tmp_path / "none.tflite"), "--minutes", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "no such file" in err and len(err.strip().splitlines()) == 1
    assert main(["--model", "m.tflite", "--minutes", "0"]) == 2
