"""Convert a run's Keras model to TFLite variants and verify each on held-out images.

The commonest field failure of quantization is an int8 model that silently
lost accuracy: calibration images preprocessed unlike training, too few or
identical ones, uint8/int8 input confusion. Here calibration images come
from the train split through the very preprocessing training used, and
every variant is run through the edge runtime (the code that ships) on the
test split and compared with Keras before anyone copies it to a device.

This module runs the steps in order; each lives in its own module: calibration
(:mod:`export.calibration`), conversion (:mod:`export.convert`), the quantization
debugger (:mod:`export.quant_debug`), verification (:mod:`export.verify`), the bundle's
evaluation set (:mod:`export.eval_collector`) and building the bundle (:mod:`export.bundle`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.fileio import sha256, write_text
from common.progress import progress_bar
from common.quiet import quiet_output
from common.rundir import EXPORT_DIR, MODEL, RunError, read_config
from common.versions import library_versions
from deploy.signature import check_key, sign
from edge_runtime.classifier import Classifier
from edge_runtime.errors import ModelError
from edge_runtime.eval_set import DEFAULT_SAMPLES, EVAL_SET_FILE
from edge_runtime.image import RESIZE_METHOD, RESIZE_METHODS
from edge_runtime.manifest import RUNS_ON_SENSOR, EvalSet, InputSpec, Manifest, Variant
from export.auto_float import (
    DEFAULT_TARGET_DROP,
    NO_VALIDATION,
    OFF,
    AutoFloat,
    search_float_layers,
)
from export.bundle import (
    LABELS_FILE,
    check_replaceable,
    file_hashes,
    staged_bundle,
    write_labels,
    write_variant,
)
from export.calibration import load_calibration
from export.convert import convert, saved_model, selective_int8
from export.errors import ExportError
from export.eval_collector import EvalSetCollector, with_variant_answers
from export.formats import DEFAULT_FORMATS, FORMATS, INT8_IO_TYPES, SELECTIVE
from export.images import iter_batches
from export.latency import interleaved_latency_ms
from export.quant_debug import (
    REPORT_FILE,
    QuantReport,
    plan_float_layers,
    quantization_report,
    report_csv,
)
from export.ranges import calibration_settledness
from export.table import short_tensor_name
from export.verify import evaluate
from train.backbones import run_model
from train.saved_run import load_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportConfig:
    """Settings of one ``edge-export`` run."""

    run: str
    """Run directory written by ``edge-train``."""
    formats: tuple[str, ...] = DEFAULT_FORMATS
    """Variants to write, keys of :data:`export.formats.FORMATS`."""
    calibration_samples: int = 200
    """Train-split images used to calibrate int8 ranges."""
    force_calibration: bool = False
    """Accept fewer than :data:`export.calibration.MIN_CALIBRATION_SAMPLES` calibration images."""
    max_accuracy_drop: float = 1.0
    """Accuracy points a variant may lose against Keras before the export fails."""
    int8_io: str = "uint8"
    """Input/output type of the int8 model: uint8 (camera frames), int8 or float32."""
    debug_quant: bool = False
    """Write ``quant_report.csv``: per-layer int8 error, worst first."""
    int8_target_drop: float | None = DEFAULT_TARGET_DROP
    """Accuracy points int8 may lose against Keras on the validation split: past it, signal
    layers are kept in float one at a time while validation accuracy rises
    (:mod:`export.auto_float`), and the int8 variant written is the one chosen. None: off;
    ignored when int8 is not among the formats."""
    keep_float: int = 0
    """Also export int8 with at most this many of the most damaged layers left in float: only
    layers above the rounding-noise floor (:mod:`export.quant_debug`), none if none is."""
    eval_samples: int = DEFAULT_SAMPLES
    """Evaluation images (stratified) saved into the bundle as ``eval_set.npz``; 0: none."""
    threads: int | None = None
    """Interpreter threads for verification (default: every core this process may use)."""
    seed: int = 0
    """Seed of the calibration and evaluation-set samples."""
    progress: bool = True
    """Show progress bars (on a terminal)."""
    sign_key: Path | None = None
    """An OpenSSH key to sign the bundle with (``manifest.json.sig``, :mod:`deploy.signature`);
    None: unsigned."""


@dataclass
class ExportResult:
    """The manifest written, the variants that lost too much accuracy, the debugger's report."""

    out: Path
    manifest: Manifest
    failures: list[str] = field(default_factory=list)
    quant_report: QuantReport | None = None
    """The quantization debugger's findings, with ``--debug-quant`` or ``--keep-float``."""
    auto_float: AutoFloat | None = None
    """What ``--int8-target-drop`` tried and kept."""
    signed_with: str | None = None
    """The key that signed the bundle (``ED25519 key SHA256:…``), with ``sign_key``."""


