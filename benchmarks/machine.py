"""What machine a benchmark ran on: CPU, board, cores, load, library versions, GPUs.

TensorFlow-free: its version, thread pool and GPUs are recorded only when the benchmark has
already loaded it (the workstation bench), never imported here — the device bench runs where
it is not installed.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import numpy as np

from common.versions import toolchain_version
from edge_runtime.interpreter import available_backends, available_cores

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")
"""Where Linux on a Raspberry Pi (and other device-tree boards) names the board."""


ARM_CORES = {
    "0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4f": "Neoverse-V2",
}
"""Arm Ltd. core part numbers (``CPU part`` in /proc/cpuinfo, implementer 0x41): a Raspberry
Pi 3 is Cortex-A53, a Pi 4 Cortex-A72, a Pi 5 Cortex-A76 — what int8 speed depends on."""


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's name: x86 ``model name``; on 64-bit ARM, where the kernel gives no name, the
    cores from their part numbers (e.g. ``4× Cortex-A72 (aarch64)``)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    parts: list[str] = []
    implementer = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        if key in ("model name", "hardware", "cpu model") and value:
            return value
        if key == "cpu implementer":
            implementer = value.lower()
        elif key == "cpu part" and implementer == "0x41":
            parts.append(ARM_CORES.get(value.lower(), f"Arm part {value}"))
    if parts:
        counts = {name: parts.count(name) for name in dict.fromkeys(parts)}
        cores = " + ".join(f"{n}× {name}" for name, n in counts.items())
        return f"{cores} ({platform.machine()})"
    return platform.processor() or platform.machine() or "unknown"


def board(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board's name, e.g. ``Raspberry Pi 4 Model B Rev 1.4``; None where there is none."""
    try:
        name = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    # the device tree stores a NUL-terminated string
    return name.strip("\x00\n ") or None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (how busy the machine was), None where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def gpu_names() -> list[str]:
    """The GPUs TensorFlow sees, by their marketing names; [] when TensorFlow is not loaded."""
    tf = sys.modules.get("tensorflow")
    if tf is None or not hasattr(tf, "config"):
        return []
    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:  # details are best effort; the device name still says which GPU
            details = {}
        names.append(str(details.get("device_name") or gpu.name))
    return names


def machine_info(threads: int, backend: str, load: list[float] | None,
                 tensorflow_threads: int | None = None, thermal: dict | None = None) -> dict:
    """The machine, library and backend versions and thread settings, for the report.

    ``tensorflow``, ``keras``, ``tensorflow_threads`` and ``gpus`` are filled only when
    TensorFlow is already loaded (None and [] otherwise); ``thermal`` is
    :func:`benchmarks.thermal.summarize` of the readings before and after the measurement.
    """
    tf = sys.modules.get("tensorflow")
    keras = sys.modules.get("keras")
    return {
        "cpu": cpu_model(),
        "board": board(),
        "cores": os.cpu_count(),
        "usable_cores": available_cores(),
        "os": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "edge_toolchain": toolchain_version(),
        "tensorflow": getattr(tf, "__version__", None),
        "keras": getattr(keras, "__version__", None),
        "gpus": gpu_names(),
        "backends": available_backends(),
        "backend": backend,
        "threads": threads,
        "tensorflow_threads": tensorflow_threads,
        "load_average": load,
        "thermal": thermal,
    }


def describe(machine: dict) -> str:
    """One sentence of report.md naming the machine and the settings the timings depend on."""
    where = f"{machine['board']}, " if machine.get("board") else ""
    backends = ", ".join(f"{k} {v}" for k, v in machine["backends"].items())
    text = (f"Machine: {where}{machine['cpu']} ({machine['cores']} cores, "
            f"{machine['usable_cores']} usable), {machine['os']}, Python {machine['python']}, "
            f"numpy {machine['numpy']}, edge-toolchain {machine.get('edge_toolchain', '?')}")
    if machine.get("tensorflow"):
        gpus = ", ".join(machine["gpus"]) or "none"
        text += (f"; TensorFlow {machine['tensorflow']}, Keras {machine['keras']} "
                 f"(intra-op threads: {machine['tensorflow_threads']}; GPUs: {gpus})")
    return (f"{text}; {backends}; TFLite backend used: {machine['backend']}; threads: "
            f"{machine['threads']}; load average at start: {machine['load_average']}.")
