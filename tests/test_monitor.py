"""edge-classify --monitor: one JSON-lines record a minute in the data root (class counts, mean
top-1, uncertain share, fps, SoC temperature, model version), capped by rotation; and the SoC
temperature reader it shares with the benchmarks."""

from __future__ import annotations

import json

import pytest

from common.fileio import sha256
from common.thermal import soc_temperature
from edge_runtime.capture import data_root
from edge_runtime.classifier import Prediction
from edge_runtime.commands import classify as cli
from edge_runtime.stream.monitor import Monitor
from tests.helpers import demo_images, write_video

FIELDS = {"time", "model_version", "frames", "fps", "class_counts", "mean_top1",
          "uncertain_share", "soc_temp_c", "seconds"}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _p(label: str, top: float) -> list[Prediction]:
    return [Prediction(label, 0, top), Prediction("other", 1, 1.0 - top)]


def records(root) -> list[dict]:
    return [json.loads(line) for line in
            (root / data_root.MONITOR_FILE).read_text(encoding="utf-8").splitlines()]


@pytest.mark.edge
def test_a_record_a_minute_and_one_per_model(tmp_path):
    clock = Clock()
    monitor = Monitor(tmp_path, "v1", clock=clock,
                      temperature=lambda: {"celsius": 51.5, "zone": "thermal_zone0",
                                           "type": "cpu-thermal"})
    for top in (0.9, 0.8, 0.3):  # the last uncertain (below 0.5)
        clock.now += 10
        monitor.add(_p("cat", top), 5.0)
    clock.now += 31  # past the minute: this frame ends it
    monitor.add(_p("dog", 0.7), 5.0)
    clock.now += 5
    monitor.add(_p("dog", 0.9), 5.0)
    monitor.model_changed("v2")  # the minute so far is the old version's
    clock.now += 5
    monitor.add(_p("cat", 0.6), 5.0)
    monitor.close()
    first, second, third = records(tmp_path)
    assert set(first) == FIELDS and first["model_version"] == "v1"
    assert first["frames"] == 4 and first["class_counts"] == {"cat": 3, "dog": 1}
    assert first["mean_top1"] == pytest.approx((0.9 + 0.8 + 0.3 + 0.7) / 4, abs=1e-4)
    assert first["uncertain_share"] == 0.25 and first["soc_temp_c"] == 51.5
    assert first["seconds"] == 61 and first["fps"] == pytest.approx(4 / 61, abs=1e-3)
    assert (second["model_version"], second["frames"]) == ("v1", 1)
    assert (third["model_version"], third["class_counts"]) == ("v2", {"cat": 1})
    assert monitor.written == 3


@pytest.mark.edge
def test_the_records_are_capped(tmp_path, monkeypatch):
    monkeypatch.setattr(data_root, "MONITOR_MAX_BYTES", 600)
    clock = Clock()
    monitor = Monitor(tmp_path, "v1", every_s=1.0, clock=clock, temperature=lambda: None)
    for _ in range(30):
        clock.now += 1
        monitor.add(_p("cat", 0.9), 5.0)
    monitor.close()
    files = sorted(p.name for p in (tmp_path / "monitor").iterdir())
    assert files == ["monitor.1.jsonl", "monitor.jsonl"]
    assert all((tmp_path / "monitor" / f).stat().st_size <= 600 for f in files)
    assert monitor.written == 30 and records(tmp_path)[-1]["soc_temp_c"] is None


@pytest.mark.edge
def test_soc_temperature_prefers_the_cpu_zone(tmp_path):
    for number, kind, milli in ((0, "acpitz", "40000"), (1, "cpu-thermal", "61234"),
                                (2, "broken", "x")):
        zone = tmp_path / f"thermal_zone{number}"
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(milli + "\n")
    assert soc_temperature(tmp_path) == {"celsius": 61.2, "zone": "thermal_zone1",
                                         "type": "cpu-thermal"}
    assert soc_temperature(tmp_path / "none") is None


def test_monitor_on_a_video(bundle, demo_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data_root.ENVIRONMENT, str(tmp_path / "data"))
    video = write_video(tmp_path / "clip.avi", demo_images(demo_dir), frames=30)
    model = bundle / "model_int8.tflite"
    code = cli.main(["--model", str(model), "--camera", str(video), "--headless", "--monitor"])
    assert code == 0, capsys.readouterr().err
    [record] = records(tmp_path / "data")  # the run was shorter than a minute: its last record
    assert set(record) == FIELDS and record["frames"] == 30
    assert sum(record["class_counts"].values()) == 30
    assert record["model_version"] == sha256(model)[:12]
