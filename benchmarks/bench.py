"""Keras against every exported TFLite variant: accuracy, latency, size, load time and memory.

The TFLite side runs through :class:`edge_runtime.classifier.Classifier`,
the code that ships, and only ``invoke()`` is timed: quantizing the input
(``set_input``) and dequantizing the output happen outside the clock, as
does decoding the image. Every model gets the same preprocessed test-split
images.

Timing on a shared machine is noisy, so the models are interleaved: each
of ``repeats`` rounds gives every model a chunk of its timed runs, in a
rotated order, instead of timing one model after the other (where a burst
of load from elsewhere would land on one model only). The spread of the
per-round medians is reported, and a speed difference smaller than that
spread is flagged as noise.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import platform
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.errors import UserError
from edge_runtime.fileio import write_json, write_text
from edge_runtime.interpreter import BackendError, ModelError, available_backends
from export.table import signed

KERAS_ROWS = {
    "keras": "`model.predict(x[None], verbose=0)` on one image: how most scripts call Keras; "
             "includes predict()'s per-call set-up, so it is not a fair compute baseline",
    "keras_compiled": "`tf.function(lambda x: model(x, training=False))` on a ready tensor: "
                      "the fair Keras baseline",
}
"""The two ways the Keras model is timed, and what each row means (printed in report.md)."""

TFLITE_TIMING = ("`Classifier.invoke()` through edge_runtime (the code that ships); "
                 "set_input (quantization) and output (dequantization) are not timed")

REFERENCE = "fp32"
"""Variants are compared with this one; without it, with ``keras_compiled``."""

MEMPROBE_TIMEOUT_S = 600


class BenchError(UserError):
    """The run cannot be benchmarked as asked."""


@dataclass(frozen=True)
class BenchConfig:
    """Settings of one ``edge-bench`` run."""

    run: str
    """Run directory written by ``edge-train`` and ``edge-export``."""
    runs: int = 100
    """Timed single-image inferences per model, split across the repeats."""
    warmup: int = 10
    """Untimed inferences per model before timing (the first ones allocate and fill caches)."""
    threads: int | None = None
    """CPU threads for TFLite and TensorFlow alike (default: every core)."""
    repeats: int = 5
    """Interleaved rounds; the spread of their medians shows how noisy the machine was."""
    export_first: bool = False
    """Run ``edge-export`` (default formats) on the run before benchmarking."""
    memory: bool = True
    """Measure peak RSS and load time in a fresh subprocess per model."""
    progress: bool = True
    """Show progress bars on stderr (only on a terminal)."""


@dataclass
class ModelResult:
    """What was measured for one model (one row of the report)."""

    model: str
    kind: str
    file: str
    size_bytes: int
    accuracy: float = 0.0
    agreement: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    repeat_medians_ms: list[float] = field(default_factory=list)
    loop_seconds: float = 0.0
    memory: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)


@dataclass
class BenchResult:
    """The report written to ``run/bench/``: its folder and the JSON content."""

    out: Path
    report: dict


# --- the models, behind one interface -------------------------------------------------------

class _Runner(ABC):
    """One model behind the steps the benchmark times: only :meth:`run` is on the clock."""

    @abstractmethod
    def prepare(self, pixels: np.ndarray) -> None:
        """Hand one preprocessed image (H, W, 3) to the model (not timed)."""

    @abstractmethod
    def run(self) -> None:
        """One inference on the prepared image (timed)."""

    @abstractmethod
    def output(self) -> np.ndarray:
        """Probabilities of the last run, float32 (num_classes,) (not timed)."""

    def predict_all(self, images: np.ndarray, bar) -> np.ndarray:
        """Probabilities for every image, through the same steps that are timed."""
        probs = []
        for pixels in images:
            self.prepare(pixels)
            self.run()
            probs.append(self.output())
            bar.update()
        return np.stack(probs)


class _KerasPredict(_Runner):
    """``model.predict`` on one image, the way users call it."""

    def __init__(self, model) -> None:
        self.model = model

    def prepare(self, pixels: np.ndarray) -> None:
        self._batch = pixels[np.newaxis]

    def run(self) -> None:
        self._out = self.model.predict(self._batch, verbose=0)

    def output(self) -> np.ndarray:
        return np.asarray(self._out[0], np.float32)

    def predict_all(self, images: np.ndarray, bar) -> np.ndarray:
        # the same predict(), batched: one call per image costs ~0.1 s of overhead each,
        # minutes on a real test split, for the same probabilities
        probs = self.model.predict(images, batch_size=32, verbose=0)
        bar.update(len(images))
        return np.asarray(probs, np.float32)


class _KerasCompiled(_Runner):
    """A traced ``tf.function`` around the model: Keras without predict()'s per-call overhead."""

    def __init__(self, model) -> None:
        import tensorflow as tf

        self._tf = tf
        self._fn = tf.function(lambda x: model(x, training=False))

    def prepare(self, pixels: np.ndarray) -> None:
        # converting to a tensor is the analogue of TFLite's set_input: not timed
        self._tensor = self._tf.constant(pixels[np.newaxis])

    def run(self) -> None:
        # on CPU an eager call returns a computed tensor: nothing is left pending
        self._out = self._fn(self._tensor)

    def output(self) -> np.ndarray:
        return np.asarray(self._out.numpy()[0], np.float32)


