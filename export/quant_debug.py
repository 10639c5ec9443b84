"""Per-layer int8 error from TensorFlow's ``QuantizationDebugger``: ``quant_report.csv``, each
layer measured against the floor that rounding alone sets, and the layers worth keeping in float.

The debugger runs each quantized op beside a float copy fed the same (dequantized) inputs, so a
layer's error is its own: the rounding of its output to the int8 grid plus what quantizing its
weights or requantizing its inputs adds. Rounding alone leaves an error uniform over
±scale/2, whose RMSE is scale/√12: rmse/scale ≈ 0.289 (:data:`NOISE_FLOOR`) is the least any
int8 layer shows. A layer near it is noise: keeping it in float buys nothing. Only a layer
clearly above it (:data:`SIGNAL_FACTOR`) loses something rounding does not explain.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np

from common.progress import progress_bar
from common.quiet import quiet_output
from export.convert import make_converter, representative_dataset
from export.formats import FORMATS

REPORT_FILE = "quant_report.csv"
REPORT_FIELDS = ("op_name", "tensor_name", "rmse_over_scale", "times_floor", "verdict",
                 "mean_error", "max_abs_error", "mean_squared_error", "scale", "zero_point",
                 "num_elements")

NOISE_FLOOR = 1 / math.sqrt(12)
"""rmse/scale of rounding alone: an error uniform over ±scale/2 has an RMSE of scale/√12."""
SIGNAL_FACTOR = 2.0
"""A layer is signal from this many times :data:`NOISE_FLOOR` (rmse/scale ≥ 0.577).

Independent errors add in variance, so a layer at twice the floor carries three times the
error variance rounding explains: something else (a weight range that crushes most weights,
a badly requantized input) dominates it. Layers of healthy models sit below: 0.29–0.39
(≤ 1.35×) on every layer of a MobileNetV2 in issue 19, 0.19–0.47 (≤ 1.61×) on the test suite's
64-px MobileNetV2, 0.23–0.42 (≤ 1.46×) on a tiny random CNN, so twice the floor calls none of
those signal, while a layer with a planted weight outlier measures hundreds of times the floor
(tests/test_quant_debug.py)."""
SIGNAL_THRESHOLD = SIGNAL_FACTOR * NOISE_FLOOR
SIGNAL, NOISE = "signal", "noise"


@dataclass(frozen=True)
class QuantReport:
    """What ``--debug-quant`` / ``--keep-float`` found: every layer, worst first, and the
    layers kept in float."""

    rows: list[dict]
    """:func:`quantization_report`'s rows (``verdict`` signal or noise), worst first."""
    requested: int = 0
    """``--keep-float N``: the most layers asked to stay in float (0: none asked)."""
    float_layers: tuple[str, ...] = ()
    """Tensor names kept in float: signal layers only, the worst ``requested`` of them."""

    @property
    def signal(self) -> list[dict]:
        """The layers clearly above the rounding-noise floor, worst first."""
        return [r for r in self.rows if r["verdict"] == SIGNAL]


def verdict(rmse_over_scale: float) -> str:
    """:data:`SIGNAL` from :data:`SIGNAL_THRESHOLD` up, :data:`NOISE` below it."""
    return SIGNAL if rmse_over_scale >= SIGNAL_THRESHOLD else NOISE


def plan_float_layers(rows: list[dict], n: int) -> QuantReport:
    """The report of ``rows`` with the (at most) ``n`` worst *signal* layers to keep in float.

    Noise layers are never picked: keeping them in float costs size and latency and, at the
    floor, recovers nothing. Fewer than ``n`` (or no) layers when fewer stand out.
    """
    signal = [r["tensor_name"] for r in rows if r["verdict"] == SIGNAL and r["tensor_name"]]
    return QuantReport(rows=rows, requested=n, float_layers=tuple(signal[:n]))


def quantization_report(model, calibration: np.ndarray, progress: bool = True) -> list[dict]:
    """Per-layer int8 error on the calibration images, worst first.

    Layers are ranked by RMSE divided by the quantization scale, and each is
    called signal or noise against :data:`NOISE_FLOOR` (see :func:`verdict`). The
    model's I/O type does not change the layer errors, so float32 I/O is used.
    With ``progress``, a bar counts the images through both passes (calibration, then
    float against int8 layer by layer).
    """
    import tensorflow as tf

    with progress_bar(2 * len(calibration), "quantization debugger (calibrate, compare)",
                      progress) as bar:
        converter = make_converter(model, FORMATS["int8"], calibration, "float32", bar)
        with quiet_output():
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=representative_dataset(calibration, bar))
            debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row.get("scale") or 0)
        mse = float(row.get("mean_squared_error") or 0)
        rmse_over_scale = math.sqrt(mse) / scale if scale else 0.0
        rows.append({
            "op_name": row.get("op_name", ""),
            "tensor_name": row.get("tensor_name", ""),
            "rmse_over_scale": rmse_over_scale,
            "times_floor": round(rmse_over_scale / NOISE_FLOOR, 3),
            "verdict": verdict(rmse_over_scale),
            "mean_error": float(row.get("mean_error") or 0),
            "max_abs_error": float(row.get("max_abs_error") or 0),
            "mean_squared_error": mse,
            "scale": scale,
            "zero_point": int(float(row.get("zero_point") or 0)),
            "num_elements": int(float(row.get("num_elements") or 0)),
        })
    rows.sort(key=lambda r: r["rmse_over_scale"], reverse=True)
    return rows


def report_csv(rows: list[dict]) -> str:
    """The ``quant_report.csv`` text of :func:`quantization_report`'s rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
