"""The ``imx500`` variant: the network the Raspberry Pi AI Camera runs on its sensor.

Sony's toolchain needs TensorFlow 2.15, so the work happens in a side venv
(:mod:`export.imx500_env`) running :mod:`export.imx500_convert` as a subprocess; this module
prepares its inputs (the architecture as data, the weights as Keras 3 writes them, the
calibration images int8 uses, the evaluation images), checks what comes back and measures it:

- the converted input's sign and scale (``dnnParams.xml``) against what the sensor feeds, and
  its shapes against the run's (:func:`edge_runtime.sensor_network.check_network`, the check a
  device makes of the bundle's copy too);
- accuracy and agreement with Keras on the evaluation split, with the MCT-quantized model fed
  exactly what the sensor feeds (the closest stand-in for the sensor's arithmetic that runs
  here);
- the converter's memory report: whether the network fits the sensor's 8 MB, and its share.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.fileio import write_bytes, write_json
from edge_runtime.errors import ModelError
from edge_runtime.sensor_network import (
    DNN_PARAMS,
    PACKED,
    SENSOR_OFFSET,
    SENSOR_SCALE,
    DnnParams,
    check_network,
)
from export.errors import ExportError
from export.imx500_env import check_java, clean_env, ensure_venv

log = logging.getLogger(__name__)

FOLDER = "imx500"
"""The variant's folder in the bundle."""
RPK = "network.rpk"
"""What ``imx500-package`` makes of it on the Pi (cached beside it on first use)."""
MEMORY_REPORT = "memory_report.json"
FILES = (PACKED, RPK, DNN_PARAMS, MEMORY_REPORT)
"""Every file name the ``imx500/`` folder may hold (export writes all but the .rpk)."""
SENSOR_MEMORY_BYTES = 8 * 1024 * 1024
"""The IMX500's memory for the network: weights and activations together."""
REBUILT_TOLERANCE = 1e-5
"""Largest probability difference between the rebuilt tf.keras 2 model and Keras 3's (the
weights are copied bit for bit: only float summation order differs)."""
MAX_SIDE = 640
"""The largest input side of any network Raspberry Pi ships for the sensor (none documented)."""
TPC_VERSION = "4.0"
CALIBRATION_BATCH = 16
CONVERT_SECONDS = 3600
SCRIPT = Path(__file__).with_name("imx500_convert.py")
HEAD = ("pool", "dropout", "predictions")
"""The classifier's layers after the backbone (train/model.py), rebuilt by name."""


def preflight(model, config: dict) -> dict:
    """Refuse what the sensor cannot run before minutes are spent; the spec for the side script.

    Checks the model is this toolchain's classifier (image → preprocess → backbone → head),
    its input size, that its int8 weights alone fit the sensor's memory, then Java and a Python
    for the side venv, and makes the side venv (once, minutes).

    Raises:
        ExportError: naming what the sensor (or this machine) lacks and what to do.
    """
    from train import backbones
    from train.model import backbone_of

    spec = backbones.spec(config.get("backbone", backbones.DEFAULT_BACKBONE))
    names = [layer.name for layer in model.layers]
    try:
        base = backbone_of(model)
    except ValueError:
        base = None
    if base is None or names != ["image", "preprocess", base.name, *HEAD]:
        raise ExportError("imx500: the run's model is not an edge-train classifier (image, "
                          f"preprocess, a backbone, {', '.join(HEAD)}); the imx500 format "
                          "rebuilds that architecture only")
    h, w = int(model.input_shape[1]), int(model.input_shape[2])
    if max(h, w) > MAX_SIDE:
        raise ExportError(f"imx500: input {h}x{w} is larger than the {MAX_SIDE}-pixel side of "
                          "any network shipped for the sensor; train at a smaller --img-size")
    weight_bytes = model.count_params()
    if weight_bytes > SENSOR_MEMORY_BYTES:
        raise ExportError(f"imx500: {weight_bytes / 1e6:.1f} M weights (int8: as many bytes) "
                          f"do not fit the sensor's {SENSOR_MEMORY_BYTES / 2**20:.0f} MB; train "
                          "a smaller --alpha or backbone")
    check_java()
    ensure_venv()  # a missing Python says so here
    return {"application": spec.application, "alpha": float(config.get("alpha", 1.0)),
            "img_size": [h, w], "include_preprocessing_arg": spec.builtin_preprocessing,
            "backbone_layer": base.name, "model_name": model.name,
            "dropout": float(model.get_layer("dropout").rate),
            "classes": int(model.output_shape[-1]), "weights": "model.weights.h5",
            "sensor_offset": SENSOR_OFFSET, "sensor_scale": SENSOR_SCALE,
            "calibration_batch": CALIBRATION_BATCH, "tpc_version": TPC_VERSION}


_UNITS = {"B": 1, "KB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3}


def _bytes(text: str) -> int:
    found = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?B)\s*", str(text))
    if not found:
        raise ValueError(text)
    return round(float(found.group(1)) * _UNITS[found.group(2)])


def read_memory_report(converted: Path) -> dict:
    """The converter's memory report (``*_MemoryReport.json``): whether the network fits the
    sensor, the bytes it uses and their share of the memory on the chip.

    Raises:
        ExportError: no readable memory report came out of the converter.
    """
    reports = sorted(converted.glob("*MemoryReport.json"))
    try:
        report = json.loads(reports[0].read_text())["Memory Report"]
        used, total = _bytes(report["Memory Usage"]), _bytes(report["Total Memory Available On Chip"])
        return {"fits": bool(report["Fit In Chip"]), "bytes": used, "chip_bytes": total,
                "share": round(used / total, 4),
                "model_bytes": _bytes(report["Model Memory Physical Size"]),
                "runtime_bytes": _bytes(report["Runtime Memory Physical Size"])}
    except (IndexError, OSError, KeyError, ValueError, TypeError) as exc:
        raise ExportError(f"imx500: no readable memory report from the converter in {converted} "
                          f"({type(exc).__name__}: {exc}); cannot tell whether it fits the "
                          "sensor") from None


