"""Reading what the device measured: a probe's ``bench/report.json`` (see
:mod:`benchmarks.probe_bench`), as the latency of each candidate."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from benchmarks.probe_bench import PROBE_KIND, candidate_name
from common.errors import UserError

HINT = "expected the report.json that edge-bench PROBE_DIR writes into PROBE_DIR/bench/"


@dataclass(frozen=True)
class Measured:
    """One candidate's row of the device report."""

    backbone: str
    alpha: float
    img_size: int
    p50_ms: float
    p90_ms: float | None = None
    size_bytes: int | None = None
    peak_rss_mb: float | None = None

    @property
    def name(self) -> str:
        return candidate_name(self.backbone, self.alpha, self.img_size)

    def to_json(self) -> dict:
        return {"backbone": self.backbone, "alpha": self.alpha, "img_size": self.img_size,
                "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "size_bytes": self.size_bytes,
                "peak_rss_mb": self.peak_rss_mb}


@dataclass(frozen=True)
class DeviceReport:
    """The candidates measured and the machine they were measured on."""

    path: str
    machine: str
    """One line naming the board or CPU, from the report's ``machine``."""
    candidates: tuple[Measured, ...]


def _machine_line(machine: Mapping) -> str:
    parts = [machine.get("board") or machine.get("cpu") or "unknown machine"]
    if machine.get("threads"):
        parts.append(f"{machine['threads']} thread(s)")
    if machine.get("backend"):
        parts.append(f"backend {machine['backend']}")
    return ", ".join(str(p) for p in parts)


def read_device_report(path: str | Path) -> DeviceReport:
    """The candidates' measured latencies from a probe's bench report.

    Raises:
        UserError: a missing or unreadable file, or one that is not a probe's bench report.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--device {path} does not exist ({HINT})") from None
    except IsADirectoryError:
        raise UserError(f"--device {path} is a folder ({HINT})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"--device {path}: not valid JSON ({exc})") from None
    if not isinstance(data, Mapping) or data.get("kind") != PROBE_KIND \
            or not isinstance(data.get("rows"), list):
        raise UserError(f"--device {path}: not a probe's bench report ({HINT}; a bundle's "
                        "report measures trained models, not candidates)")
    candidates = []
    for row in data["rows"]:
        try:
            latency = row["latency_ms"]
            candidates.append(Measured(
                backbone=str(row["backbone"]), alpha=float(row["alpha"]),
                img_size=int(row["img_size"]), p50_ms=float(latency["p50"]),
                p90_ms=latency.get("p90"), size_bytes=row.get("size_bytes"),
                peak_rss_mb=row.get("peak_rss_mb")))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise UserError(f"--device {path}: a row lacks backbone, alpha, img_size or "
                            f"latency_ms.p50 ({HINT})") from None
    if not candidates:
        raise UserError(f"--device {path}: the report holds no candidate")
    machine = data.get("machine") if isinstance(data.get("machine"), Mapping) else {}
    return DeviceReport(str(path), _machine_line(machine), tuple(candidates))
