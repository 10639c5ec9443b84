"""``edge-bench PROBE_DIR``: how fast untrained candidate models run on this machine.

A probe is what ``edge-tune probe`` writes on the workstation and the device bench times on the
board: a folder holding ``probe.json`` and one int8 ``.tflite`` per candidate (backbone × width
× input size, random weights, converted as export converts). Random weights cost what trained
ones cost, so the latencies measured here are the latencies a trained candidate will have.
Unlike a bundle, the candidates take inputs of different sizes and have no labels, no Keras
model and no evaluation set: only speed, size and memory are measured, on random pixels of each
candidate's own size. TensorFlow-free, like the rest of the device bench.

``probe.json`` (``format_version`` 1)::

    {"format_version": 1, "kind": "probe", "classes": N,
     "candidates": [{"name", "file", "backbone", "alpha", "img_size", "bytes", "sha256",
                     "input_dtype"}, ...],
     "skipped": [{"backbone", "alpha", "img_size", "reason"}, ...], "created", "versions"}

``PROBE_DIR/bench/report.json`` holds one row per candidate: ``model`` (its name),
``backbone``, ``alpha``, ``img_size``, ``size_bytes``, ``latency_ms`` (p50/p90/p99/mean),
``peak_rss_mb`` and the timing details of a bundle's rows; accuracy is not measured (null).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bundle_reader import open_classifier
from benchmarks.config import BenchConfig, BenchError, BenchResult, validate
from benchmarks.machine import describe, load_average, machine_info
from benchmarks.memory import measure_each
from benchmarks.report import build_rows
from benchmarks.runners import TFLiteRunner
from benchmarks.thermal import describe_thermal, snapshot, summarize
from benchmarks.timing import ModelResult, TimingPlan, time_interleaved
from common.figures import missing
from common.fileio import sha256, write_json, write_text
from common.rundir import BENCH_DIR
from edge_runtime.interpreter import available_cores

log = logging.getLogger(__name__)

PROBE_FILE = "probe.json"
PROBE_FORMAT_VERSION = 1
PROBE_KIND = "probe"
PROBE_IMAGES = 8
"""Random pictures per candidate that the timed inferences cycle through."""
PLOT = "latency.png"


def is_probe(path: Path) -> bool:
    """Whether ``path`` is a probe folder (it holds probe.json)."""
    return (path / PROBE_FILE).is_file()


def candidate_name(backbone: str, alpha: float, img_size: int) -> str:
    """``mobilenet_v2-a0.35-96``: a candidate's name, its file's stem and its row's model."""
    return f"{backbone}-a{float(alpha):g}-{int(img_size)}"


def _field(data: Mapping, key: str, kind, where: str):
    value = data.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise BenchError(f"{where}: '{key}' is {value!r}, not {getattr(kind, '__name__', kind)}")
    return value


@dataclass(frozen=True)
class ProbeCandidate:
    """One untrained candidate model of a probe."""

    backbone: str
    alpha: float
    img_size: int
    file: str
    """The ``.tflite`` file's name inside the probe folder."""
    bytes: int = 0
    sha256: str | None = None
    input_dtype: str = "uint8"

    @property
    def name(self) -> str:
        return candidate_name(self.backbone, self.alpha, self.img_size)

    def to_json(self) -> dict:
        return {"name": self.name, "file": self.file, "backbone": self.backbone,
                "alpha": self.alpha, "img_size": self.img_size, "bytes": self.bytes,
                "sha256": self.sha256, "input_dtype": self.input_dtype}

    @classmethod
    def from_json(cls, data: Any, where: str) -> ProbeCandidate:
        if not isinstance(data, Mapping):
            raise BenchError(f"{where}: a candidate is {data!r}, not an object")
        name = _field(data, "file", str, where)
        if name in ("", ".", "..") or "/" in name or "\\" in name:
            raise BenchError(f"{where}: 'file' is {name!r}, not a file name in the probe")
        return cls(backbone=_field(data, "backbone", str, where),
                   alpha=float(_field(data, "alpha", (int, float), where)),
                   img_size=_field(data, "img_size", int, where), file=name,
                   bytes=int(data.get("bytes") or 0), sha256=data.get("sha256"),
                   input_dtype=str(data.get("input_dtype") or "uint8"))


