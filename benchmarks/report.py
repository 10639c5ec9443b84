"""The benchmark's report: rows from measurements, verdicts, the Markdown table, and the files.

One report for both benchmarks: ``edge-bench RUN`` (Keras and every variant, workstation) and
``edge-bench BUNDLE`` (the variants alone, on the device). A report is a JSON-ready dict;
report.json is that dict, report.md is :func:`format_markdown` of it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from benchmarks.machine import describe
from benchmarks.thermal import describe_thermal
from benchmarks.timing import ModelResult
from common.figures import missing
from common.fileio import write_json, write_text
from common.formatting import signed

KERAS_ROWS = {
    "keras": "`model.predict(x[None], verbose=0)` on one image: how most scripts call Keras; "
             "includes predict()'s per-call set-up, so it is not a fair compute baseline",
    "keras_compiled": "`tf.function(lambda x: model(x, training=False))` on a ready tensor: "
                      "the fair Keras baseline (on a GPU the clock stops after the device has "
                      "finished: tf.test.experimental.sync_devices())",
}
"""The two ways the Keras model is timed, and what each row means (printed in report.md)."""

TFLITE_TIMING = ("`Classifier.invoke()` through edge_runtime (the code that ships); "
                 "feeding the input (quantization) and output (dequantization) are not timed")

REFERENCE = "fp32"
"""Variants are compared with this one; without it, with ``keras_compiled``."""

PLOTS = ("latency.png", "accuracy_size.png")

log = logging.getLogger(__name__)


def _median_of_medians(result: ModelResult) -> float:
    return float(np.median(result.repeat_medians_ms))


def _spread(result: ModelResult) -> float:
    return float(max(result.repeat_medians_ms) - min(result.repeat_medians_ms))


def reference_name(names: list[str]) -> str | None:
    """The row the others are compared with: fp32 when there, else compiled Keras, else the
    first row (a bundle exported without fp32); None without rows."""
    for candidate in (REFERENCE, "keras_compiled"):
        if candidate in names:
            return candidate
    return names[0] if names else None


def compared_with(name: str, names: list[str]) -> str | None:
    """Which row ``name``'s speed is judged against (None: it is the baseline).

    Variants against the reference (fp32); the reference against compiled
    Keras when there is one (the workstation bench); predict() against
    compiled Keras (its per-call overhead); compiled Keras against the reference.
    """
    ref = reference_name(names)
    if name == ref:
        return "keras_compiled" if name != "keras_compiled" and "keras_compiled" in names \
            else None
    if name == "keras" and "keras_compiled" in names:
        return "keras_compiled"
    return ref


def build_rows(results: dict[str, ModelResult], repeats: int) -> list[dict]:
    """The ``rows`` of report.json: contract keys plus spread and noise information.

    A row is ``noisy`` when the range of its (or its baseline's) per-repeat
    medians is wider than the speed difference it shows against that
    baseline: the difference could be the machine, not the model. With a
    single repeat there is no spread to judge by, and ``noisy`` is None.
    """
    names = list(results)
    rows = []
    for name, r in results.items():
        lat = np.asarray(r.latencies_ms)
        p50, p90, p99 = (float(v) for v in np.percentile(lat, [50, 90, 99]))
        medians = r.repeat_medians_ms
        base_name = compared_with(name, names)
        speedup = noisy = None
        if base_name is not None:
            base = results[base_name]
            speedup = _median_of_medians(base) / _median_of_medians(r)
            if repeats >= 2:
                difference = abs(_median_of_medians(r) - _median_of_medians(base))
                noisy = max(_spread(r), _spread(base)) > difference
        rows.append({
            "model": name,
            "kind": r.kind,
            "file": r.file,
            "accuracy": r.accuracy,
            "agreement": r.agreement,
            "size_bytes": r.size_bytes,
            "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "mean": float(lat.mean()),
                           "min": float(lat.min()), "max": float(lat.max())},
            "throughput_ips": len(lat) / r.loop_seconds if r.loop_seconds else None,
            "peak_rss_mb": r.memory.get("peak_rss_mb"),
            "baseline_rss_mb": r.memory.get("baseline_rss_mb"),
            "load_seconds": r.memory.get("load_seconds"),
            "first_inference_ms": r.memory.get("first_inference_ms"),
            "runs": len(lat),
            "repeat_medians_ms": medians,
            "spread_ms": {"min": float(min(medians)), "median": float(np.median(medians)),
                          "max": float(max(medians))},
            "compared_with": base_name,
            "speedup": speedup,
            "noisy": noisy,
            **r.details,
        })
    return rows


def _ratio(value: float, above: str, below: str) -> str:
    """``1.7× faster`` or ``1.7× slower``; two decimals near 1, where ``1.0×`` says nothing."""
    word, factor = (above, value) if value >= 1 else (below, 1 / value)
    return f"{factor:.2f}× {word}" if factor < 1.1 else f"{factor:.1f}× {word}"


def verdict(row: dict, base: dict) -> str:
    """One line such as ``int8: −0.4 pt accuracy, 3.9× smaller, 1.7× faster than fp32``."""
    points = 100 * (row["accuracy"] - base["accuracy"])
    size_text = _ratio(base["size_bytes"] / row["size_bytes"], "smaller", "larger")
    speed_text = _ratio(row["speedup"], "faster", "slower")
    line = (f"{row['model']}: {signed(points)} pt accuracy, {size_text}, {speed_text} than "
            f"{base['model']}")
    if row["noisy"]:
        spread = max(s["spread_ms"]["max"] - s["spread_ms"]["min"] for s in (row, base))
        difference = abs(row["spread_ms"]["median"] - base["spread_ms"]["median"])
        line += (f" (noisy: repeat medians spread over {spread:.2f} ms, more than the "
                 f"{difference:.2f} ms difference; the speed ratio is not trustworthy)")
    return line


def verdicts(rows: list[dict]) -> dict[str, str]:
    """A verdict per TFLite variant that has a baseline: fp32 against compiled Keras (when
    benchmarked), the others against fp32."""
    by_name = {r["model"]: r for r in rows}
    return {row["model"]: verdict(row, by_name[row["compared_with"]])
            for row in rows if row["kind"] == "tflite" and row["compared_with"]}


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.2f}"


def _num(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _same_answers(agreement: dict | None) -> str:
    """A ``workstation_agreement`` cell: ``300/300``, ``298/300 ⚠`` or ``n/a``."""
    if agreement is None:
        return "n/a"
    flag = "" if agreement["same"] == agreement["images"] else " ⚠"
    return f"{agreement['same']}/{agreement['images']}{flag}"


def _on_device(report: dict) -> bool:
    """Whether the report is the device bench's (a bundle's evaluation set)."""
    return report["eval"].get("source") == "bundle"


def format_table(report: dict) -> str:
    """The Markdown table of report.md, also printed at the end of ``edge-bench``."""
    device = _on_device(report)
    header = ("model", "accuracy", "agreement",
              *(("same as workstation",) if device else ()), "size MB", "p50 ms", "p90 ms",
              "p99 ms", "mean ms", "repeat medians min/med/max ms", "img/s", "peak RSS MB",
              "load s")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in report["rows"]:
        lat, spread = row["latency_ms"], row["spread_ms"]
        flag = " ⚠ noisy" if row["noisy"] else ""
        same = (_same_answers(row.get("workstation_agreement")),) if device else ()
        cells = (row["model"], f"{row['accuracy']:.3f}", f"{row['agreement']:.3f}", *same,
                 _mb(row["size_bytes"]), f"{lat['p50']:.2f}", f"{lat['p90']:.2f}",
                 f"{lat['p99']:.2f}", f"{lat['mean']:.2f}",
                 f"{spread['min']:.2f} / {spread['median']:.2f} / {spread['max']:.2f}{flag}",
                 _num(row["throughput_ips"], ".1f"), _num(row["peak_rss_mb"], ".0f"),
                 _num(row["load_seconds"], ".3f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def workstation_lines(report: dict) -> list[str]:
    """report.md's paragraph on "same as workstation": what the column means, and each variant
    whose answers here differ from the workstation's, or why the column is unavailable."""
    if not _on_device(report):
        return []
    lines = ["**same as workstation**: on how many evaluation images each variant gave the "
             "answer it gave on the workstation at export (the same pixels, through the same "
             "edge runtime): the check that this machine's kernels compute what export "
             "verified."]
    missing = []
    for row in report["rows"]:
        agreement = row.get("workstation_agreement")
        if agreement is None:
            missing.append(row["model"])
        elif agreement["same"] != agreement["images"]:
            lines.append(
                f"⚠ {row['model']}: same answers as the workstation on {agreement['same']} of "
                f"{agreement['images']} images. Not an error: this machine's kernels round "
                "differently from the workstation's; accuracy and agreement above show what "
                "it costs.")
    if missing:
        lines.append(f"Same answers as the workstation: not available for {', '.join(missing)}"
                     ": the bundle's evaluation set holds no workstation answers for "
                     f"{'it' if len(missing) == 1 else 'them'} (exported by an older "
                     "edge-export; re-export to get this check).")
    return lines


