"""The verification table ``edge-export`` prints, the guard's message, and the number and name
formats they use."""

from __future__ import annotations

import math

from common.formatting import signed
from edge_runtime.manifest import Manifest, Variant
from export.auto_float import NO_SIGNAL, NO_VALIDATION, OFF, REACHED, WITHIN, AutoFloat
from export.metadata import mediapipe_line
from export.quant_debug import NOISE_FLOOR, REPORT_FILE, SIGNAL_FACTOR, QuantReport
from export.ranges import SETTLED_WIDENING
from export.verify import SIGNIFICANCE_LEVEL, difference_kind

PAIRED_NOTE = ("won/lost: {split} images only the variant / only Keras got right; p: exact "
               f"McNemar test on them; Δ is noise at p ≥ {SIGNIFICANCE_LEVEL:g}")


def format_table(manifest: Manifest) -> str:
    """Each variant's size, I/O types, accuracy, loss against Keras, the images it won and lost
    against Keras with the significance of that difference, and its agreement with Keras.

    The won/lost columns are left out for a manifest written before export counted them.
    """
    paired = {name: _paired(v) for name, v in manifest.variants.items()}
    with_paired = any(p is not None for p in paired.values())
    rows = [("variant", "size", "in/out", f"{manifest.eval_split} acc", "Δ pt")
            + (("won/lost", "p", "Δ is") if with_paired else ()) + ("agree", "max|Δp|")]
    keras = manifest.keras_accuracy
    rows.append(("keras", "", "float32", f"{keras:.3f}" if keras is not None else "", "")
                + ("", "", "") * with_paired + ("1.000", ""))
    for name, v in manifest.variants.items():
        drop = v.accuracy_drop_points
        cells = ("", "", "")
        if paired[name] is not None:
            keras_only, variant_only, p_value = paired[name]
            cells = (f"{variant_only}/{keras_only}", format_p(p_value),
                     difference_kind(keras_only, variant_only, p_value))
        rows.append((name, f"{v.bytes / 1e6:.2f} MB", f"{v.input_dtype}/{v.output_dtype}",
                     f"{v.accuracy:.3f}", signed(-drop) if drop is not None else "")
                    + cells * with_paired + (f"{v.agreement:.3f}", f"{v.max_abs_diff:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if with_paired:
        lines.append(PAIRED_NOTE.format(split=manifest.eval_split))
    int8 = int8_line(manifest)
    if int8:
        lines.append(int8)
    lines.append(mediapipe_line({n: v.input_dtype for n, v in manifest.cpu_variants().items()}))
    sensor = imx500_line(manifest)
    if sensor:
        lines.append(sensor)
    return "\n".join(lines)


def imx500_line(manifest: Manifest) -> str | None:
    """The line under the table on the AI Camera's network: what its row measured and the
    converter's memory report; None without an imx500 variant."""
    found = manifest.sensor_variant()
    if found is None:
        return None
    name, v = found
    memory = v.extra.get("memory") or {}
    fits = "fits the sensor" if memory.get("fits") else "does NOT fit the sensor"
    share = memory.get("share")
    used = (f" ({memory.get('bytes', 0) / 2**10:.0f} KB, {100 * share:.0f} % of its "
            f"{memory.get('chip_bytes', 0) / 2**20:.0f} MB)" if share is not None else "")
    return (f"{name}: accuracy of the MCT-quantized model fed what the sensor feeds "
            f"((p - 128) / 128); {fits}{used}; on the Pi: edge-classify --model "
            f"BUNDLE/{v.file} --camera imx500")


def guard_message(manifest: Manifest, failures: list[str], limit: float) -> str:
    """The one line saying which variants lost more than ``limit`` points and, for each,
    whether that loss is significant or within noise (McNemar, see :mod:`export.verify`),
    e.g. ``int8 lost more than 1 accuracy point(s) against Keras: int8 −1.50 pt on 400 test
    images (won 3, lost 9), within noise (McNemar p = 0.146 ≥ 0.05: ...)``.
    """
    verdicts = []
    for name in failures:
        v = manifest.variants[name]
        text = f"{name} {signed(-(v.accuracy_drop_points or 0.0), 2)} pt"
        paired = _paired(v)
        if paired is not None:
            keras_only, variant_only, p_value = paired
            text += (f" on {manifest.num_eval} {manifest.eval_split} images (won {variant_only}, "
                     f"lost {keras_only}), ")
            if difference_kind(keras_only, variant_only, p_value) == "loss":
                text += f"a significant loss (McNemar p = {format_p(p_value)})"
            else:
                text += (f"within noise (McNemar p = {format_p(p_value)} ≥ "
                         f"{SIGNIFICANCE_LEVEL:g}: more evaluation images would tell)")
        verdicts.append(text)
    int8 = int8_line(manifest) if "int8" in failures else None
    return (f"{', '.join(failures)} lost more than {limit:g} accuracy point(s) against Keras: "
            + "; ".join(verdicts) + (f". What export tried: {int8}" if int8 else ""))


def format_p(p: float) -> str:
    """A p-value for people: three decimals, or ``<0.001``."""
    return f"{p:.3f}" if p >= 0.001 else "<0.001"


def _paired(v: Variant) -> tuple[int, int, float] | None:
    """(keras_only_correct, variant_only_correct, mcnemar_p), or None for a manifest written
    before export counted them."""
    keys = ("keras_only_correct", "variant_only_correct", "mcnemar_p")
    if not all(k in v.extra for k in keys):
        return None
    return int(v.extra[keys[0]]), int(v.extra[keys[1]]), float(v.extra[keys[2]])


def calibration_line(calibration: dict | None) -> str | None:
    """One line on how settled the calibration ranges were (the manifest's ``calibration``
    entry, see :mod:`export.ranges`), e.g. ``calibration: 200 train images; the last 100
    widened no layer's range by more than 3 % (settled)``; None without a measurement.

    A larger set is suggested only when the train split holds more images.
    """
    ranges = (calibration or {}).get("ranges")
    if not ranges:
        return None
    images, last = ranges["images"], ranges["images"] - ranges["first_half"]
    percent = math.ceil(100 * ranges["widening"])
    head = f"calibration: {images} train images; "
    if ranges["settled"]:
        return (head + f"the last {last} widened no layer's range by more than {percent} % "
                       "(settled)")
    available = calibration.get("train_images", images)
    more = (f"try --calibration-samples {min(4 * images, available)}" if available > images
            else "the train split holds no more images: more training images would")
    return (head + f"warning: the last {last} widened {ranges['layer']}'s range by {percent} % "
                   f"(≥ {100 * SETTLED_WIDENING:g} %): ranges had not settled; {more}")


SHOWN_SIGNAL_LAYERS = 10
"""Signal layers listed by name in the printed report; the CSV has them all."""


def format_quant_report(report: QuantReport) -> str:
    """What ``--debug-quant`` and ``--keep-float`` found, for people: the layers that stand out
    above the rounding-noise floor (or, plainly, that none does and what helps instead), and
    which layers were kept in float."""
    rows, signal = report.rows, report.signal
    lines = [f"{REPORT_FILE}: {len(rows)} int8 layer(s) against the rounding-noise floor "
             f"(rmse/scale {NOISE_FLOOR:.3f} = 1/√12; signal from {SIGNAL_FACTOR:g}× it)"]
    noise = [r for r in rows if r not in signal]
    if signal:
        for r in signal[:SHOWN_SIGNAL_LAYERS]:
            lines.append(f"  signal  {r['times_floor']:6.2f}× floor  rmse/scale "
                         f"{r['rmse_over_scale']:.3f}  {short_tensor_name(r['tensor_name'])}")
        if len(signal) > SHOWN_SIGNAL_LAYERS:
            lines.append(f"  ... and {len(signal) - SHOWN_SIGNAL_LAYERS} more signal layer(s) "
                         f"in {REPORT_FILE}")
        if noise:
            lines.append(f"  the other {len(noise)} layer(s) are noise (at most "
                         f"{noise[0]['times_floor']:.2f}× the floor)")
    elif rows:
        low, high = rows[-1]["rmse_over_scale"], rows[0]["rmse_over_scale"]
        lines.append(f"no layer stands out: every layer's rmse/scale is {low:.2f}–{high:.2f} "
                     f"(at most {rows[0]['times_floor']:.2f}× the floor), rounding noise. "
                     f"Keeping layers in float will not help; what can: {REMEDY}")
    if report.requested:
        kept = ", ".join(short_tensor_name(t) for t in report.float_layers)
        asked = f"--keep-float {report.requested}"
        if not report.float_layers:
            lines.append(f"{asked}: no layer stands out above the noise floor, so none was kept "
                         "in float (no int8_keepfloat variant)")
        elif len(report.float_layers) < report.requested:
            lines.append(f"{asked}: only {len(report.float_layers)} layer(s) stand out above "
                         f"the noise floor; kept those in float (int8_keepfloat): {kept}")
        else:
            lines.append(f"{asked}: kept the {len(report.float_layers)} worst signal layer(s) "
                         f"in float (int8_keepfloat): {kept}")
    return "\n".join(lines)


REMEDY = "more calibration images (--calibration-samples) or quantization-aware training"
"""What helps int8 when keeping layers in float does not."""


def _paired_words(keras_only: int, int8_only: int, p_value: float) -> str:
    """``won 1, lost 5, McNemar p = 0.219: within noise``."""
    kind = difference_kind(keras_only, int8_only, p_value)
    words = {"loss": "a significant loss", "gain": "a significant gain", "noise": "within noise",
             "same": "no difference"}[kind]
    return f"won {int8_only}, lost {keras_only}, McNemar p = {format_p(p_value)}: {words}"


def _remedy(calibration: dict | None) -> str:
    """What could help int8 instead of float layers, with the calibration size to try."""
    images = (calibration or {}).get("samples", 0)
    available = (calibration or {}).get("train_images", images)
    more = (f"more calibration images (--calibration-samples {min(4 * images, available)})"
            if available > images else "more training images (calibration used all)")
    return f"{more}, quantization-aware training (not offered here: see docs/export.md)"


def int8_line(manifest: Manifest) -> str | None:
    """One line on what the export did to keep int8 near Keras and how that went, from the
    manifest's ``int8_target_drop`` entry (see :mod:`export.auto_float`): plain int8's loss on
    validation and whether it is noise, then either "within the target", or the layers kept in
    float with their size and latency cost, or what was tried (calibration size and
    settledness, the debugger's verdict) and what could help. None without int8 or the entry.

    e.g. ``int8 on val: −1.33 pt against Keras (won 1, lost 5, McNemar p = 0.219: within
    noise), past the 0.5-pt target; tried: 200 calibration images (ranges settled), the
    quantization debugger (no layer above the rounding-noise floor, worst 1.35×: the loss is
    rounding noise), so plain int8; what could help: ...``
    """
    entry = manifest.extra.get("int8_target_drop")
    if "int8" not in manifest.variants or not entry:
        return None
    outcome, points, split = entry["outcome"], entry["points"], entry.get("split", "val")
    if outcome == OFF:
        return f"int8 on {split}: not checked against a target (--int8-target-drop off)"
    if outcome == NO_VALIDATION:
        return (f"int8 on {split}: not checked against the {points:g}-pt target: the run has no "
                "validation images")
    keras = entry["keras_accuracy"]
    head = f"int8 on {split}: {signed(-100 * (keras - entry['int8_accuracy']), 2)} pt against Keras"
    paired = entry.get("paired")
    if paired:
        head += " (" + _paired_words(paired["keras_only_correct"], paired["int8_only_correct"],
                                     paired["mcnemar_p"]) + ")"
    if outcome == WITHIN:
        return head + f", within the {points:g}-pt target: plain int8"
    head += f", past the {points:g}-pt target"
    calibration = manifest.extra.get("calibration")
    kept = entry["float_layers"]
    if kept:
        extra = entry["bytes"] - entry["plain_bytes"]
        cost = f"size {signed(100 * extra / entry['plain_bytes'], 1)} %"
        latency = entry.get("latency_ms")
        if latency:
            cost += (f", latency {latency['plain']:.2f} → {latency['chosen']:.2f} ms on the "
                     "export machine")
        text = (f"{head}; kept {len(kept)} layer(s) in float: "
                f"{signed(-100 * (keras - entry['accuracy']), 2)} pt "
                f"({'target reached' if outcome == REACHED else 'target not reached'}), {cost}")
        return text if outcome == REACHED else f"{text}; what could help: {_remedy(calibration)}"
    tried = []
    ranges = (calibration or {}).get("ranges")
    if calibration:
        settled = ("ranges settled" if ranges and ranges["settled"] else
                   "ranges had not settled" if ranges else "settledness not measured")
        tried.append(f"{calibration.get('samples')} calibration images ({settled})")
    debugger = entry.get("debugger")
    if outcome == NO_SIGNAL and debugger:
        tried.append(f"the quantization debugger (no layer of {debugger['layers']} above the "
                     f"rounding-noise floor, worst {debugger['worst_times_floor']:.2f}×: the "
                     "loss is rounding noise)")
    elif entry["steps"]:
        tried.append(f"{len(entry['steps'])} signal layer(s) in float (none raised {split} "
                     "accuracy)")
    return (f"{head}; tried: {', '.join(tried)}, so plain int8; what could help: "
            f"{_remedy(calibration)}")


def format_auto_float(auto: AutoFloat, split: str = "val") -> str:
    """What ``--int8-target-drop`` did, for people: plain int8's loss on ``split``, each layer
    tried, what was kept and what it cost in size and latency, or plainly that nothing was kept
    and why."""
    head = f"--int8-target-drop {auto.target:g}: "
    plain_drop = 100 * (auto.keras_accuracy - auto.plain_accuracy)
    loss = (f"int8 {signed(-plain_drop, 2)} pt against Keras on {split} "
            f"({auto.plain_accuracy:.3f} vs {auto.keras_accuracy:.3f}"
            + (f"; {_paired_words(*auto.paired)}" if auto.paired else "") + ")")
    if auto.outcome == WITHIN:
        return head + loss + ": within the target, plain int8 kept"
    if auto.outcome == NO_SIGNAL:
        return (head + loss + ": no layer stands out above the rounding-noise floor, so none "
                "was kept in float (plain int8): the loss is rounding noise spread over the layers, "
                f"which float layers cannot fix; what can: {REMEDY}")
    lines = [head + loss + "; signal layers tried worst first:"]
    for step in auto.steps:
        lines.append(f"  {'kept   ' if step.kept else 'dropped'}  {split} acc {step.accuracy:.3f}"
                     f"  {short_tensor_name(step.layer)}")
    if not auto.float_layers:
        lines.append(f"no signal layer raised {split} accuracy: plain int8 kept; what can help "
                     f"instead: {REMEDY}")
        return "\n".join(lines)
    extra = len(auto.model) - auto.plain_bytes
    status = "target reached" if auto.drop <= auto.target + 0.005 else "target not reached"
    lines.append(f"kept {len(auto.float_layers)} layer(s) in float in model_int8.tflite "
                 f"({status}): {split} {signed(-auto.drop, 2)} pt (was {signed(-plain_drop, 2)});"
                 f" size {auto.plain_bytes:,} → {len(auto.model):,} bytes "
                 f"({'+' if extra >= 0 else '−'}{abs(extra):,}, "
                 f"{signed(100 * extra / auto.plain_bytes, 1)} %)"
                 + (f"; latency {auto.latency_ms[0]:.2f} → {auto.latency_ms[1]:.2f} ms "
                    f"({signed(100 * (auto.latency_ms[1] / auto.latency_ms[0] - 1), 1)} %, "
                    "interleaved on this machine)" if auto.latency_ms else ""))
    return "\n".join(lines)


def short_tensor_name(name: str) -> str:
    """The readable tail of a fused TFLite tensor name (the manifest keeps the full one).

    >>> short_tensor_name("m/net/block_10_project_BN/add;m/net/block_10_project/convolution")
    'block_10_project_BN/add'
    """
    return "/".join(name.split(";")[0].split("/")[-2:])
