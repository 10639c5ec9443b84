"""The bench's thermal readings: a fake hot Pi (sysfs zones in a folder, vcgencmd on PATH)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from benchmarks import thermal
from benchmarks.thermal import describe_thermal, snapshot, soc_temperature, summarize

pytestmark = pytest.mark.edge


def fake_sysfs(folder: Path, zones: list[tuple[str, str]]) -> Path:
    """``folder/thermal_zoneN/{type,temp}`` for each ``(type, millidegrees)``."""
    for n, (kind, milli) in enumerate(zones):
        zone = folder / f"thermal_zone{n}"
        zone.mkdir(parents=True)
        (zone / "type").write_text(f"{kind}\n", encoding="utf-8")
        (zone / "temp").write_text(f"{milli}\n", encoding="utf-8")
    return folder


def fake_vcgencmd(folder: Path, monkeypatch, *answers: str) -> Path:
    """A ``vcgencmd`` first on PATH printing ``throttled=<answer i>`` on its i-th call (the
    last answer again after that); returns its folder."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "answers").write_text("".join(f"throttled={a}\n" for a in answers),
                                    encoding="utf-8")
    script = folder / "vcgencmd"
    script.write_text(f"""#!/bin/sh
[ "$1" = get_throttled ] || exit 1
n=$(cat "{folder}/calls" 2>/dev/null || echo 0)
n=$((n + 1))
echo $n > "{folder}/calls"
line=$(sed -n "${{n}}p" "{folder}/answers")
[ -n "$line" ] || line=$(tail -n 1 "{folder}/answers")
echo "$line"
""", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


@pytest.fixture
def no_vcgencmd(tmp_path, monkeypatch):
    """A PATH on which no vcgencmd can be found (this test machine may be a Pi)."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_the_soc_zone_is_cpu_thermal_else_the_first(tmp_path):
    root = fake_sysfs(tmp_path / "a", [("acpitz", "45000"), ("cpu-thermal", "82345")])
    assert soc_temperature(root) == {"celsius": 82.3, "zone": "thermal_zone1",
                                     "type": "cpu-thermal"}
    root = fake_sysfs(tmp_path / "b", [("acpitz", "45000"), ("x86_pkg_temp", "61000")])
    assert soc_temperature(root)["zone"] == "thermal_zone0"
    # zones are numbered, not sorted as text: zone 2 comes before zone 10
    root = tmp_path / "c"
    for n, milli in ((10, "70000"), (2, "50000")):
        (root / f"thermal_zone{n}").mkdir(parents=True)
        (root / f"thermal_zone{n}" / "type").write_text("soc\n", encoding="utf-8")
        (root / f"thermal_zone{n}" / "temp").write_text(milli, encoding="utf-8")
    assert soc_temperature(root)["celsius"] == 50.0
    (root / "thermal_zone2" / "temp").write_text("", encoding="utf-8")  # unreadable: skipped
    assert soc_temperature(root)["celsius"] == 70.0


def test_a_hot_pi_is_flagged_from_its_throttle_bits(tmp_path, monkeypatch):
    root = fake_sysfs(tmp_path / "sys", [("cpu-thermal", "82345")])
    fake_vcgencmd(tmp_path / "bin", monkeypatch, "0x50005")
    before = snapshot(root)
    assert before["temperature"]["celsius"] == 82.3
    # bit 0 under-voltage now, bit 2 throttled now; bits 16 and 18: the same since boot
    assert before["throttled"] == {"value": "0x50005", "now": ["under_voltage", "throttled"],
                                   "since_boot": ["under_voltage", "throttled"]}
    summary = summarize(before, snapshot(root))
    assert summary["throttled"] is True
    assert "under-voltage, throttled at the start or end of the run" in summary["reason"]
    lines = describe_thermal(summary)
    assert lines[0] == ("Thermal: SoC temperature (cpu-thermal, thermal_zone0): 82.3 °C before, "
                        "82.3 °C after; `vcgencmd get_throttled`: 0x50005 before, 0x50005 "
                        "after: throttled.")
    assert lines[1].startswith("⚠ throttled: under-voltage, throttled") \
        and "timings are pessimistic" in lines[1]


def test_a_flag_set_during_the_run_is_flagged_one_set_before_is_not(tmp_path, monkeypatch):
    root = fake_sysfs(tmp_path / "sys", [("cpu-thermal", "61000")])
    # the soft temperature limit (bit 19) was reached between the two readings
    fake_vcgencmd(tmp_path / "during", monkeypatch, "0x0", "0x80000")
    summary = summarize(snapshot(root), snapshot(root))
    assert summary["throttled"] is True
    assert summary["reason"] == "soft temperature limit during the run"
    # capped once, before this run began (bit 17 already set), not now: not this run's doing
    fake_vcgencmd(tmp_path / "before", monkeypatch, "0x20000", "0x20000")
    summary = summarize(snapshot(root), snapshot(root))
    assert summary["throttled"] is False and summary["reason"] is None
    assert describe_thermal(summary) == [
        "Thermal: SoC temperature (cpu-thermal, thermal_zone0): 61.0 °C before, 61.0 °C "
        "after; `vcgencmd get_throttled`: 0x20000 before, 0x20000 after: not throttled."]
    # under-voltage at any time since boot: the supply sags under load, so it is flagged
    fake_vcgencmd(tmp_path / "uv", monkeypatch, "0x10000", "0x10000")
    summary = summarize(snapshot(root), snapshot(root))
    assert summary["throttled"] is True and "under-voltage since boot" in summary["reason"]


def test_without_zones_or_vcgencmd_nothing_is_invented(tmp_path, no_vcgencmd):
    before = snapshot(tmp_path / "no-such-sysfs")
    assert before == {"temperature": None, "throttled": None}
    summary = summarize(before, snapshot(tmp_path))
    assert summary["throttled"] is None and summary["reason"] is None
    assert describe_thermal(summary) == [
        "Thermal: SoC temperature: not available (no readable "
        "/sys/class/thermal/thermal_zone*/temp); throttling flags: not available (no answer "
        "from `vcgencmd get_throttled`: not a Raspberry Pi, or no access to its firmware): "
        "throttling unknown."]


def test_without_vcgencmd_a_run_ending_at_80_degrees_is_flagged(tmp_path, no_vcgencmd):
    cool = fake_sysfs(tmp_path / "cool", [("cpu-thermal", "79900")])
    hot = fake_sysfs(tmp_path / "hot", [("cpu-thermal", "80000")])
    assert summarize(snapshot(cool), snapshot(cool))["throttled"] is None
    summary = summarize(snapshot(cool), snapshot(hot))
    assert summary["throttled"] is True
    assert "80.0 °C" in summary["reason"] and "no vcgencmd here to confirm" in summary["reason"]
    assert "throttling flags: not available" in describe_thermal(summary)[0]


def test_a_failing_or_garbled_vcgencmd_counts_as_absent(tmp_path, monkeypatch):
    fake_vcgencmd(tmp_path / "bin", monkeypatch, "garbage")
    (tmp_path / "bin" / "answers").write_text("VCHI initialization failed\n", encoding="utf-8")
    assert snapshot(tmp_path)["throttled"] is None
    assert thermal.parse_throttled("throttled=0x0") == {"value": "0x0", "now": [],
                                                       "since_boot": []}