def _validate(config: ExportConfig) -> None:
    unknown = [f for f in config.formats if f not in FORMATS]
    if unknown or not config.formats:
        raise ExportError(f"unknown format(s) {', '.join(unknown) or '(none)'}; "
                          f"expected some of {', '.join(FORMATS)}")
    if config.int8_io not in INT8_IO_TYPES:
        raise ExportError(f"--int8-io {config.int8_io}: expected one of {', '.join(INT8_IO_TYPES)}")
    if config.calibration_samples < 1:
        raise ExportError(f"--calibration-samples {config.calibration_samples}: must be ≥ 1")
    if config.eval_samples < 0:
        raise ExportError(f"--eval-samples {config.eval_samples}: must be ≥ 0")
    if config.max_accuracy_drop < 0:
        raise ExportError(f"--max-accuracy-drop {config.max_accuracy_drop}: must be ≥ 0")
    if config.int8_target_drop is not None and config.int8_target_drop < 0:
        raise ExportError(f"--int8-target-drop {config.int8_target_drop}: must be ≥ 0")
    if config.keep_float < 0:
        raise ExportError(f"--keep-float {config.keep_float}: must be ≥ 0")
    if config.threads is not None and config.threads < 1:
        raise ExportError(f"--threads {config.threads}: must be ≥ 1")
    if config.sign_key is not None:
        check_key(config.sign_key, "--sign-key")  # before minutes of work, not after


def resize_method(run: Path) -> str:
    """The resize filter the run trained with (``config.json``; older runs: the default)."""
    method = read_config(run).get("resize", RESIZE_METHOD)
    if method not in RESIZE_METHODS:
        raise RunError(f"{run / 'config.json'}: resize {method!r}, expected one of "
                       f"{', '.join(RESIZE_METHODS)}")
    return method


@dataclass(frozen=True)
class _Source:
    """The run being exported, read once: what every step takes from it."""

    run: Path
    out: Path
    model: object
    splits: object
    labels: list[str]
    method: str
    size: tuple[int, int]
    spec: InputSpec
    trained: dict
    """The backbone, as a person names it (:func:`train.backbones.run_model`)."""
    model_sha256: str
    described: dict
    """What every variant's embedded TFLite metadata says (:mod:`export.metadata`)."""