@dataclass
class Imx500Result:
    """What the side venv produced, checked: the files to put in the bundle and the numbers."""

    packed: Path
    params: DnnParams
    memory: dict
    float_probs: np.ndarray
    """The rebuilt tf.keras model's probabilities (with its Rescaling) on the first images."""
    quantized_probs: np.ndarray
    """The MCT-quantized sensor model's probabilities, fed what the sensor feeds."""
    seconds: float
    versions: dict


def convert(model, spec: dict, calibration: np.ndarray, evaluation: np.ndarray,
            work: Path) -> Imx500Result:
    """Run the side script on ``model`` in ``work`` and check what it made.

    Args:
        spec: :func:`preflight`'s.
        calibration: uint8 (N, H, W, 3), the images int8 calibrates on.
        evaluation: uint8 (M, H, W, 3), the evaluation images in order.

    Raises:
        ExportError: the side script or converter failed (its last line), the converted input
            is one the sensor would mis-scale, a shape unlike the run's.
    """
    python = ensure_venv()
    write_json(work / "spec.json", spec)
    model.save_weights(str(work / spec["weights"]))
    np.save(work / "calibration.npy", np.ascontiguousarray(calibration, np.uint8))
    np.save(work / "eval.npy", np.ascontiguousarray(evaluation, np.uint8))
    t0 = time.time()
    try:
        done = subprocess.run([str(python), str(SCRIPT), str(work)], capture_output=True,
                              text=True, timeout=CONVERT_SECONDS, env=clean_env(), cwd=work)
    except subprocess.TimeoutExpired:
        raise ExportError(f"imx500: the conversion took over {CONVERT_SECONDS} s") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()]
        raise ExportError(f"imx500: the conversion failed: {lines[-1] if lines else 'no output'}")
    converted = work / "converted"
    packed = converted / PACKED
    if not packed.is_file():
        raise ExportError(f"imx500: the converter wrote no {PACKED}")
    h, w = spec["img_size"]
    try:
        params = check_network(packed, h, w, spec["classes"])
    except ModelError as exc:
        raise ExportError(f"{exc}; nothing was written") from None
    result = json.loads((work / "result.json").read_text())
    return Imx500Result(packed=packed, params=params, memory=read_memory_report(converted),
                        float_probs=np.load(work / "float.npy"),
                        quantized_probs=np.load(work / "quantized.npy"),
                        seconds=round(time.time() - t0, 2), versions=result["versions"])


def write_bundle_files(folder: Path, result: Imx500Result) -> Path:
    """``folder/imx500/``: ``packerOut.zip`` and the memory report; returns the zip's path."""
    target = folder / FOLDER
    target.mkdir(exist_ok=True)
    write_bytes(target / PACKED, result.packed.read_bytes())
    write_json(target / MEMORY_REPORT, result.memory)
    return target / PACKED


def measurements(result: Imx500Result, truth: np.ndarray, keras_probs: np.ndarray) -> dict:
    """The manifest's measurements of the variant: accuracy, agreement and the paired counts
    of the quantized model fed what the sensor feeds, the sensor's input and memory."""
    from edge_runtime.manifest import RUNS_ON_SENSOR, Quantization
    from export.verify import mcnemar_p

    rebuilt = float(np.max(np.abs(result.float_probs - keras_probs[:len(result.float_probs)])))
    if rebuilt > REBUILT_TOLERANCE:
        raise ExportError(f"imx500: the model rebuilt for Sony's toolchain (tf.keras 2.15) "
                          f"answers unlike Keras 3 (probabilities up to {rebuilt:.2g} apart, "
                          f"more than {REBUILT_TOLERANCE:g}): the weights did not come across; "
                          "nothing was written")
    top1, keras_top1 = result.quantized_probs.argmax(1), keras_probs.argmax(1)
    right, keras_right = top1 == truth, keras_top1 == truth
    keras_only, variant_only = int(np.sum(keras_right & ~right)), int(np.sum(right & ~keras_right))
    tensor_in, tensor_out = result.params.input, result.params.output
    return {"accuracy": float(np.mean(right)), "agreement": float(np.mean(top1 == keras_top1)),
            "max_abs_diff": float(np.max(np.abs(result.quantized_probs - keras_probs))),
            "input_dtype": "int8" if tensor_in.signed else "uint8",
            "output_dtype": "int8" if tensor_out.signed else "uint8",
            "input_quantization": Quantization(tensor_in.scale, 0),
            "output_quantization": Quantization(tensor_out.scale, 0),
            "backend": "MCT-quantized Keras (the sensor's stand-in)",
            "extra": {"keras_only_correct": keras_only, "variant_only_correct": variant_only,
                      "mcnemar_p": mcnemar_p(keras_only, variant_only), "runs_on": RUNS_ON_SENSOR,
                      "rebuilt_max_abs_diff": rebuilt,
                      "memory": result.memory,
                      "sensor_input": {"format": "signed" if tensor_in.signed else "unsigned",
                                       "scale": tensor_in.scale,
                                       "shape": list(tensor_in.shape)},
                      "converter_versions": result.versions}}
