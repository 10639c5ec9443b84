"""Was the machine hot or throttled while it was timed? The SoC temperature and throttle flags.

A Raspberry Pi 4 lowers its clock at 80 °C (a Pi 3B+ already at 60 °C, its soft limit), and
any Pi does when its power supply sags: timings taken then are slower than the board can be.
Both benchmarks read the temperature and the firmware's throttle flags before and after the
measurement and say so in the report. TensorFlow-free, standard library only.

- The temperature: ``/sys/class/thermal/thermal_zone*/temp`` (millidegrees Celsius), from the
  zone whose ``type`` is ``cpu-thermal`` (the SoC on a Pi), else the first zone
  (:func:`common.thermal.soc_temperature`, the one reader).
- The flags: ``vcgencmd get_throttled`` (Raspberry Pi firmware), a hex bit field; bits 0–3
  are "now", bits 16–19 the same conditions "has occurred since boot" (:data:`FLAGS`).

Where neither exists (most PCs have no ``vcgencmd``, some no thermal zones) the report says
"not available"; nothing is estimated.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

# the reader is common's (the device's monitor reads it too); THERMAL_ROOT is looked up here at
# each snapshot, so a test pointing this module's at a fake sysfs reaches every reading
from common.thermal import THERMAL_ROOT, soc_temperature

VCGENCMD = "vcgencmd"
"""The Raspberry Pi firmware's command, looked up on PATH when the flags are read."""
VCGENCMD_TIMEOUT_S = 5.0

FLAGS = (("under_voltage", "under-voltage"), ("arm_capped", "arm frequency capped"),
         ("throttled", "throttled"), ("soft_temp_limit", "soft temperature limit"))
"""``get_throttled`` bit i (now) and bit 16 + i (since boot): key and words, in bit order."""
SINCE_BOOT_SHIFT = 16

THROTTLE_C = 80.0
"""Where a Raspberry Pi 4 starts lowering its clock; without ``vcgencmd`` to confirm, a run
ending at or above it is flagged as throttled."""


def parse_throttled(text: str) -> dict | None:
    """``throttled=0x50005`` → ``{"value": "0x50005", "now": [...], "since_boot": [...]}``,
    the lists holding the :data:`FLAGS` keys that are set; None when the text is not that."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", text)
    if match is None:
        return None
    bits = int(match.group(1), 16)
    return {"value": hex(bits),
            "now": [key for i, (key, _) in enumerate(FLAGS) if bits >> i & 1],
            "since_boot": [key for i, (key, _) in enumerate(FLAGS)
                           if bits >> (SINCE_BOOT_SHIFT + i) & 1]}


def throttle_flags(command: str | None = None) -> dict | None:
    """The firmware's throttle flags now (:func:`parse_throttled`), None where ``vcgencmd`` is
    not on PATH or does not answer (not a Raspberry Pi, no access to the firmware).

    Args:
        command: the program to run with ``get_throttled`` (default :data:`VCGENCMD` on PATH).
    """
    program = shutil.which(command or VCGENCMD)
    if program is None:
        return None
    try:
        done = subprocess.run([program, "get_throttled"], capture_output=True, text=True,
                              timeout=VCGENCMD_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_throttled(done.stdout) if done.returncode == 0 else None


def snapshot(root: Path | None = None, command: str | None = None) -> dict:
    """The temperature and the throttle flags now: ``{"temperature", "throttled"}``, each
    None where this machine cannot say."""
    return {"temperature": soc_temperature(THERMAL_ROOT if root is None else root),
            "throttled": throttle_flags(command)}


def _words(keys) -> str:
    names = dict(FLAGS)
    return ", ".join(names[key] for key in keys)


def summarize(before: dict, after: dict) -> dict:
    """``machine.thermal`` of report.json: both snapshots and whether the run was throttled.

    ``throttled`` is True when ``vcgencmd`` reported throttling, a capped clock or a soft
    temperature limit at either end, any flag newly set "since boot" between the two (it
    happened during the run), or under-voltage at any time since boot (the power supply
    sags under load); without ``vcgencmd``, when the run ended at or above
    :data:`THROTTLE_C`. False when ``vcgencmd`` saw none of that; None when nothing could
    be read. ``reason`` says which, in words.
    """
    flags = [s["throttled"] for s in (before, after) if s["throttled"] is not None]
    end = after["temperature"] or before["temperature"]
    reasons = []
    if flags:
        now = [key for key, _ in FLAGS if any(key in f["now"] for f in flags)]
        during = []
        if before["throttled"] and after["throttled"]:
            during = [key for key in after["throttled"]["since_boot"]
                      if key not in before["throttled"]["since_boot"] and key not in now]
        if now:
            reasons.append(f"{_words(now)} at {'the start or end' if len(flags) > 1 else 'one end'}"
                           " of the run")
        if during:
            reasons.append(f"{_words(during)} during the run")
        if "under_voltage" in flags[-1]["since_boot"] and "under_voltage" not in now + during:
            reasons.append("under-voltage since boot (the power supply sags under load)")
        throttled = bool(reasons)
    elif end is not None and end["celsius"] >= THROTTLE_C:
        reasons.append(f"the SoC ended the run at {end['celsius']:.1f} °C, at or above the "
                       f"{THROTTLE_C:.0f} °C where a Raspberry Pi 4 lowers its clock (no "
                       "vcgencmd here to confirm)")
        throttled = True
    else:
        throttled = None
    return {"before": before, "after": after, "throttled": throttled,
            "reason": "; ".join(reasons) or None}


def describe_thermal(thermal: dict | None) -> list[str]:
    """report.md's lines about heat: one stating what was read, and a ⚠ warning when the run
    was throttled. ``thermal`` is None in a report from before they were recorded."""
    if thermal is None:
        return []
    before, after = thermal["before"], thermal["after"]
    if before["temperature"] and after["temperature"]:
        t0, t1 = before["temperature"], after["temperature"]
        temperature = (f"SoC temperature ({t1['type']}, {t1['zone']}): {t0['celsius']:.1f} °C "
                       f"before, {t1['celsius']:.1f} °C after")
    else:
        temperature = (f"SoC temperature: not available (no readable "
                       f"{THERMAL_ROOT}/thermal_zone*/temp)")
    if before["throttled"] and after["throttled"]:
        flags = (f"`vcgencmd get_throttled`: {before['throttled']['value']} before, "
                 f"{after['throttled']['value']} after")
    else:
        flags = ("throttling flags: not available (no answer from `vcgencmd get_throttled`: "
                 "not a Raspberry Pi, or no access to its firmware)")
    verdict = {True: "throttled", False: "not throttled", None: "throttling unknown"}
    lines = [f"Thermal: {temperature}; {flags}: {verdict[thermal['throttled']]}."]
    if thermal["throttled"]:
        lines.append(throttle_warning(thermal))
    return lines


def throttle_warning(thermal: dict) -> str:
    """The one-line ⚠ that report.md and the command print when the run was throttled."""
    return (f"⚠ throttled: {thermal['reason']}. The timings are pessimistic: the CPU ran below "
            "its full clock for part of the run. Cool the board (heatsink, fan) and use a "
            "power supply that holds its voltage, let it cool down, and rerun.")