def export(config: ExportConfig) -> ExportResult:
    """Write ``run/export/``: the variants, ``labels.txt``, ``eval_set.npz`` and a verified
    ``manifest.json``, built aside and swapped in whole (see :mod:`export.bundle`).

    Raises:
        RunError: a missing or broken run.
        ExportError: bad settings, an untrustworthy calibration set, no readable
            evaluation image, an ``export`` that is a file or holds files export did not write,
            an imx500 variant the sensor cannot run or this machine cannot make.
    """
    _validate(config)
    started = time.time()
    source = _read_source(config)
    sensor_spec = _imx500_preflight(config, source)  # before minutes of work
    calibration = _calibration(config, source)
    cal_pixels = calibration.pixels if calibration else None
    with staged_bundle(source.out) as folder:
        write_labels(folder, source.labels)
        files, convert_seconds = _convert_variants(config, source, cal_pixels, folder)
        extras: dict[str, dict] = {name: {} for name in files}
        quant, rows = _debug_quant(config, source, cal_pixels, folder, files, convert_seconds,
                                   extras)
        auto, auto_entry = _int8_target(config, source, cal_pixels, folder, files,
                                        convert_seconds, extras, rows)
        sensor_eval = _SensorEval() if sensor_spec is not None else None
        evaluation, eval_set_entry = _verify(config, source, folder, files, sensor_eval)
        variants, failures = _variant_entries(config, files, convert_seconds, extras, evaluation)
        if sensor_spec is not None:
            name, variant = _imx500_variant(config, source, sensor_spec, cal_pixels, folder,
                                            sensor_eval, evaluation.keras_accuracy)
            variants[name] = variant
            if variant.accuracy_drop_points > config.max_accuracy_drop:
                failures.append(name)
        manifest = _manifest(config, source, calibration, auto_entry, evaluation,
                             eval_set_entry, variants, started, file_hashes(folder))
        manifest.save(folder)  # last: the bundle is complete once it names its files
        _check_loads(folder, manifest)
        # signed before the swap: a bundle that should be signed never appears unsigned
        signed_with = sign(folder, config.sign_key, "--sign-key") if config.sign_key is not None else None
    return ExportResult(out=source.out, manifest=manifest, failures=failures,
                        quant_report=quant, auto_float=auto, signed_with=signed_with)


def _read_source(config: ExportConfig) -> _Source:
    run = Path(config.run)
    out = run / EXPORT_DIR
    check_replaceable(out)  # before minutes of work; checked again at the swap
    model, splits, labels = load_run(run)
    method = resize_method(run)
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    spec = InputSpec(height=size[0], width=size[1], resize=method)
    trained = run_model(read_config(run))  # the backbone, as a person names it
    model_sha256 = sha256(run / MODEL)
    described = dict(run_name=run.name, version=model_sha256[:12], labels=labels,
                     input_spec=spec.to_json(), model=trained["name"])
    return _Source(run, out, model, splits, labels, method, size, spec, trained, model_sha256,
                   described)


def _imx500_preflight(config: ExportConfig, source: _Source) -> dict | None:
    """The side script's spec when imx500 is asked for (what the sensor refuses, refused now)."""
    if not any(FORMATS[f].runs_on == RUNS_ON_SENSOR for f in config.formats):
        return None
    from export import imx500

    return imx500.preflight(source.model, read_config(source.run))


def _calibration(config: ExportConfig, source: _Source):
    """The calibration images (shared by int8, the debugger and imx500), or None."""
    if not (any(FORMATS[f].full_integer for f in config.formats) or config.debug_quant
            or config.keep_float):
        return None
    calibration = load_calibration(source.splits, source.labels, config.calibration_samples,
                                   source.size, source.method, seed=config.seed,
                                   force=config.force_calibration, progress=config.progress)
    log.info("measuring how settled the calibration ranges are ...")
    calibration.info["ranges"] = calibration_settledness(source.model,
                                                         calibration.pixels).to_json()
    return calibration


def _convert_variants(config: ExportConfig, source: _Source, cal_pixels, folder: Path
                      ) -> tuple[dict[str, Path], dict[str, float]]:
    """Each ``.tflite`` variant asked for, written into the bundle; seconds each took."""
    files: dict[str, Path] = {}
    convert_seconds: dict[str, float] = {}
    names = [name for name in config.formats if FORMATS[name].on_cpu]
    if not names:
        return files, convert_seconds
    t0 = time.time()
    log.info("writing the model once as the SavedModel the converter reads ...")
    with saved_model(source.model) as saved:
        shared = (time.time() - t0) / len(names)  # each variant's share of it
        for name in names:
            fmt = FORMATS[name]
            log.info("converting %s: %s ...", name, fmt.description)
            t0 = time.time()
            files[name] = write_variant(folder, fmt, convert(saved, fmt, cal_pixels,
                                                             config.int8_io, config.progress),
                                        **source.described)
            convert_seconds[name] = round(shared + time.time() - t0, 2)
    return files, convert_seconds