class _TFLite(_Runner):
    """A variant through the edge runtime's Classifier."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier

    def prepare(self, pixels: np.ndarray) -> None:
        self.classifier.set_input(pixels)

    def run(self) -> None:
        self.classifier.invoke()

    def output(self) -> np.ndarray:
        return self.classifier.output()


# --- checks before any slow work --------------------------------------------------------------

def _validate(config: BenchConfig) -> None:
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


def check_run(run: Path, need_export: bool = True) -> None:
    """Fail fast, before TensorFlow is imported, on a run that cannot be benchmarked.

    Raises:
        BenchError: no run directory, no ``model.keras``, or (with
            ``need_export``) no ``export/manifest.json``.
    """
    if not run.is_dir():
        raise BenchError(f"run directory {run} does not exist")
    if not (run / "model.keras").is_file():
        raise BenchError(f"{run / 'model.keras'} is missing: is {run} a finished edge-train run?")
    if need_export and not (run / "export" / "manifest.json").is_file():
        raise BenchError(f"{run} has no export/manifest.json: run `edge-export {run}` first "
                         "(or pass --export)")


def read_manifest(run: Path) -> dict:
    """``run/export/manifest.json``, checked to list variant files that exist."""
    path = run / "export" / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BenchError(f"{path}: unreadable ({exc}); re-run `edge-export {run}`") from None
    variants = manifest.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise BenchError(f"{path} lists no variants; re-run `edge-export {run}`")
    for name, entry in variants.items():
        file = run / "export" / str(entry.get("file", ""))
        if not entry.get("file") or not file.is_file():
            raise BenchError(f"variant {name}: {file} is missing; re-run `edge-export {run}`")
    return manifest


def _warn_if_stale(run: Path, manifest: dict) -> None:
    from edge_runtime.fileio import sha256

    exported_from = manifest.get("source", {}).get("model_sha256")
    if exported_from and exported_from != sha256(run / "model.keras"):
        print(f"warning: {run / 'export'} was exported from a different model.keras; the "
              f"comparison is meaningless until you re-run `edge-export {run}`", file=sys.stderr)


# --- measuring ------------------------------------------------------------------------------

def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    # disable=None: bars only on a terminal, not in logs and CI output
    return tqdm(total=total, desc=desc, unit="inf", disable=None if enabled else True,
                leave=False, file=sys.stderr)


@contextlib.contextmanager
def _gc_paused():
    """No garbage collection inside a timed loop: its pauses would land on whichever model runs."""
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _set_tf_threads(threads: int) -> int:
    """Give TensorFlow the same thread count as TFLite; returns what TF actually uses."""
    from edge_runtime.quiet import quiet_output

    # TF logs its start-up (oneDNN, CUDA probing) whatever TF_CPP_MIN_LOG_LEVEL says
    with quiet_output():
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        except RuntimeError:
            # TF is already initialised (after --demo training in this process): it keeps its pool
            pass
        return tf.config.threading.get_intra_op_parallelism_threads() or (os.cpu_count() or 1)


def measure_memory(kind: str, model_path: Path, threads: int, backend: str | None) -> dict:
    """Run :mod:`benchmarks.memprobe` for one model in a fresh process; {} if it fails.

    Returns the probe's ``peak_rss_mb``, ``baseline_rss_mb``, ``load_seconds``
    and ``first_inference_ms``.
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
    print(f"warning: memory probe of {model_path.name} ({kind}) failed: {reason}",
          file=sys.stderr)
    return {}


