"""Convert a run's Keras model to TFLite variants and verify each on held-out images.

The commonest field failure of quantization is an int8 model that silently
lost accuracy: calibration images preprocessed unlike training, too few or
identical ones, uint8/int8 input confusion. Here calibration images come
from the train split through the very preprocessing training used, and
every variant is run through the edge runtime (the code that ships) on the
test split and compared with Keras before anyone copies it to a device.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.formatting import signed
from edge_runtime.classifier import Classifier
from edge_runtime.fileio import write_bytes, write_json, write_text
from edge_runtime.image import RESIZE_METHOD, ImageError, load_model_input
from edge_runtime.labels import labels_text, read_labels
from edge_runtime.quiet import quiet_output
from export.formats import DEFAULT_FORMATS, FORMATS, INT8_IO_TYPES, SELECTIVE, ExportFormat
from train.splits import Splits

MIN_CALIBRATION_SAMPLES = 32
"""Below this many calibration images the int8 ranges are guesses; refused unless forced."""


class ExportError(UserError):
    """The run cannot be exported as asked."""


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
    """Accept fewer than :data:`MIN_CALIBRATION_SAMPLES` calibration images."""
    max_accuracy_drop: float = 1.0
    """Accuracy points a variant may lose against Keras before the export fails."""
    int8_io: str = "uint8"
    """Input/output type of the int8 model: uint8 (camera frames), int8 or float32."""
    debug_quant: bool = False
    """Write ``quant_report.csv``: per-layer int8 error, worst first."""
    keep_float: int = 0
    """Also export int8 with this many of the most damaged layers left in float."""
    threads: int | None = None
    """Interpreter threads for verification (default: every core)."""
    seed: int = 0
    """Seed of the calibration sample."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class ExportResult:
    """The manifest written and the variants that lost too much accuracy."""

    out: Path
    manifest: dict
    failures: list[str] = field(default_factory=list)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _bar(iterable, total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    # disable=None: bars only on a terminal, not in logs and CI output
    return tqdm(iterable, total=total, desc=desc, unit="img", disable=None if enabled else True,
                leave=False, file=sys.stderr)


def load_run(run: Path):
    """The run's Keras model, splits and labels, with clear errors for what is missing.

    The model is loaded with Keras's safe mode on: a ``.keras`` file that
    carries Python code (a Lambda layer) is refused rather than executed.
    """
    import keras

    if not run.is_dir():
        raise ExportError(f"run directory {run} does not exist")
    for name in ("model.keras", "splits.json", "labels.txt"):
        if not (run / name).is_file():
            raise ExportError(f"{run / name} is missing: is {run} a finished edge-train run?")
    try:
        with quiet_output():
            model = keras.models.load_model(run / "model.keras", safe_mode=True, compile=False)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{run / 'model.keras'} cannot be loaded ({reason})") from None
    try:
        splits = Splits.load(run / "splits.json")
        labels = read_labels(run / "labels.txt")
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"{run}: unreadable splits.json or labels.txt ({exc})") from None
    if int(model.output_shape[-1]) != len(labels):
        raise ExportError(f"labels.txt has {len(labels)} labels but the model has "
                          f"{model.output_shape[-1]} outputs")
    return model, splits, labels


def calibration_files(splits: Splits, n: int, seed: int = 0) -> list[Path]:
    """Up to ``n`` train-split files, stratified: classes take turns.

    Only the train split is used, so the verification images (test) never
    leak into calibration.
    """
    by_class: dict[int, list[str]] = {}
    for rel, label in zip(splits.files["train"], splits.labels["train"]):
        by_class.setdefault(label, []).append(rel)
    rng = random.Random(seed)
    queues = []
    for label in sorted(by_class):
        files = sorted(by_class[label])
        rng.shuffle(files)
        queues.append(files)
    chosen: list[str] = []
    while len(chosen) < n and any(queues):
        for queue in queues:
            if queue and len(chosen) < n:
                chosen.append(queue.pop())
    return [splits.root / rel for rel in chosen]