def _debug_quant(config: ExportConfig, source: _Source, cal_pixels, folder: Path,
                 files: dict[str, Path], convert_seconds: dict[str, float],
                 extras: dict[str, dict]) -> tuple[QuantReport | None, list[dict] | None]:
    """``--debug-quant`` / ``--keep-float``: the per-layer report, and int8_keepfloat."""
    if not (config.debug_quant or config.keep_float):
        return None, None
    log.info("running the quantization debugger ...")
    rows = quantization_report(source.model, cal_pixels)
    write_text(folder / REPORT_FILE, report_csv(rows))
    quant = plan_float_layers(rows, config.keep_float)  # signal layers only
    if quant.float_layers:
        keep = list(quant.float_layers)
        log.info("re-exporting int8 with %d layer(s) in float: %s", len(keep),
                 ", ".join(short_tensor_name(t) for t in keep))
        t0 = time.time()
        files[SELECTIVE.name] = write_variant(
            folder, SELECTIVE, selective_int8(source.model, cal_pixels, config.int8_io, keep),
            **source.described)
        convert_seconds[SELECTIVE.name] = round(time.time() - t0, 2)
        extras[SELECTIVE.name] = {"float_layers": keep}
    return quant, rows


def _int8_target(config: ExportConfig, source: _Source, cal_pixels, folder: Path,
                 files: dict[str, Path], convert_seconds: dict[str, float],
                 extras: dict[str, dict], rows: list[dict] | None
                 ) -> tuple[AutoFloat | None, dict | None]:
    """``--int8-target-drop``: the int8 chosen on validation, and the manifest's entry."""
    if "int8" not in files:
        return None, None
    if config.int8_target_drop is None:
        return None, {"points": None, "split": "val", "outcome": OFF}
    auto, auto_entry = None, None
    t0 = time.time()
    splits = source.splits
    if splits.paths("val"):
        auto = _auto_float(config, source.model, splits, source.size, source.method,
                           cal_pixels, files["int8"], folder / LABELS_FILE, rows)
        auto_entry = auto.to_json("val")
        if auto.float_layers:
            files["int8"] = write_variant(folder, FORMATS["int8"], auto.model,
                                          **source.described)
        extras["int8"]["float_layers"] = list(auto.float_layers)
    else:
        log.warning("int8 is not checked against --int8-target-drop: the run has no "
                    "validation images to measure it on (the test split stays for the "
                    "table)")
        auto_entry = {"points": config.int8_target_drop, "split": "val",
                      "outcome": NO_VALIDATION}
    convert_seconds["int8"] = round(convert_seconds["int8"] + time.time() - t0, 2)
    return auto, auto_entry


class _SensorEval:
    """Keeps the evaluation pixels in order (an observer of :func:`export.verify.evaluate`),
    for the imx500 variant, which is measured in the side venv after the pass."""

    def __init__(self) -> None:
        self.pixels: list[np.ndarray] = []
        self.indices: list[np.ndarray] = []

    def __call__(self, batch, keras_top1: np.ndarray) -> None:
        self.pixels.append(batch.pixels)
        self.indices.append(np.asarray(batch.indices))