def _timed_chunk(runner: _Runner, images: np.ndarray, start: int, count: int,
                 result: ModelResult) -> None:
    """``count`` timed inferences; latency is ``run()`` alone, the loop time is everything."""
    latencies = []
    began = time.perf_counter()
    for i in range(count):
        runner.prepare(images[(start + i) % len(images)])
        t0 = time.perf_counter()
        runner.run()
        latencies.append((time.perf_counter() - t0) * 1000)
        runner.output()
    result.loop_seconds += time.perf_counter() - began
    result.latencies_ms.extend(latencies)
    result.repeat_medians_ms.append(float(np.median(latencies)))


def chunk_sizes(runs: int, repeats: int) -> list[int]:
    """``runs`` split into ``repeats`` near-equal chunks (the larger ones first)."""
    return [runs // repeats + (1 if i < runs % repeats else 0) for i in range(repeats)]


def time_interleaved(runners: dict[str, _Runner], images: np.ndarray,
                     results: dict[str, ModelResult], config: BenchConfig) -> None:
    """Warm every model up, then time them round-robin over ``config.repeats`` rounds.

    Each round rotates the order so no model always runs right after the
    same neighbour, and gives each model one untimed inference first: the
    previous model has just evicted its weights from the CPU caches, which
    a device running one model never suffers.
    """
    names = list(runners)
    sizes = chunk_sizes(config.runs, config.repeats)
    total = len(names) * (config.warmup + config.repeats + config.runs)
    with _bar(total, "timing (interleaved)", config.progress) as bar:
        for name in names:
            runner = runners[name]
            for i in range(config.warmup):
                runner.prepare(images[i % len(images)])
                runner.run()
                runner.output()
            bar.update(config.warmup)
        start = 0
        for repeat, size in enumerate(sizes):
            order = names[repeat % len(names):] + names[:repeat % len(names)]
            for name in order:
                runner = runners[name]
                runner.prepare(images[start % len(images)])
                runner.run()
                with _gc_paused():
                    _timed_chunk(runner, images, start, size, results[name])
                bar.update(size + 1)
            start += size


# --- the report -----------------------------------------------------------------------------

def _median_of_medians(result: ModelResult) -> float:
    return float(np.median(result.repeat_medians_ms))


def _spread(result: ModelResult) -> float:
    return float(max(result.repeat_medians_ms) - min(result.repeat_medians_ms))


def reference_name(names: list[str]) -> str:
    """The row variants are compared with: fp32 when exported, else compiled Keras."""
    return REFERENCE if REFERENCE in names else "keras_compiled"


def compared_with(name: str, names: list[str]) -> str | None:
    """Which row ``name``'s speed is judged against.

    Variants against the reference (fp32); the reference against compiled
    Keras; predict() against compiled Keras (its per-call overhead);
    compiled Keras against the reference.
    """
    ref = reference_name(names)
    if name == ref:
        return "keras_compiled" if ref != "keras_compiled" else None
    if name == "keras":
        return "keras_compiled"
    return ref


def build_rows(results: dict[str, ModelResult], repeats: int) -> list[dict]:
    """The ``rows`` of report.json: contract keys plus spread and noise information.

    A row is ``noisy`` when the range of its (or its baseline's) per-repeat
    medians is wider than the speed difference it shows against that
    baseline: the difference could be the machine, not the model. With a
    single repeat there is no spread to judge by, and ``noisy`` is None.
    """
    names = list(results)
    rows = []
    for name, r in results.items():
        lat = np.asarray(r.latencies_ms)
        p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
        medians = r.repeat_medians_ms
        base_name = compared_with(name, names)
        speedup = noisy = None
        if base_name is not None:
            base = results[base_name]
            speedup = _median_of_medians(base) / _median_of_medians(r)
            if repeats >= 2:
                difference = abs(_median_of_medians(r) - _median_of_medians(base))
                noisy = max(_spread(r), _spread(base)) > difference
        rows.append({
            "model": name,
            "kind": r.kind,
            "file": r.file,
            "accuracy": r.accuracy,
            "agreement": r.agreement,
            "size_bytes": r.size_bytes,
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "mean": float(lat.mean()),
                           "min": float(lat.min()), "max": float(lat.max())},
            "throughput_ips": len(lat) / r.loop_seconds if r.loop_seconds else None,
            "peak_rss_mb": r.memory.get("peak_rss_mb"),
            "baseline_rss_mb": r.memory.get("baseline_rss_mb"),
            "load_seconds": r.memory.get("load_seconds"),
            "first_inference_ms": r.memory.get("first_inference_ms"),
            "runs": len(lat),
            "repeat_medians_ms": medians,
            "spread_ms": {"min": float(min(medians)), "median": float(np.median(medians)),
                          "max": float(max(medians))},
            "compared_with": base_name,
            "speedup": speedup,
            "noisy": noisy,
            **r.details,
        })
    return rows


