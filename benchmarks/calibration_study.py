"""How int8 settles as its calibration grows: the measurement behind ``--calibration-samples``.

For one run, int8 is converted with N calibration images (export's own choice: the train split,
classes taking turns), N doubling from 25 up to the whole train split. Each model is measured on
the **validation** split against Keras (accuracy, agreement, images won and lost, McNemar p), with
how settled its ranges were (:mod:`export.ranges`) and how long the conversion took::

    python -m benchmarks.calibration_study runs/demo          # make calibration-study RUN=runs/demo

writes ``RUN/bench/calibration/report.md``, ``report.json`` and ``curve.png`` (with matplotlib).
Needs TensorFlow (the ``train`` extra). Exit codes: 0 done, 2 a bad run or flag, 3 a bug.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.argtypes import Parser
from common.command import run_main
from common.figures import missing, new_figure, save
from common.fileio import write_json, write_text
from common.progress import progress_bar

SIZES = (25, 50, 100, 200, 400, 800, 1600, 3200)
"""Calibration sizes tried (those below the train split's size), then the whole train split."""
OUT = Path("bench") / "calibration"
"""Where in the run the study is written."""


def study_sizes(train_images: int, sizes: Sequence[int] = SIZES) -> list[int]:
    """The sizes smaller than the train split, then the train split itself."""
    return [n for n in sizes if n < train_images] + [train_images]


def measure(run: Path, sizes: Sequence[int] | None = None, progress: bool = True) -> dict:
    """int8 with each calibration size, measured on the validation split: the report's rows."""
    from export.calibration import load_calibration
    from export.convert import convert
    from export.exporter import resize_method
    from export.formats import FORMATS
    from export.images import iter_batches
    from export.ranges import calibration_settledness
    from export.verify import difference_kind, evaluate
    from train.saved_run import load_run

    model, splits, labels = load_run(run)
    method = resize_method(run)
    size = (int(model.input_shape[1]), int(model.input_shape[2]))
    train_images = len(splits.files["train"])
    wanted = list(sizes) if sizes else study_sizes(train_images)
    val = splits.paths("val")
    truth = np.asarray(splits.labels["val"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="edge-calibration-") as scratch:
        model_file = Path(scratch) / "model_int8.tflite"
        for n in wanted:
            calibration = load_calibration(splits, labels, n, size, method, force=True,
                                           progress=False)
            ranges = calibration_settledness(model, calibration.pixels)
            started = time.perf_counter()
            model_file.write_bytes(convert(model, FORMATS["int8"], calibration.pixels, "uint8",
                                           progress=False))
            seconds = time.perf_counter() - started
            with progress_bar(len(val), f"int8 calibrated on {len(calibration.pixels)}: val",
                              progress) as bar:
                evaluation = evaluate(model, {"int8": model_file}, run / "labels.txt",
                                      iter_batches(val, size, method, bar=bar), truth)
            int8, paired = evaluation.variants["int8"], evaluation.paired["int8"]
            rows.append({
                "calibration_images": len(calibration.pixels),
                "val_accuracy": int8["accuracy"],
                "keras_val_accuracy": evaluation.keras_accuracy,
                "drop_points": round(100 * (evaluation.keras_accuracy - int8["accuracy"]), 2),
                "agreement": int8["agreement"],
                "keras_only_correct": paired["keras_only_correct"],
                "int8_only_correct": paired["variant_only_correct"],
                "mcnemar_p": paired["mcnemar_p"],
                "difference": difference_kind(paired["keras_only_correct"],
                                              paired["variant_only_correct"],
                                              paired["mcnemar_p"]),
                "widening": ranges.widening, "widest_layer": ranges.layer,
                "settled": ranges.settled, "convert_seconds": round(seconds, 2),
            })
    return {"run": str(run), "val_images": len(val), "train_images": train_images,
            "classes": len(labels), "rows": rows}


def report_markdown(study: dict) -> str:
    """The study as a table a person reads."""
    lines = [f"# int8 calibration study: {study['run']}", "",
             f"{study['classes']} classes; int8 measured on {study['val_images']} validation "
             f"images against Keras; calibration from {study['train_images']} train images.", "",
             "| calibration images | int8 val acc | Δ pt vs Keras | won/lost | p | agreement | "
             "range widening (last half) | settled | convert s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in study["rows"]:
        lines.append(f"| {r['calibration_images']} | {r['val_accuracy']:.3f} | "
                     f"{-r['drop_points']:+.1f} | {r['int8_only_correct']}/"
                     f"{r['keras_only_correct']} | {r['mcnemar_p']:.2f} | {r['agreement']:.3f} | "
                     f"{100 * r['widening']:.1f} % ({r['widest_layer'].split('/')[-1]}) | "
                     f"{'yes' if r['settled'] else 'no'} | {r['convert_seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(study: dict, path: Path) -> bool:
    """``curve.png``: int8's loss against Keras and the ranges' widening as calibration grows;
    False without matplotlib."""
    if missing():
        return False
    n = [r["calibration_images"] for r in study["rows"]]
    fig = new_figure(7, 6)
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(n, [r["drop_points"] for r in study["rows"]], "o-")
    top.axhline(0, color="grey", linewidth=0.8)
    top.set_ylabel("int8 loss vs Keras (points, val)")
    bottom.plot(n, [100 * r["widening"] for r in study["rows"]], "o-", color="tab:orange")
    bottom.axhline(10, color="grey", linestyle="--", linewidth=0.8)
    bottom.set_ylabel("range widening by the\nlast half of the images (%)")
    bottom.set_xscale("log")
    bottom.set_xlabel("calibration images (train split, stratified)")
    fig.suptitle(f"int8 calibration: {Path(study['run']).name}")
    save(fig, path, dpi=110)
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m benchmarks.calibration_study", description=__doc__)
    parser.add_argument("run", type=Path, help="a run directory (edge-train's --out)")
    parser.add_argument("--sizes", type=lambda text: [int(v) for v in text.split(",")],
                        help="calibration sizes to try, comma-separated (default: 25, 50, ... "
                             "doubling below the train split's size, then all of it)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def work(args) -> int:
        study = measure(args.run, args.sizes, progress=not args.no_progress)
        out = args.run / OUT
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "report.json", study)
        text = report_markdown(study)
        write_text(out / "report.md", text)
        print(text, end="")
        drawn = plot(study, out / "curve.png")
        print(f"report: {out / 'report.md'}"
              + ("" if drawn else " (no curve.png: matplotlib is missing)"))
        return 0

    return run_main(build_parser(), argv, work, "the study was not written",
                    needs_tensorflow=True)


if __name__ == "__main__":
    raise SystemExit(main())