@dataclass(frozen=True)
class Probe:
    """The whole of ``probe.json``."""

    candidates: tuple[ProbeCandidate, ...]
    classes: int
    skipped: tuple[dict, ...] = ()
    """Combinations asked for that could not be built, each with its ``reason``."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"format_version": PROBE_FORMAT_VERSION, "kind": PROBE_KIND,
                "classes": self.classes,
                "candidates": [c.to_json() for c in self.candidates],
                "skipped": list(self.skipped), **self.extra}

    def save(self, folder: Path) -> Path:
        """Write ``folder/probe.json`` atomically (last: the probe is complete once it does)."""
        return write_json(folder / PROBE_FILE, self.to_json())

    @classmethod
    def load(cls, folder: Path) -> Probe:
        """Read and check ``folder/probe.json``.

        Raises:
            BenchError: missing, unreadable, of a newer format, or malformed.
        """
        path = folder / PROBE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BenchError(f"{path} does not exist (write a probe with edge-tune probe)") \
                from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BenchError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, Mapping) or data.get("kind") != PROBE_KIND:
            raise BenchError(f"{path}: not a probe (expected \"kind\": \"{PROBE_KIND}\")")
        version = data.get("format_version", 1)
        if not isinstance(version, int) or version > PROBE_FORMAT_VERSION:
            raise BenchError(f"{path}: format_version {version!r} is newer than this "
                             f"edge-toolchain reads ({PROBE_FORMAT_VERSION}); upgrade it")
        raw = data.get("candidates")
        if not isinstance(raw, list) or not raw:
            raise BenchError(f"{path}: lists no candidates; write the probe again")
        candidates = tuple(ProbeCandidate.from_json(c, str(path)) for c in raw)
        known = {"format_version", "kind", "classes", "candidates", "skipped"}
        return cls(candidates=candidates, classes=int(data.get("classes") or 0),
                   skipped=tuple(data.get("skipped") or ()),
                   extra={k: v for k, v in data.items() if k not in known})


def load_probe(folder: Path) -> Probe:
    """The probe, after checking that every candidate file is there and intact (sha256).

    Raises:
        BenchError: a broken probe.json, a missing or altered candidate file.
    """
    probe = Probe.load(folder)
    remedy = "copy the probe folder again, or write it again with edge-tune probe"
    for candidate in probe.candidates:
        path = folder / candidate.file
        if not path.is_file():
            raise BenchError(f"candidate {candidate.name}: {path} is missing; {remedy}")
        if candidate.sha256 and sha256(path) != candidate.sha256:
            raise BenchError(f"candidate {candidate.name}: {path} does not match probe.json "
                             f"(sha256); {remedy}")
    return probe


class _OwnPixels:
    """A candidate's runner fed by index: each candidate cycles through random pictures of its
    own input size, since the candidates of one probe take different sizes."""

    def __init__(self, runner: TFLiteRunner, pixels: np.ndarray) -> None:
        self.runner, self.pixels = runner, pixels

    def prepare(self, index) -> None:
        self.runner.prepare(self.pixels[int(index) % len(self.pixels)])

    def run(self) -> None:
        self.runner.run()

    def output(self) -> np.ndarray:
        return self.runner.output()


def _open(folder: Path, probe: Probe, threads: int, backend: str | None, seed: int = 0):
    runners: dict[str, _OwnPixels] = {}
    results: dict[str, ModelResult] = {}
    used = None
    rng = np.random.default_rng(seed)
    for candidate in probe.candidates:
        path = folder / candidate.file
        classifier = open_classifier(path, f"candidate {candidate.name}", threads, backend)
        used = used or classifier.backend
        pixels = rng.integers(0, 256, (PROBE_IMAGES, *classifier.input_size, 3), np.uint8)
        runners[candidate.name] = _OwnPixels(TFLiteRunner(classifier), pixels)
        results[candidate.name] = ModelResult(
            candidate.name, "tflite", candidate.file, path.stat().st_size,
            accuracy=None, agreement=None,
            details={"backbone": candidate.backbone, "alpha": candidate.alpha,
                     "img_size": candidate.img_size,
                     "input_dtype": classifier.input_dtype.name,
                     "backend": classifier.backend})
    return runners, results, used


def format_probe_table(report: dict) -> str:
    """The Markdown table of a probe's report.md (also printed by ``edge-bench``)."""
    header = ("candidate", "backbone", "alpha", "input px", "size MB", "p50 ms", "p90 ms",
              "p99 ms", "peak RSS MB")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in sorted(report["rows"], key=lambda r: r["latency_ms"]["p50"]):
        lat = row["latency_ms"]
        rss = "n/a" if row["peak_rss_mb"] is None else f"{row['peak_rss_mb']:.0f}"
        lines.append("| " + " | ".join((
            row["model"], row["backbone"], f"{row['alpha']:g}", str(row["img_size"]),
            f"{row['size_bytes'] / 1e6:.2f}", f"{lat['p50']:.2f}", f"{lat['p90']:.2f}",
            f"{lat['p99']:.2f}", rss)) + " |")
    return "\n".join(lines)