def _ratio(value: float, above: str, below: str) -> str:
    """``1.7× faster`` or ``1.7× slower``; two decimals near 1, where ``1.0×`` says nothing."""
    word, factor = (above, value) if value >= 1 else (below, 1 / value)
    return f"{factor:.2f}× {word}" if factor < 1.1 else f"{factor:.1f}× {word}"


def verdict(row: dict, base: dict) -> str:
    """One line such as ``int8: −0.4 pt accuracy, 3.9× smaller, 1.7× faster than fp32``."""
    points = 100 * (row["accuracy"] - base["accuracy"])
    size_text = _ratio(base["size_bytes"] / row["size_bytes"], "smaller", "larger")
    speed_text = _ratio(row["speedup"], "faster", "slower")
    line = (f"{row['model']}: {signed(points)} pt accuracy, {size_text}, {speed_text} than "
            f"{base['model']}")
    if row["noisy"]:
        spread = max(s["spread_ms"]["max"] - s["spread_ms"]["min"] for s in (row, base))
        difference = abs(row["spread_ms"]["median"] - base["spread_ms"]["median"])
        line += (f" (noisy: repeat medians spread over {spread:.2f} ms, more than the "
                 f"{difference:.2f} ms difference; the speed ratio is not trustworthy)")
    return line


