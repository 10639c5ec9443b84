"""``edge-bench BUNDLE``: every TFLite variant of a bundle, on the machine it will run on.

TensorFlow-free by design (a Raspberry Pi installed with ``pip install ".[edge]"`` has no
TensorFlow): accuracy and agreement with Keras come from the evaluation set export packed into
the bundle (``eval_set.npz``: the preprocessed uint8 pixels it verified with, their labels and
Keras's top-1), so on the same machine type they equal what export measured. Each variant's
answers are also compared with the ones it gave on the workstation at export (the same file):
the check that this machine's kernels compute what export verified. Latency
(``invoke()`` only, interleaved, after warm-up), throughput, size, peak memory and load time
(a fresh process per variant) and the board and CPU go to ``BUNDLE/bench/``. A bundle with an
imx500 variant on a Pi with the AI Camera also gets the sensor's row (:mod:`benchmarks.sensor`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from benchmarks.accuracy import accuracy_pass
from benchmarks.bundle_reader import load_bundle, open_variants
from benchmarks.config import BenchConfig, BenchError, BenchResult, validate
from benchmarks.machine import load_average, machine_info
from benchmarks.memory import measure_each
from benchmarks.report import TFLITE_TIMING, assemble_report, exported_by, model_name, write_report
from benchmarks.sensor import sensor_bench, sensor_line
from benchmarks.thermal import snapshot, summarize
from benchmarks.timing import ModelResult, TimingPlan, time_interleaved
from common.rundir import BENCH_DIR
from edge_runtime.errors import EdgeError
from edge_runtime.eval_set import EvalSet
from edge_runtime.interpreter import available_cores

log = logging.getLogger(__name__)

EVAL_BATCH = 64
"""Images handed to the models per step of the accuracy pass (one progress update each)."""


def load_eval_set(bundle: Path, manifest) -> EvalSet:
    """The bundle's evaluation set, checked against the models' input size.

    Raises:
        BenchError: the manifest names none (an export from before eval sets), or the file is
            missing, damaged or of another input size.
    """
    if manifest.eval_set is None:
        raise BenchError(f"{bundle} has no evaluation set (manifest.json names no eval_set): "
                         "re-export the run with a current edge-export (--eval-samples N, "
                         "default 300) and copy the new bundle")
    try:
        eval_set = EvalSet.load(bundle / manifest.eval_set.file)
    except EdgeError as exc:
        raise BenchError(f"{exc} (re-export with --eval-samples N and copy the bundle again)") \
            from None
    if tuple(eval_set.pixels.shape[1:3]) != manifest.input.size:
        raise BenchError(f"{bundle / manifest.eval_set.file} holds {eval_set.pixels.shape[1]}x"
                         f"{eval_set.pixels.shape[2]} images but the models take "
                         f"{manifest.input.height}x{manifest.input.width}; re-export")
    if not len(eval_set):
        raise BenchError(f"{bundle / manifest.eval_set.file} holds no images; re-export")
    return eval_set


def eval_batches(eval_set: EvalSet, size: int = EVAL_BATCH):
    """The evaluation set in batches of ``(pixels, labels, keras_top1)``."""
    for start in range(0, len(eval_set), size):
        stop = start + size
        yield (eval_set.pixels[start:stop], eval_set.labels[start:stop],
               eval_set.keras_top1[start:stop])


def workstation_agreement(result: ModelResult, eval_set: EvalSet) -> dict | None:
    """``{"same", "images"}``: on how many evaluation images the variant's answer here was the
    one it gave on the workstation at export; None for a bundle exported before those were
    kept (or a variant they were not kept for). A difference is reported, not an error."""
    answers = eval_set.variant_top1.get(result.model)
    if answers is None or result.top1 is None:
        return None
    return {"same": int(np.sum(result.top1 == answers)), "images": len(answers)}


def bench_bundle(config: BenchConfig) -> BenchResult:
    """Benchmark every variant of the bundle ``config.path``; write ``BUNDLE/bench/``.

    Writes report.json, report.md and (where matplotlib imports) latency.png and
    accuracy_size.png, each atomically.

    Raises:
        BenchError: bad settings, a broken bundle (missing or altered variant, no eval set).
    """
    validate(config)
    if config.export_first:
        raise BenchError("--export needs a run directory; a bundle is already exported")
    bundle = Path(config.path)
    remedy = "re-export the run and copy the bundle again"
    manifest = load_bundle(bundle, remedy)
    eval_set = load_eval_set(bundle, manifest)
    threads = config.threads or available_cores()
    load_at_start = load_average()
    heat_at_start = snapshot()
    runners, results, backend = open_variants(bundle, manifest, threads, config.backend)
    log.info("benchmarking %d variant(s) of %s on %d image(s), %d thread(s), backend %s",
             len(runners), bundle, len(eval_set), threads, backend)

    if config.memory:
        measure_each(results, lambda _, result: ("tflite", bundle / result.file), threads,
                     backend, config.progress)

    accuracy_pass(runners, results, eval_batches(eval_set), len(eval_set), config.progress)
    for result in results.values():
        result.details["workstation_agreement"] = workstation_agreement(result, eval_set)
    time_interleaved(runners, eval_set.pixels,
                     results, TimingPlan(config.runs, config.warmup, config.repeats),
                     config.progress)
    sensor = sensor_bench(bundle, manifest, quiet=not config.progress)  # None: no imx500
    thermal = summarize(heat_at_start, snapshot())

    report = assemble_report(
        {"bundle": str(bundle), "network": model_name(manifest),
         "exported_by": exported_by(manifest)},
        machine_info(threads, backend or "none", load_at_start, thermal=thermal), config,
        threads, {"source": "bundle", "file": manifest.eval_set.file,
                  "split": manifest.eval_set.split, "images": len(eval_set),
                  "export_images": manifest.num_eval},
        {"tflite": TFLITE_TIMING}, results)
    if sensor is not None:
        report["sensor"] = sensor
        report["verdicts"][sensor["model"]] = sensor_line(
            sensor, {name: float(np.median(r.latencies_ms)) for name, r in results.items()
                     if r.latencies_ms})
    out = bundle / BENCH_DIR
    write_report(out, report)
    return BenchResult(out=out, report=report)
