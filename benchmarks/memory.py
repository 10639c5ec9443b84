"""Peak memory and load time of each model, measured by :mod:`benchmarks.memprobe` in a fresh
process, so one model's figure carries neither the other models nor the benchmark's own imports.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from benchmarks.timing import ModelResult
from common.progress import progress_bar

MEMPROBE_TIMEOUT_S = 600

log = logging.getLogger(__name__)


def measure_memory(kind: str, model_path: Path, threads: int, backend: str | None) -> dict:
    """Run :mod:`benchmarks.memprobe` for one model in a fresh process; {} if it fails.

    ``kind`` is one of :data:`benchmarks.memprobe.KINDS`. Returns the probe's
    ``peak_rss_mb``, ``baseline_rss_mb``, ``load_seconds`` and ``first_inference_ms``; a failed
    probe is one warning, and the report shows n/a for that model.
    """
    command = [sys.executable, "-m", "benchmarks.memprobe", "--kind", kind,
               "--model", str(model_path), "--threads", str(threads)]
    if backend:
        command += ["--backend", backend]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # the package must import in the child even when it is not installed
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=MEMPROBE_TIMEOUT_S)
        if done.returncode == 0:
            return json.loads(done.stdout.strip().splitlines()[-1])
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
    except (subprocess.TimeoutExpired, OSError, ValueError, IndexError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    log.warning("memory probe of %s (%s) failed: %s", model_path.name, kind, reason)
    return {}


def measure_each(results: dict[str, ModelResult],
                 locate: Callable[[str, ModelResult], tuple[str, Path]], threads: int,
                 backend: str | None, progress: bool = True) -> None:
    """:func:`measure_memory` for every model, one process each, into ``result.memory``;
    ``locate(name, result)`` gives the model's kind and file."""
    with progress_bar(len(results), "memory probes (one process each)", progress) as bar:
        for name, result in results.items():
            kind, path = locate(name, result)
            result.memory = measure_memory(kind, path, threads, backend)
            bar.update()
