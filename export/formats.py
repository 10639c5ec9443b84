"""The export formats as data: one row per variant, read by the converter set-up."""

from __future__ import annotations

from dataclasses import dataclass

from edge_runtime.manifest import RUNS_ON_CPU, RUNS_ON_SENSOR


@dataclass(frozen=True)
class ExportFormat:
    """How one TFLite variant is converted."""

    name: str
    """Key in ``--formats`` and in the manifest's ``variants``."""
    file: str
    """File name inside ``export/``."""
    description: str
    """One line for ``--help`` and the report."""
    optimize: bool = False
    """Apply ``tf.lite.Optimize.DEFAULT`` (weight quantization)."""
    float16: bool = False
    """Store weights as float16."""
    full_integer: bool = False
    """int8 weights and activations, calibrated; builtin int8 ops only."""
    runs_on: str = RUNS_ON_CPU
    """Where the variant runs, the manifest's ``runs_on``: "cpu" (a ``.tflite`` the edge
    runtime's interpreter runs, made by :mod:`export.convert`) or "imx500" (a network for the
    Raspberry Pi AI Camera's sensor, made by Sony's toolchain in a side venv:
    :mod:`export.imx500`)."""

    @property
    def on_cpu(self) -> bool:
        """True for a ``.tflite`` the interpreter runs (as :attr:`Variant.on_cpu
        <edge_runtime.manifest.Variant.on_cpu>` says of the variant it becomes)."""
        return self.runs_on == RUNS_ON_CPU


FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("fp32", "model_fp32.tflite", "float32 weights and activations"),
    ExportFormat("fp16", "model_fp16.tflite", "float16 weights, float32 compute",
                 optimize=True, float16=True),
    ExportFormat("dynamic", "model_dynamic.tflite", "int8 weights, float activations",
                 optimize=True),
    ExportFormat("int8", "model_int8.tflite",
                 "full-integer int8 weights and activations, calibrated on the train split",
                 optimize=True, full_integer=True),
    ExportFormat("imx500", "imx500/packerOut.zip",
                 "the Raspberry Pi AI Camera's sensor (IMX500): int8 by Sony's MCT, calibrated "
                 "as int8, converted by imxconv-tf (a side venv with TensorFlow 2.15 and Java 17)",
                 full_integer=True, runs_on=RUNS_ON_SENSOR),
)}
DEFAULT_FORMATS = ("fp32", "fp16", "int8")
INT8_IO_TYPES = ("uint8", "int8", "float32")
SELECTIVE = ExportFormat("int8_keepfloat", "model_int8_keepfloat.tflite",
                         "int8 with the most damaged layers kept in float",
                         optimize=True, full_integer=True)


def parse_formats(text: str) -> tuple[str, ...]:
    """``"fp32,int8"`` → ("fp32", "int8"); raises ValueError naming the valid keys."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise ValueError(f"--formats {text!r}: unknown {', '.join(unknown) or '(empty)'}; "
                         f"expected a comma-separated list of {', '.join(FORMATS)}")
    return names
