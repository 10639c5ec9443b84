"""The SoC's temperature, as Linux reports it: one reader for the benchmarks' thermal report and
the device's monitoring records. Standard library only.

``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius), from the zone whose ``type``
is ``cpu-thermal`` (the SoC on a Raspberry Pi), else the first zone that can be read. Where
there is none (some PCs, containers), the reading is None: nothing is estimated.
"""

from __future__ import annotations

from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")
"""Where Linux lists its thermal zones (each ``thermal_zoneN/`` with ``type`` and ``temp``)."""
SOC_ZONE_TYPE = "cpu-thermal"
"""The zone type of the SoC on Raspberry Pi OS; without one, the first zone is read."""


def soc_temperature(root: Path | None = None) -> dict | None:
    """The SoC temperature now: ``{"celsius", "zone", "type"}``, None without a readable zone.

    Args:
        root: the thermal sysfs folder (default :data:`THERMAL_ROOT`; tests pass a fake one).
    """
    root = THERMAL_ROOT if root is None else Path(root)
    try:
        zones = sorted(root.glob("thermal_zone*"),
                       key=lambda p: int(p.name[12:]) if p.name[12:].isdigit() else 1 << 30)
    except OSError:
        return None
    readings = []
    for zone in zones:
        try:
            kind = (zone / "type").read_text(encoding="utf-8", errors="replace").strip()
            celsius = int((zone / "temp").read_text(encoding="utf-8").strip()) / 1000
        except (OSError, ValueError):  # a zone that cannot be read now (some report EINVAL)
            continue
        readings.append({"celsius": round(celsius, 1), "zone": zone.name, "type": kind})
    for reading in readings:
        if reading["type"] == SOC_ZONE_TYPE:
            return reading
    return readings[0] if readings else None