def _data_sentence(report: dict) -> str:
    e = report["eval"]
    if e.get("source") == "bundle":
        return (f"Data: the bundle's evaluation set, {e['images']} images of the {e['split']} "
                "split as export preprocessed them (uint8), with their labels and Keras's "
                "top-1 answers: agreement is with Keras as export ran it on the workstation.")
    return f"Data: {e['images']} images of the {e['split']} split."


def format_markdown(report: dict) -> str:
    """The whole of report.md: context, table, what each row times, and the verdicts."""
    s = report["settings"]
    keras_rows = [r["model"] for r in report["rows"] if r["kind"] == "keras"]
    tflite_rows = [r["model"] for r in report["rows"] if r["kind"] == "tflite"]
    title = (f"# Device benchmark of {report['bundle']}" if report.get("bundle")
             else f"# Benchmark of {report['run']}")
    if report.get("network"):
        title += f" ({report['network']})"
    if report.get("exported_by"):
        title += f"\n\nExported by edge-toolchain {report['exported_by']}."
    memory = ("Peak RSS and load time come from a fresh process per model"
              + (" (TensorFlow's own footprint included for the Keras rows)." if keras_rows
                 else ", which imports only the edge runtime, as an application would.")
              if s.get("memory") else "Memory was not measured (--no-memory).")
    lines = [
        title,
        "",
        describe(report["machine"]),
        "",
        *(f"{line}\n" for line in describe_thermal(report["machine"].get("thermal"))),
        f"{_data_sentence(report)} Timing: {s['warmup']} warm-up then {s['runs']} timed "
        f"single-image inferences per model, interleaved round-robin in {s['repeats']} "
        "repeats. Latency percentiles pool every timed run; speed ratios and the noise check "
        "use the median of the per-repeat medians. Throughput is images/s at batch 1 over the "
        f"whole loop (input set-up, inference, output). {memory}",
        "",
        format_table(report),
        "",
        *(f"{line}\n" for line in workstation_lines(report)),
        "What each row times:",
        *(f"- **{name}**: {KERAS_ROWS[name]}" for name in keras_rows),
        f"- **{', '.join(tflite_rows)}**: {TFLITE_TIMING}.",
        "",
        "## Verdicts",
        "",
        *(f"- {line}" for line in report["verdicts"].values()),
        "",
    ]
    if not report["verdicts"]:
        lines.insert(-1, "(one model: nothing to compare it with)")
    noisy = [r["model"] for r in report["rows"] if r["noisy"]]
    if noisy:
        lines += [f"⚠ noisy: {', '.join(noisy)}: the machine's load varied more between repeats "
                  "than these models differ from the reference; rerun with more --runs/--repeats "
                  "on a quieter machine before trusting their speed ratios.", ""]
    if report.get("plots_missing"):
        lines += [f"No plots: {report['plots_missing']}.", ""]
    return "\n".join(lines)