def load_images(paths: list[Path], size: tuple[int, int], desc: str,
                progress: bool) -> tuple[np.ndarray, list[int]]:
    """Preprocessed images (N, H, W, 3) float32 and the indices of the paths that loaded."""
    arrays, kept = [], []
    for i, path in enumerate(_bar(paths, len(paths), desc, progress)):
        try:
            arrays.append(load_model_input(path, size))
            kept.append(i)
        except ImageError as exc:
            print(f"warning: skipping {exc}", file=sys.stderr)
    if not arrays:
        return np.zeros((0, *size, 3), np.float32), kept
    return np.stack(arrays), kept


def check_calibration(images: np.ndarray, labels: list[int], classes: list[str], wanted: int,
                      force: bool) -> list[str]:
    """Refuse calibration sets too small or degenerate to trust; return warnings."""
    warnings = []
    unique = len({hashlib.sha1(img.tobytes()).hexdigest() for img in images})
    if len(images) < MIN_CALIBRATION_SAMPLES and not force:
        raise ExportError(f"only {len(images)} calibration images in the train split (asked for "
                          f"{wanted}, need at least {MIN_CALIBRATION_SAMPLES} for trustworthy int8 "
                          "ranges); add images, or pass --force-calibration to use them anyway")
    if unique < min(len(images), MIN_CALIBRATION_SAMPLES) and not force:
        raise ExportError(f"the {len(images)} calibration images hold only {unique} distinct "
                          "pictures; int8 ranges would fit those alone. Pass --force-calibration "
                          "to use them anyway")
    counts = Counter(labels)
    if len(counts) == 1:
        warnings.append(f"all calibration images are of class '{classes[labels[0]]}': "
                        "int8 ranges may not fit the other classes")
    return warnings


