"""The settings of one ``edge-bench`` run and their checks, shared by both benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError


class BenchError(UserError):
    """The run or bundle cannot be benchmarked as asked (exit code 2)."""


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one ``edge-bench`` run."""

    path: str
    """A run directory (``edge-train`` + ``edge-export``) or a bundle (an ``export/`` folder)."""
    runs: int = 100
    """Timed single-image inferences per model, split across the repeats."""
    warmup: int = 10
    """Untimed inferences per model before timing (the first ones allocate and fill caches)."""
    threads: int | None = None
    """CPU threads for TFLite and TensorFlow alike (default: every core this process may use)."""
    repeats: int = 5
    """Interleaved rounds; the spread of their medians shows how noisy the machine was."""
    export_first: bool = False
    """Run ``edge-export`` (default formats) on the run before benchmarking (runs only)."""
    memory: bool = True
    """Measure peak RSS and load time in a fresh subprocess per model."""
    progress: bool = True
    """Show progress bars on stderr (only on a terminal, and only where tqdm is installed)."""
    backend: str | None = None
    """Force a TFLite interpreter backend (default: the first that works)."""


def validate(config: BenchConfig) -> None:
    """Refuse settings that cannot give a report, before any slow work.

    Raises:
        BenchError: naming the flag and what it must be.
    """
    checks = [
        (config.repeats >= 1, f"--repeats {config.repeats}: must be at least 1"),
        (config.runs >= config.repeats,
         f"--runs {config.runs}: must be at least --repeats ({config.repeats}), "
         "one timed run per model per repeat"),
        (config.warmup >= 0, f"--warmup {config.warmup}: must be ≥ 0"),
        (config.threads is None or config.threads >= 1,
         f"--threads {config.threads}: must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise BenchError(message)


@dataclass
class BenchResult:
    """A finished benchmark: the folder it wrote (``bench/``) and the report (report.json)."""

    out: Path
    report: dict
