"""``edge-bench RUN`` on the workstation: the run's Keras model against every exported variant.

Accuracy, latency, size, load time and memory, side by side. The TFLite side runs through
:class:`edge_runtime.classifier.Classifier`, the code that ships, and only ``invoke()`` is
timed (see :mod:`benchmarks.runners`); every model gets the same preprocessed test-split
images, decoded in batches as uint8. The models are timed interleaved
(:mod:`benchmarks.timing`), and the report (:mod:`benchmarks.report`) is the one the device
bench (:mod:`benchmarks.device_bench`) writes, with two Keras rows more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.accuracy import accuracy_pass
from benchmarks.bundle_reader import is_bundle, load_bundle, open_variants
from benchmarks.config import BenchConfig, BenchError, BenchResult, validate
from benchmarks.machine import load_average, machine_info
from benchmarks.memory import measure_each
from benchmarks.report import (
    KERAS_ROWS,
    TFLITE_TIMING,
    assemble_report,
    model_name,
    write_report,
)
from benchmarks.runners import KerasCompiled, KerasPredict, Runner
from benchmarks.thermal import snapshot, summarize
from benchmarks.timing import ModelResult, TimingPlan, time_interleaved
from common.fileio import sha256
from common.rundir import BENCH_DIR, EXPORT_DIR, MODEL, check_run
from edge_runtime.interpreter import available_cores
from train.saved_run import load_run

__all__ = ["BenchConfig", "BenchError", "BenchResult", "benchmark"]

EVAL_BATCH = 64
"""Images decoded at a time: memory stays at a batch, not the whole split."""
TIMING_IMAGES = 64
"""The first images of the split, kept for the timed runs (latency does not depend on which)."""

log = logging.getLogger(__name__)


def _set_tf_threads(threads: int) -> int:
    """Give TensorFlow the same thread count as TFLite; returns what TF actually uses."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        # TF is already initialised (after --demo training in this process): it keeps its pool
        pass
    return tf.config.threading.get_intra_op_parallelism_threads() or available_cores()


def _warn_if_stale(run: Path, manifest) -> None:
    source = manifest.extra.get("source") or {}
    exported_from = source.get("model_sha256") if isinstance(source, dict) else None
    if exported_from and exported_from != sha256(run / MODEL):
        log.warning("%s was exported from a different %s; the comparison is meaningless until "
                    "you re-run `edge-export %s`", run / EXPORT_DIR, MODEL, run)


def split_batches(paths: list[Path], labels: list[int], size: tuple[int, int], method: str,
                  keep: list[np.ndarray], batch: int = EVAL_BATCH
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, None]]:
    """The split's images as uint8 model input in batches, with their labels.

    Read as export reads them (:func:`export.images.iter_batches`: the run's resize filter,
    unreadable files skipped with a warning). The first :data:`TIMING_IMAGES` images are also
    appended to ``keep`` for the timed runs.
    """
    from export.images import iter_batches

    truth = np.asarray(labels)
    for found in iter_batches(paths, size, method, batch):
        keep.extend(found.pixels[:max(0, TIMING_IMAGES - len(keep))])
        yield found.pixels, truth[found.indices], None


def benchmark(config: BenchConfig) -> BenchResult:
    """Measure the run's Keras model and every exported variant; write ``run/bench/``.

    Writes report.json, report.md, latency.png and accuracy_size.png, each
    atomically. With ``config.export_first`` the run is exported first.

    Raises:
        BenchError: bad settings, a missing run, model, export or variant file.
        RunError: the run cannot be loaded.
    """
    validate(config)
    run = Path(config.path)
    check_run(run)
    if not config.export_first and not is_bundle(run / EXPORT_DIR):
        raise BenchError(f"{run} has no {EXPORT_DIR}/manifest.json: run `edge-export {run}` "
                         "first (or pass --export)")
    threads = config.threads or available_cores()
    load_at_start = load_average()
    tf_threads = _set_tf_threads(threads)

    if config.export_first:
        from benchmarks.demo import export_run

        export_run(run, config.threads, config.progress)
    bundle = run / EXPORT_DIR
    manifest = load_bundle(bundle, f"re-run `edge-export {run}`")
    _warn_if_stale(run, manifest)
    model, splits, _labels = load_run(run)
    size = tuple(int(d) for d in model.input_shape[1:3])
    if manifest.input.size != size:
        raise BenchError(f"{EXPORT_DIR}/manifest.json says {manifest.input.height}x"
                         f"{manifest.input.width} input but {MODEL} takes {size[0]}x{size[1]}; "
                         f"re-run `edge-export {run}`")

    keras_file = run / MODEL
    runners: dict[str, Runner] = {"keras": KerasPredict(model),
                                  "keras_compiled": KerasCompiled(model)}
    results = {name: ModelResult(name, "keras", keras_file.name, keras_file.stat().st_size)
               for name in runners}
    tflite, tflite_results, backend = open_variants(bundle, manifest, threads, config.backend)
    runners.update(tflite)
    results.update(tflite_results)

    heat_at_start = snapshot()  # after any --export: the heat it made shows in the reading
    if config.memory:
        measure_each(results, lambda name, result: (name, keras_file) if result.kind == "keras"
                     else ("tflite", bundle / result.file), threads, backend, config.progress)

    split = splits.eval_split()
    paths = splits.paths(split)
    timing_images: list[np.ndarray] = []
    n = accuracy_pass(runners, results,
                      split_batches(paths, splits.labels[split], size, manifest.input.resize,
                                    timing_images),
                      len(paths), config.progress)
    if not n:
        raise BenchError(f"no readable image in the {split} split of {run}")

    time_interleaved(runners, np.stack(timing_images), results,
                     TimingPlan(config.runs, config.warmup, config.repeats), config.progress)
    thermal = summarize(heat_at_start, snapshot())

    report = assemble_report(
        {"run": str(run), "network": model_name(manifest)},
        machine_info(threads, backend or "none", load_at_start, tf_threads, thermal),
        config, threads, {"source": "split", "split": split, "images": n},
        {**KERAS_ROWS, "tflite": TFLITE_TIMING}, results)
    out = run / BENCH_DIR
    write_report(out, report)
    return BenchResult(out=out, report=report)