def verdicts(rows: list[dict]) -> dict[str, str]:
    """A verdict per exported variant: fp32 against compiled Keras, the others against fp32."""
    by_name = {r["model"]: r for r in rows}
    return {row["model"]: verdict(row, by_name[row["compared_with"]])
            for row in rows if row["kind"] == "tflite" and row["compared_with"]}


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.2f}"


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def format_table(report: dict) -> str:
    """The Markdown table of report.md, also printed at the end of ``edge-bench``."""
    header = ("model", "accuracy", "agreement", "size MB", "p50 ms", "p90 ms", "p99 ms",
              "mean ms", "repeat medians min/med/max ms", "img/s", "peak RSS MB", "load s")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in report["rows"]:
        lat, spread = row["latency_ms"], row["spread_ms"]
        flag = " ⚠ noisy" if row["noisy"] else ""
        cells = (row["model"], f"{row['accuracy']:.3f}", f"{row['agreement']:.3f}",
                 _mb(row["size_bytes"]), f"{lat['p50']:.2f}", f"{lat['p90']:.2f}",
                 f"{lat['p99']:.2f}", f"{lat['mean']:.2f}",
                 f"{spread['min']:.2f} / {spread['median']:.2f} / {spread['max']:.2f}{flag}",
                 _num(row["throughput_ips"], ".1f"), _num(row["peak_rss_mb"], ".0f"),
                 _num(row["load_seconds"], ".3f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The whole of report.md: context, table, what each row times, and the verdicts."""
    m, s, e = report["machine"], report["settings"], report["eval"]
    backends = ", ".join(f"{k} {v}" for k, v in m["backends"].items())
    lines = [
        f"# Benchmark of {report['run']}",
        "",
        f"Machine: {m['cpu']} ({m['cores']} cores), {m['os']}, Python {m['python']}; "
        f"TensorFlow {m['tensorflow']}, Keras {m['keras']}, numpy {m['numpy']}; {backends}; "
        f"TFLite backend used: {m['backend']}; threads: {m['threads']} "
        f"(TensorFlow intra-op: {m['tensorflow_threads']}); load average at start: "
        f"{m['load_average']}.",
        "",
        f"Data: {e['images']} images of the {e['split']} split. Timing: {s['warmup']} warm-up "
        f"then {s['runs']} timed single-image inferences per model, interleaved round-robin in "
        f"{s['repeats']} repeats. Latency percentiles pool every timed run; speed ratios and "
        "the noise check use the median of the per-repeat medians. Throughput is images/s at "
        "batch 1 over the whole loop (input set-up, inference, output). Peak RSS and load time "
        "come from a fresh process per model (TensorFlow's own footprint included for the Keras "
        "rows).",
        "",
        format_table(report),
        "",
        "What each row times:",
        *(f"- **{name}**: {text}" for name, text in KERAS_ROWS.items()),
        f"- **{', '.join(r['model'] for r in report['rows'] if r['kind'] == 'tflite')}**: "
        f"{TFLITE_TIMING}.",
        "",
        "## Verdicts",
        "",
        *(f"- {line}" for line in report["verdicts"].values()),
        "",
    ]
    noisy = [r["model"] for r in report["rows"] if r["noisy"]]
    if noisy:
        lines += [f"⚠ noisy: {', '.join(noisy)}: the machine's load varied more between repeats "
                  "than these models differ from the reference; rerun with more --runs/--repeats "
                  "on a quieter machine before trusting their speed ratios.", ""]
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model") and value.strip():
            return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _board() -> str | None:
    """The board name on a Raspberry Pi and similar (a device-tree model), else None."""
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (how busy the machine was), None where unknown."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info(threads: int, tf_threads: int, backend: str,
                 load: list[float] | None) -> dict:
    """The machine, library and backend versions and thread settings, for the report."""
    import keras
    import tensorflow as tf

    return {
        "cpu": _cpu_model(),
        "board": _board(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "backends": available_backends(),
        "backend": backend,
        "threads": threads,
        "tensorflow_threads": tf_threads,
        "load_average": load,
    }


# --- the whole benchmark ------------------------------------------------------------------------

def benchmark(config: BenchConfig, log=print) -> BenchResult:
    """Measure the run's Keras model and every exported variant; write ``run/bench/``.

    Writes report.json, report.md, latency.png and accuracy_size.png, each
    atomically. With ``config.export_first`` the run is exported first.

    Raises:
        BenchError: bad settings, a missing run, model, export or variant file.
        ExportError: the run cannot be loaded or exported.
    """
    _validate(config)
    run = Path(config.run)
    check_run(run, need_export=not config.export_first)
    threads = config.threads or os.cpu_count() or 1
    load_at_start = load_average()
    tf_threads = _set_tf_threads(threads)

    from common.rundir import load_run
    from edge_runtime.classifier import Classifier
    from edge_runtime.quiet import quiet_output
    from export.exporter import ExportConfig, export
    from export.images import load_images
    from export.progress import progress_bar

    if config.export_first:
        log(f"exporting {run} ...")
        exported = export(ExportConfig(run=str(run), threads=config.threads,
                                       progress=config.progress))
        if exported.failures:
            print(f"warning: {', '.join(exported.failures)} lost more accuracy than the export "
                  "allows; benchmarking anyway", file=sys.stderr)
    manifest = read_manifest(run)
    _warn_if_stale(run, manifest)
    model, splits, _labels = load_run(run)
    size = tuple(int(d) for d in model.input_shape[1:3])
    spec = manifest.get("input", {})
    if spec and (spec.get("height"), spec.get("width")) != size:
        raise BenchError(f"export/manifest.json says {spec.get('height')}x{spec.get('width')} "
                         f"input but model.keras takes {size[0]}x{size[1]}; re-run "
                         f"`edge-export {run}`")
    split = splits.eval_split()
    with progress_bar(len(splits.paths(split)), f"loading {split} images",
                      config.progress) as bar:
        images, kept = load_images(splits.paths(split), size, bar=bar)
    images = images.astype(np.float32)  # the runners' input type (export now streams uint8)
    if not len(images):
        raise BenchError(f"no readable image in the {split} split of {run}")
    truth = np.asarray(splits.labels[split])[kept]

    keras_file = run / "model.keras"
    runners: dict[str, _Runner] = {"keras": _KerasPredict(model),
                                   "keras_compiled": _KerasCompiled(model)}
    results = {name: ModelResult(name, "keras", keras_file.name, keras_file.stat().st_size)
               for name in runners}
    backend = None
    for name, entry in manifest["variants"].items():
        path = run / "export" / entry["file"]
        try:
            with quiet_output():  # the interpreter's "Created XNNPACK delegate" log line
                classifier = Classifier(path, labels_path=run / "export" / "labels.txt",
                                        threads=threads)
        except (ModelError, BackendError) as exc:
            raise BenchError(f"variant {name}: {exc}") from None
        backend = backend or classifier.backend
        runners[name] = _TFLite(classifier)
        results[name] = ModelResult(name, "tflite", entry["file"], path.stat().st_size,
                                    details={"input_dtype": classifier.input_dtype.name,
                                             "backend": classifier.backend})

    if config.memory:
        with _bar(len(runners), "memory probes (one process each)", config.progress) as bar:
            for name, result in results.items():
                kind = name if result.kind == "keras" else "tflite"
                path = keras_file if result.kind == "keras" else run / "export" / result.file
                result.memory = measure_memory(kind, path, threads, backend)
                bar.update()

    with _bar(len(runners) * len(images), f"accuracy on {split}", config.progress) as bar:
        probs = {name: runner.predict_all(images, bar) for name, runner in runners.items()}
    keras_pred = probs["keras"].argmax(1)
    for name, result in results.items():
        result.accuracy = float(np.mean(probs[name].argmax(1) == truth))
        result.agreement = float(np.mean(probs[name].argmax(1) == keras_pred))

    time_interleaved(runners, images, results, config)

    rows = build_rows(results, config.repeats)
    report = {
        "run": str(run),
        "machine": machine_info(threads, tf_threads, backend or "none", load_at_start),
        "settings": {"runs": config.runs, "warmup": config.warmup, "repeats": config.repeats,
                     "threads": threads, "memory": config.memory},
        "eval": {"split": split, "images": int(len(images))},
        "reference": reference_name(list(results)),
        "timing": {**KERAS_ROWS, "tflite": TFLITE_TIMING},
        "rows": rows,
        "verdicts": verdicts(rows),
        "config": asdict(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = run / "bench"
    write_json(out / "report.json", report)
    write_text(out / "report.md", format_markdown(report))
    from benchmarks.plots import plot_accuracy_size, plot_latency

    plot_latency(rows, out / "latency.png")
    plot_accuracy_size(rows, out / "accuracy_size.png")
    return BenchResult(out=out, report=report)


def prepare_demo(run: Path, log=print) -> None:
    """Make ``run`` a trained, exported demo run if it is not one already.

    Trains with :data:`train.demo_data.DEMO_TRAIN_SETTINGS` when there is no
    ``model.keras`` (resuming an interrupted demo training), then exports
    with the default formats when ``export/`` is missing.
    """
    if not (run / "model.keras").is_file():
        from train.config import TrainConfig
        from train.demo_data import DEMO_TRAIN_SETTINGS
        from train.trainer import CHECKPOINT_DIR, STATE_FILE, train

        resume = (run / CHECKPOINT_DIR / STATE_FILE).is_file()
        log(f"{'resuming' if resume else 'training'} the demo model in {run} (a few minutes) ...")
        train(TrainConfig(out=str(run), resume=resume, **DEMO_TRAIN_SETTINGS))
    if not (run / "export" / "manifest.json").is_file():
        from export.exporter import ExportConfig, export

        log(f"exporting {run} ...")
        result = export(ExportConfig(run=str(run)))
        if result.failures:
            print(f"warning: {', '.join(result.failures)} lost more accuracy than the export "
                  "allows; benchmarking anyway", file=sys.stderr)