def format_probe_markdown(report: dict) -> str:
    s = report["settings"]
    lines = [f"# Device probe of {report['probe']}", "", describe(report["machine"]), "",
             *(f"{line}\n" for line in describe_thermal(report["machine"].get("thermal"))),
             f"Untrained candidates (random weights, int8 as exported): latency is "
             f"`Classifier.invoke()` alone on random pixels of each one's input size, "
             f"{s['warmup']} warm-up then {s['runs']} timed single-image inferences each, "
             f"interleaved in {s['repeats']} repeats. Accuracy is not measured here: "
             "`edge-tune search --device` reads this report.", "",
             format_probe_table(report), ""]
    if report.get("skipped"):
        lines += ["Not probed:", *(f"- {candidate_name(s['backbone'], s['alpha'], s['img_size'])}"
                                   f": {s['reason']}" for s in report["skipped"]), ""]
    return "\n".join(lines)


def bench_probe(config: BenchConfig) -> BenchResult:
    """Time every candidate of the probe ``config.path``; write ``PROBE_DIR/bench/``.

    Writes report.json, report.md and (where matplotlib imports) latency.png, each atomically.

    Raises:
        BenchError: bad settings, a broken probe.
    """
    validate(config)
    if config.export_first:
        raise BenchError("--export needs a run directory; a probe holds no Keras model")
    folder = Path(config.path)
    probe = load_probe(folder)
    threads = config.threads or available_cores()
    load_at_start = load_average()
    heat_at_start = snapshot()
    runners, results, backend = _open(folder, probe, threads, config.backend)
    log.info("timing %d candidate(s) of %s, %d thread(s), backend %s", len(runners), folder,
             threads, backend)
    if config.memory:
        measure_each(results, lambda _, result: ("tflite", folder / result.file), threads,
                     backend, config.progress)
    indices = np.arange(PROBE_IMAGES)
    time_interleaved(runners, indices, results,
                     TimingPlan(config.runs, config.warmup, config.repeats), config.progress)
    thermal = summarize(heat_at_start, snapshot())
    rows = build_rows(results, config.repeats)
    for row in rows:  # speed ratios against an arbitrary first candidate would mislead
        row.update(compared_with=None, speedup=None, noisy=None)
    report = {
        "probe": str(folder), "kind": PROBE_KIND, "classes": probe.classes,
        "machine": machine_info(threads, backend or "none", load_at_start, thermal=thermal),
        "settings": {"runs": config.runs, "warmup": config.warmup, "repeats": config.repeats,
                     "threads": threads, "memory": config.memory},
        "rows": rows, "skipped": list(probe.skipped),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = folder / BENCH_DIR
    write_json(out / "report.json", report)
    write_text(out / "report.md", format_probe_markdown(report))
    problem = missing()  # matplotlib is not in the [edge] extra
    if problem:
        log.info("no plot: %s", problem)
        (out / PLOT).unlink(missing_ok=True)
    else:
        from benchmarks.plots import plot_latency

        plot_latency(rows, out / PLOT)
    return BenchResult(out=out, report=report)