def _verify(config: ExportConfig, source: _Source, folder: Path, files: dict[str, Path],
            sensor_eval: _SensorEval | None):
    """Every ``.tflite`` variant against Keras on the evaluation split (and the bundle's
    evaluation set kept on the way): the :class:`~export.verify.Evaluation` and the
    manifest's ``eval_set`` entry."""
    # Verified in the staging folder with its own labels.txt; no manifest.json is there
    # yet, so nothing stale can steer the Classifier.
    splits = source.splits
    eval_split = splits.eval_split()
    paths = splits.paths(eval_split)
    truth = np.asarray(splits.labels[eval_split])
    collector = EvalSetCollector(truth, config.eval_samples, config.seed)
    observers = [collector] + ([sensor_eval] if sensor_eval is not None else [])
    log.info("verifying %s on %d %s image(s) against Keras ...",
             ", ".join(files) or "Keras", len(paths), eval_split)
    with progress_bar(len(paths), f"verifying on {eval_split}", config.progress) as bar:
        evaluation = evaluate(source.model, files, folder / LABELS_FILE,
                              iter_batches(paths, source.size, source.method, bar=bar), truth,
                              config.threads, observers=observers)

    eval_set = collector.result()
    eval_set_entry = None
    if eval_set is not None:
        eval_set = with_variant_answers(eval_set, files, folder / LABELS_FILE, config.threads)
        eval_set.save(folder / EVAL_SET_FILE)
        eval_set_entry = EvalSet(EVAL_SET_FILE, len(eval_set), eval_split)
    return evaluation, eval_set_entry


def _variant_entries(config: ExportConfig, files: dict[str, Path],
                     convert_seconds: dict[str, float], extras: dict[str, dict], evaluation
                     ) -> tuple[dict[str, Variant], list[str]]:
    """The manifest's entry of each ``.tflite`` variant, and those past the accuracy guard."""
    keras_accuracy = evaluation.keras_accuracy
    variants: dict[str, Variant] = {}
    failures = []
    for name, path in files.items():
        measured = evaluation.variants[name]
        extra = {**extras[name], **evaluation.paired[name]}
        if name == SELECTIVE.name and "int8" in evaluation.variants:
            extra["recovered_points"] = round(
                100 * (measured["accuracy"] - evaluation.variants["int8"]["accuracy"]), 2)
        drop = round(100 * (keras_accuracy - measured["accuracy"]), 2)
        if drop > config.max_accuracy_drop:
            failures.append(name)
        variants[name] = Variant(file=path.name, bytes=path.stat().st_size,
                                 sha256=sha256(path), accuracy_drop_points=drop,
                                 convert_seconds=convert_seconds[name], extra=extra,
                                 **measured)
    return variants, failures


def _imx500_variant(config: ExportConfig, source: _Source, sensor_spec: dict, cal_pixels,
                    folder: Path, sensor_eval: _SensorEval, keras_accuracy: float
                    ) -> tuple[str, Variant]:
    """The AI Camera's network made in the side venv (:mod:`export.imx500`), its files in the
    bundle's ``imx500/``, measured on the same evaluation images as every variant."""
    from export import imx500
    from export.verify import keras_probabilities

    name = next(f for f in config.formats if FORMATS[f].runs_on == RUNS_ON_SENSOR)
    pixels = np.concatenate(sensor_eval.pixels)
    truth = np.asarray(source.splits.labels[source.splits.eval_split()])[
        np.concatenate(sensor_eval.indices)]
    keras_probs = np.concatenate([keras_probabilities(source.model, pixels[i:i + 64])
                                  for i in range(0, len(pixels), 64)])
    log.info("converting %s: %s (minutes) ...", name, FORMATS[name].description)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="edge-export-imx500-") as work:
        result = imx500.convert(source.model, sensor_spec, cal_pixels, pixels, Path(work))
        path = imx500.write_bundle_files(folder, result)
    measured = imx500.measurements(result, truth, keras_probs)
    extra = measured.pop("extra")
    return name, Variant(file=f"{imx500.FOLDER}/{path.name}", bytes=path.stat().st_size,
                         sha256=sha256(path),
                         accuracy_drop_points=round(100 * (keras_accuracy
                                                           - measured["accuracy"]), 2),
                         convert_seconds=round(time.time() - t0, 2), extra=extra, **measured)