def make_converter(model, fmt: ExportFormat, calibration: np.ndarray | None, int8_io: str,
                   progress: bool = False):
    """A ``TFLiteConverter`` set up for ``fmt`` (the table in :mod:`export.formats`)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fmt.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt.float16:
        converter.target_spec.supported_types = [tf.float16]
    if fmt.full_integer:
        if calibration is None or not len(calibration):
            raise ExportError(f"{fmt.name} needs calibration images")

        def representative_dataset():
            for image in _bar(calibration, len(calibration), f"calibrating {fmt.name}", progress):
                yield [image[np.newaxis].astype(np.float32)]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io != "float32":
            converter.inference_input_type = converter.inference_output_type = _io_type(int8_io)
    return converter


def _io_type(int8_io: str):
    """The TensorFlow dtype of an ``--int8-io`` choice other than float32."""
    import tensorflow as tf

    return {"uint8": tf.uint8, "int8": tf.int8}[int8_io]


def convert(converter) -> bytes:
    with quiet_output():
        return converter.convert()


def verify(path: Path, images: np.ndarray, truth: np.ndarray, keras_probs: np.ndarray,
           labels_path: Path, threads: int | None, progress: bool) -> dict:
    """Run a variant through the edge runtime on the evaluation images; compare with Keras."""
    classifier = Classifier(path, labels_path=labels_path, threads=threads)
    probs = np.stack([classifier.probabilities(img) for img in
                      _bar(images, len(images), f"verifying {path.name}", progress)])
    scale, zero_point = classifier.input_quantization
    out_scale, out_zero_point = classifier.output_quantization
    return {
        "file": path.name,
        "bytes": path.stat().st_size,
        "input_dtype": classifier.input_dtype.name,
        "output_dtype": classifier.output_dtype.name,
        "input_quantization": {"scale": float(scale), "zero_point": int(zero_point)},
        "output_quantization": {"scale": float(out_scale), "zero_point": int(out_zero_point)},
        "accuracy": float(np.mean(probs.argmax(1) == truth)),
        "agreement": float(np.mean(probs.argmax(1) == keras_probs.argmax(1))),
        "max_abs_diff": float(np.max(np.abs(probs - keras_probs))),
        "backend": classifier.backend,
    }


REPORT_FIELDS = ("op_name", "tensor_name", "rmse_over_scale", "mean_error", "max_abs_error",
                 "mean_squared_error", "scale", "zero_point", "num_elements")


def quantization_report(model, calibration: np.ndarray, int8_io: str) -> list[dict]:
    """Per-layer int8 error from ``tf.lite.experimental.QuantizationDebugger``, worst first.

    Layers are ranked by RMSE divided by the quantization scale: an error of
    several quantization steps means the layer's range is badly fitted.
    """
    import tensorflow as tf

    converter = make_converter(model, FORMATS["int8"], calibration, "float32")

    def dataset():
        for image in calibration:
            yield [image[np.newaxis].astype(np.float32)]

    with quiet_output():
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter,
                                                             debug_dataset=dataset)
        debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row.get("scale") or 0)
        mse = float(row.get("mean_squared_error") or 0)
        rows.append({
            "op_name": row.get("op_name", ""),
            "tensor_name": row.get("tensor_name", ""),
            "rmse_over_scale": math.sqrt(mse) / scale if scale else 0.0,
            "mean_error": float(row.get("mean_error") or 0),
            "max_abs_error": float(row.get("max_abs_error") or 0),
            "mean_squared_error": mse,
            "scale": scale,
            "zero_point": int(float(row.get("zero_point") or 0)),
            "num_elements": int(float(row.get("num_elements") or 0)),
        })
    rows.sort(key=lambda r: r["rmse_over_scale"], reverse=True)
    return rows


def selective_int8(model, calibration: np.ndarray, int8_io: str, keep: list[str]) -> bytes:
    """int8 with the ``keep`` tensors' ops left in float (selective quantization).

    The debugger builds the model with float32 input and output whatever the
    converter asked, so the ``int8_io`` interface is put back afterwards, as the
    converter itself does. An end left in float (the softmax, say) stays float32.
    """
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    converter = make_converter(model, SELECTIVE, calibration, "float32")

    def dataset():
        for image in calibration:
            yield [image[np.newaxis].astype(np.float32)]

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
    with quiet_output():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=dataset, debug_options=options)
        flatbuffer = debugger.get_nondebug_quantized_model()
        if int8_io == "float32":
            return flatbuffer
        return modify_model_io_type(flatbuffer, _io_type(int8_io), _io_type(int8_io))


def _validate(config: ExportConfig) -> None:
    unknown = [f for f in config.formats if f not in FORMATS]
    if unknown or not config.formats:
        raise ExportError(f"unknown format(s) {', '.join(unknown) or '(none)'}; "
                          f"expected some of {', '.join(FORMATS)}")
    if config.int8_io not in INT8_IO_TYPES:
        raise ExportError(f"--int8-io {config.int8_io}: expected one of {', '.join(INT8_IO_TYPES)}")
    if config.calibration_samples < 1:
        raise ExportError(f"--calibration-samples {config.calibration_samples}: must be ≥ 1")
    if config.max_accuracy_drop < 0:
        raise ExportError(f"--max-accuracy-drop {config.max_accuracy_drop}: must be ≥ 0")
    if config.keep_float < 0:
        raise ExportError(f"--keep-float {config.keep_float}: must be ≥ 0")


def export(config: ExportConfig, log=print) -> ExportResult:
    """Write ``run/export/``: the variants, ``labels.txt`` and a verified ``manifest.json``.

    Raises:
        ExportError: a missing or broken run, bad settings, an untrustworthy
            calibration set.
    """
    _validate(config)
    run = Path(config.run)
    model, splits, labels = load_run(run)
    out = run / "export"
    size = tuple(int(d) for d in model.input_shape[1:3])
    started = time.time()
    needs_calibration = any(FORMATS[f].full_integer for f in config.formats) or \
        config.debug_quant or config.keep_float

    calibration, calibration_info = None, None
    if needs_calibration:
        files = calibration_files(splits, config.calibration_samples, config.seed)
        calibration, kept = load_images(files, size, "loading calibration images", config.progress)
        label_of = dict(zip((splits.root / r for r in splits.files["train"]),
                            splits.labels["train"]))
        cal_labels = [label_of[files[i]] for i in kept]
        for warning in check_calibration(calibration, cal_labels, labels,
                                         config.calibration_samples, config.force_calibration):
            print(f"warning: {warning}", file=sys.stderr)
        calibration_info = {"split": "train", "samples": len(calibration),
                            "per_class": {labels[k]: v for k, v in sorted(Counter(cal_labels).items())},
                            "files": [str(files[i].relative_to(splits.root).as_posix())
                                      for i in kept]}

    eval_split = splits.eval_split()
    eval_paths = splits.paths(eval_split)
    images, kept = load_images(eval_paths, size, f"loading {eval_split} images", config.progress)
    truth = np.asarray(splits.labels[eval_split])[kept]
    if not len(images):
        raise ExportError(f"no readable image in the {eval_split} split to verify against")
    with quiet_output():
        keras_probs = model.predict(images, batch_size=32, verbose=0)
    keras_accuracy = float(np.mean(keras_probs.argmax(1) == truth))

    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "labels.txt", labels_text(labels))
    variants: dict[str, dict] = {}
    for name in config.formats:
        fmt = FORMATS[name]
        log(f"converting {name}: {fmt.description} ...")
        t0 = time.time()
        flatbuffer = convert(make_converter(model, fmt, calibration, config.int8_io,
                                            config.progress))
        write_bytes(out / fmt.file, flatbuffer)
        convert_s = time.time() - t0
        variants[name] = {**verify(out / fmt.file, images, truth, keras_probs, run / "labels.txt",
                                   config.threads, config.progress),
                          "convert_seconds": round(convert_s, 2)}

    report_rows = None
    if config.debug_quant or config.keep_float:
        log("running the quantization debugger ...")
        report_rows = quantization_report(model, calibration, config.int8_io)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(report_rows)
        write_text(out / "quant_report.csv", buffer.getvalue())
    if config.keep_float:
        keep = [r["tensor_name"] for r in report_rows[:config.keep_float] if r["tensor_name"]]
        shown = ", ".join(_short_tensor_name(name) for name in keep)
        log(f"re-exporting int8 with {len(keep)} layer(s) in float: {shown}")
        write_bytes(out / SELECTIVE.file, selective_int8(model, calibration, config.int8_io, keep))
        entry = verify(out / SELECTIVE.file, images, truth, keras_probs, run / "labels.txt",
                       config.threads, config.progress)
        entry["float_layers"] = keep
        if "int8" in variants:
            entry["recovered_points"] = round(100 * (entry["accuracy"] -
                                                     variants["int8"]["accuracy"]), 2)
        variants[SELECTIVE.name] = entry

    failures = []
    for name, entry in variants.items():
        entry["accuracy_drop_points"] = round(100 * (keras_accuracy - entry["accuracy"]), 2)
        if entry["accuracy_drop_points"] > config.max_accuracy_drop:
            failures.append(name)

    manifest = {
        "input": {"height": size[0], "width": size[1], "channels": 3, "color": "RGB",
                  "range": [0, 255], "resize": RESIZE_METHOD, "dtype": "float32"},
        "labels": labels,
        "variants": variants,
        "keras_accuracy": keras_accuracy,
        "eval_split": eval_split,
        "num_eval": int(len(images)),
        "max_accuracy_drop": config.max_accuracy_drop,
        "calibration": calibration_info,
        "source": {"model_sha256": sha256(run / "model.keras"), "run": str(run.resolve())},
        "export_seconds": round(time.time() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": _versions(),
    }
    write_json(out / "manifest.json", manifest)
    return ExportResult(out=out, manifest=manifest, failures=failures)


def _versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__}


def format_table(manifest: dict) -> str:
    """The verification table printed at the end of an export."""
    rows = [("variant", "size", "in/out", f"{manifest['eval_split']} acc", "Δ pt", "agree",
             "max|Δp|")]
    rows.append(("keras", "", "float32", f"{manifest['keras_accuracy']:.3f}", "", "1.000", ""))
    for name, v in manifest["variants"].items():
        rows.append((name, f"{v['bytes'] / 1e6:.2f} MB", f"{v['input_dtype']}/{v['output_dtype']}",
                     f"{v['accuracy']:.3f}", signed(-v["accuracy_drop_points"]),
                     f"{v['agreement']:.3f}", f"{v['max_abs_diff']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def read_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _short_tensor_name(name: str) -> str:
    """The readable tail of a fused TFLite tensor name (the manifest keeps the full one).

    >>> _short_tensor_name("m/net/block_10_project_BN/add;m/net/block_10_project/convolution")
    'block_10_project_BN/add'
    """
    return "/".join(name.split(";")[0].split("/")[-2:])
