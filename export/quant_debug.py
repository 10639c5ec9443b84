"""Per-layer int8 error from TensorFlow's ``QuantizationDebugger``: ``quant_report.csv``."""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from edge_runtime.quiet import quiet_output
from export.convert import make_converter, representative_dataset
from export.formats import FORMATS

REPORT_FILE = "quant_report.csv"
REPORT_FIELDS = ("op_name", "tensor_name", "rmse_over_scale", "mean_error", "max_abs_error",
                 "mean_squared_error", "scale", "zero_point", "num_elements")


def quantization_report(model, calibration: np.ndarray) -> list[dict]:
    """Per-layer int8 error on the calibration images, worst first.

    Layers are ranked by RMSE divided by the quantization scale: an error of
    several quantization steps means the layer's range is badly fitted. The
    model's I/O type does not change the layer errors, so float32 I/O is used.
    """
    import tensorflow as tf

    converter = make_converter(model, FORMATS["int8"], calibration, "float32")
    with quiet_output():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_dataset(calibration))
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


def report_csv(rows: list[dict]) -> str:
    """The ``quant_report.csv`` text of :func:`quantization_report`'s rows."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
