"""The verification table ``edge-export`` prints, and the number and name formats it uses."""

from __future__ import annotations

from common.formatting import signed
from edge_runtime.manifest import Manifest
from export.metadata import mediapipe_line


def format_table(manifest: Manifest) -> str:
    """Each variant's size, I/O types, accuracy, loss against Keras and agreement with it."""
    rows = [("variant", "size", "in/out", f"{manifest.eval_split} acc", "Δ pt", "agree",
             "max|Δp|")]
    keras = manifest.keras_accuracy
    rows.append(("keras", "", "float32", f"{keras:.3f}" if keras is not None else "", "",
                 "1.000", ""))
    for name, v in manifest.variants.items():
        drop = v.accuracy_drop_points
        rows.append((name, f"{v.bytes / 1e6:.2f} MB", f"{v.input_dtype}/{v.output_dtype}",
                     f"{v.accuracy:.3f}", signed(-drop) if drop is not None else "",
                     f"{v.agreement:.3f}", f"{v.max_abs_diff:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(mediapipe_line({n: v.input_dtype for n, v in manifest.variants.items()}))
    return "\n".join(lines)


def short_tensor_name(name: str) -> str:
    """The readable tail of a fused TFLite tensor name (the manifest keeps the full one).

    >>> short_tensor_name("m/net/block_10_project_BN/add;m/net/block_10_project/convolution")
    'block_10_project_BN/add'
    """
    return "/".join(name.split(";")[0].split("/")[-2:])