def _manifest(config: ExportConfig, source: _Source, calibration, auto_entry, evaluation,
              eval_set_entry, variants: dict[str, Variant], started: float,
              files: dict[str, str]) -> Manifest:
    return Manifest(
        input=source.spec, labels=tuple(source.labels), variants=variants,
        keras_accuracy=evaluation.keras_accuracy, eval_split=source.splits.eval_split(),
        num_eval=evaluation.num_eval, eval_set=eval_set_entry, files=files,
        extra={"max_accuracy_drop": config.max_accuracy_drop,
               "calibration": calibration.info if calibration else None,
               "int8_target_drop": auto_entry,
               "model": source.trained,
               "source": {"model_sha256": source.model_sha256,
                          "run": str(source.run.resolve())},
               "export_seconds": round(time.time() - started, 2),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "versions": library_versions("tensorflow", "keras", "numpy", "PIL",
                                            "ai_edge_litert")})


def _auto_float(config: ExportConfig, model, splits, size: tuple[int, int], method: str,
                calibration: np.ndarray, plain_file: Path, labels_file: Path,
                rows: list[dict] | None) -> AutoFloat:
    """``--int8-target-drop``: the int8 model chosen on the validation split (never the test
    split); candidates are written to a temporary folder outside the bundle. When layers are
    kept in float, plain and chosen int8 are timed on this machine (a few calibration
    images, interleaved: :mod:`export.latency`)."""
    paths = splits.paths("val")
    truth = np.asarray(splits.labels["val"])

    def evaluation(file: Path):
        with progress_bar(len(paths), "measuring int8 on val", config.progress) as bar:
            return evaluate(model, {"int8": file}, labels_file,
                            iter_batches(paths, size, method, bar=bar), truth, config.threads)

    with tempfile.TemporaryDirectory(prefix="edge-export-int8-") as scratch:
        candidate = Path(scratch) / FORMATS["int8"].file

        def measure(flatbuffer: bytes) -> float:
            candidate.write_bytes(flatbuffer)
            return evaluation(candidate).variants["int8"]["accuracy"]

        def report() -> list[dict]:
            log.info("int8 misses --int8-target-drop on val: running the quantization "
                     "debugger ...")
            return rows if rows is not None else quantization_report(model, calibration)

        def keep(layers: list[str]) -> bytes:
            log.info("trying int8 with %d layer(s) in float: %s", len(layers),
                     ", ".join(short_tensor_name(t) for t in layers))
            return selective_int8(model, calibration, config.int8_io, layers)

        def latency(plain: bytes, chosen: bytes) -> tuple[float, float]:
            log.info("timing plain int8 against int8 with float layers ...")
            plain_ms, chosen_ms = interleaved_latency_ms([plain, chosen], calibration[:16],
                                                         config.threads)
            return plain_ms, chosen_ms

        log.info("measuring int8 against Keras on %d val image(s) ...", len(paths))
        plain = evaluation(plain_file)
        counts = plain.paired["int8"]
        auto = search_float_layers(
            config.int8_target_drop, plain.keras_accuracy, plain.variants["int8"]["accuracy"],
            plain_file.read_bytes(), measure, report, keep,
            paired=(counts["keras_only_correct"], counts["variant_only_correct"],
                    counts["mcnemar_p"]), latency=latency)
    if auto.float_layers and splits.eval_split() == "val":
        log.warning("--int8-target-drop: this run has no test split, so the layers were chosen "
                    "on the same val images the table reports: its int8 row is optimistic")
    return auto


def _check_loads(folder: Path, manifest: Manifest) -> None:
    """Each variant loads as a device will load it: through the manifest now beside it."""
    for variant in manifest.cpu_variants().values():  # the sensor's: checked in export.imx500
        try:
            with quiet_output():
                Classifier(folder / variant.file)
        except ModelError as exc:  # export wrote something inconsistent: a bug, not bad input
            raise RuntimeError(f"the new bundle does not load as a device loads it: {exc}") \
                from exc
