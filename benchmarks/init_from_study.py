"""``edge-train --init-from`` against a fresh start, on the same new data: epochs and seconds of
training to the same validation accuracy.

    python -m benchmarks.init_from_study [OUT] [--per-class 40] [--epochs 20] [--runs 1]

The parent learns the demo data without one class; the new data is all of it (the parent's
classes and one new), as when pictures of a new thing were captured on the device. Then, on
the new data, with the same split, seed and settings: a fresh start (random weights) and a
start from the parent. The target is the best validation accuracy the fresh start reaches,
less ``--tolerance`` (default 0.02); each side's cost is the epochs, and the summed epoch
seconds, until its first epoch at or above it. Settings are the tests' tiny ones (MobileNetV2
alpha 0.35 at 64 px, from scratch: no ImageNet download), so it runs on a 2-core CPU in
minutes; the result is in docs/training.md ("Retrain from the last model"). Writes OUT/report.json and OUT/report.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from common.fileio import write_json, write_text

SETTINGS = dict(img_size=64, alpha=0.35, weights="none", fine_tune_epochs=0, batch_size=16,
                lr=3e-3, seed=1, val_split=0.25, test_split=0.1)
"""The runs' settings (a :class:`train.config.TrainConfig` less data, out and epochs)."""

NEW_CLASS = "triangle"
"""The class the parent never saw."""


def epochs_to(history: list[dict], target: float) -> tuple[int | None, float | None]:
    """The first epoch whose val accuracy reaches ``target`` and the epoch seconds summed up to
    it; (None, None) when none does."""
    seconds = 0.0
    for row in history:
        seconds += row["seconds"] or 0.0
        if row["val_accuracy"] is not None and row["val_accuracy"] >= target - 1e-9:
            return row["epoch"], round(seconds, 2)
    return None, None


def run(out: Path, per_class: int, epochs: int, tolerance: float) -> dict:
    from common.command import setup_logging
    from train.config import TrainConfig
    from train.demo_data import write_demo_dataset
    from train.report import read_history
    from train.trainer import train

    setup_logging(quiet=True)
    if out.exists():
        shutil.rmtree(out)
    data = write_demo_dataset(out / "data", per_class=per_class, size=64, class_colours=True)
    parent_data = out / "parent-data"
    shutil.copytree(data, parent_data)
    shutil.rmtree(parent_data / NEW_CLASS)
    started = time.perf_counter()
    train(TrainConfig(data=str(parent_data), out=str(out / "parent"), epochs=epochs,
                      patience=epochs, **SETTINGS))
    parent_s = time.perf_counter() - started
    rows = {}
    for name, extra in (("fresh", {}), ("init_from", {"init_from": str(out / "parent")})):
        train(TrainConfig(data=str(data), out=str(out / name), epochs=epochs, patience=epochs,
                          **SETTINGS, **extra))
        history = read_history(out / name / "history.csv")
        metrics = json.loads((out / name / "metrics.json").read_text())
        rows[name] = {"history": [{"epoch": r["epoch"], "val_accuracy": r["val_accuracy"],
                                   "seconds": r["seconds"]} for r in history],
                      "best_val_accuracy": max(r["val_accuracy"] for r in history),
                      "test_accuracy": metrics["test_accuracy"]}
    target = rows["fresh"]["best_val_accuracy"] - tolerance
    for row in rows.values():
        row["epochs_to_target"], row["seconds_to_target"] = epochs_to(row["history"], target)
    report = {"settings": {**SETTINGS, "epochs": epochs, "per_class": per_class,
                           "new_class": NEW_CLASS, "tolerance": tolerance},
              "parent_seconds": round(parent_s, 1), "target_val_accuracy": round(target, 4),
              "runs": rows}
    write_json(out / "report.json", report)
    lines = ["# --init-from against a fresh start", "",
             f"Target: val accuracy {target:.3f} (the fresh start's best, less {tolerance:g}); "
             f"{per_class} images a class, 5 classes, {NEW_CLASS} new to the parent.", "",
             "| start | epochs to target | seconds to target | best val accuracy | test accuracy |",
             "| --- | --- | --- | --- | --- |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['epochs_to_target']} | {row['seconds_to_target']} | "
                     f"{row['best_val_accuracy']:.3f} | {row['test_accuracy']:.3f} |")
    write_text(out / "report.md", "\n".join(lines) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.init_from_study",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default="/tmp/init-from-bench", type=Path)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=0.02)
    args = parser.parse_args(argv)
    from common.command import import_tensorflow_quietly

    if not import_tensorflow_quietly("benchmarks.init_from_study"):
        return 2
    report = run(args.out, args.per_class, args.epochs, args.tolerance)
    print((args.out / "report.md").read_text(), end="")
    return 0 if report["runs"]["init_from"]["epochs_to_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