def _plot_problem() -> str | None:
    """Why plots cannot be drawn here (matplotlib is not in the ``[edge]`` extra), or None."""
    problem = missing()
    return problem and f"{problem} (pip install matplotlib to get latency.png and " \
                       "accuracy_size.png)"


def exported_by(manifest) -> str | None:
    """The edge-toolchain version that exported the bundle, as its manifest records it; None
    for a bundle from before that key."""
    versions = manifest.extra.get("versions")
    return versions.get("edge-toolchain") if isinstance(versions, dict) else None


def model_name(manifest) -> str | None:
    """The network the bundle was exported from ("MobileNetV3-Small 1.0/160"), as export
    records it in the manifest's ``model``; None for a bundle from before that key."""
    model = manifest.extra.get("model")
    return model.get("name") if isinstance(model, dict) else None


def assemble_report(subject: dict, machine: dict, config, threads: int, eval_info: dict,
                    timing: dict, results: dict) -> dict:
    """The whole of report.json for the measured ``results`` (model name → ModelResult).

    ``subject`` names what was measured (``{"run": ...}`` or ``{"bundle": ...}``, and
    ``"network"``: :func:`model_name`); ``config``
    is the bench's settings (a dataclass), ``timing`` what each row times.
    """
    rows = build_rows(results, config.repeats)
    return {
        **subject,
        "machine": machine,
        "settings": {"runs": config.runs, "warmup": config.warmup, "repeats": config.repeats,
                     "threads": threads, "memory": config.memory},
        "eval": eval_info,
        "reference": reference_name(list(results)),
        "timing": timing,
        "rows": rows,
        "verdicts": verdicts(rows),
        "config": asdict(config),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_report(out: Path, report: dict) -> list[Path]:
    """Write report.json, report.md and, when matplotlib imports, the plots; each atomically.

    Without matplotlib the report says so (``plots_missing``) and one log line says it once.
    Returns the files written.
    """
    problem = _plot_problem()
    report["plots_missing"] = problem
    written = [write_json(out / "report.json", report),
               write_text(out / "report.md", format_markdown(report))]
    if problem:
        log.info("no plots: %s", problem)
        for name in PLOTS:  # an earlier run's plots would no longer match this report
            (out / name).unlink(missing_ok=True)
        return written
    from benchmarks.plots import plot_accuracy_size, plot_latency

    plot_latency(report["rows"], out / PLOTS[0])
    plot_accuracy_size(report["rows"], out / PLOTS[1])
    return written + [out / name for name in PLOTS]
