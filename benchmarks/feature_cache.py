"""Phase 1 on cached backbone features against phase 1 end to end: seconds per epoch, val accuracy.

    python -m benchmarks.feature_cache            # make feature-cache-bench

Each variant trains the head of MobileNetV2 alpha 1.0 at 160 px (phase 1 only, the same split,
seed and settings) from the same backbone weights file: ``end to end`` runs the frozen backbone
over every image in every epoch with the usual augmentation (``--no-feature-cache``), ``cached``
runs it once and trains on the features (``--feature-views 1``), ``cached, K views`` caches K
views of each training image (the image and K-1 augmented copies).

The backbone must be pretrained for a frozen one to mean anything, and ImageNet cannot be
downloaded on every machine, so the benchmark makes its own: MobileNetV2 1.0 trained from
scratch at 96 px (the weights do not depend on the input size; 160 px would cost 3×) on a *different* data set, three
of the five demo shapes (circle, square, star) drawn with another seed. The task measured is all
five shapes of the demo data set: two of its classes (cross, triangle) the backbone never saw.

Writes ``OUT/report.md`` and ``OUT/report.json`` (the pretrained weights and the runs stay in
``OUT`` for a rerun). Seconds per epoch are the median over the epochs after the first (the
first decodes the images into the tf.data cache); extraction is reported apart. Run it on an
otherwise idle machine, or compare only the ratios of one run. Exit codes: 0 done, 2 a bad flag,
3 a bug.
"""

from __future__ import annotations

import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from common.argtypes import Parser, positive_int
from common.command import run_main
from common.fileio import atomic_write, write_json, write_text

PRETRAIN_CLASSES = ("circle", "square", "star")
PRETRAIN = dict(img_size=96, alpha=1.0, weights="none", epochs=10, fine_tune_epochs=0,
                lr=2e-3, batch_size=32, patience=10, seed=7)
"""The backbone's own training: from scratch, on :data:`PRETRAIN_CLASSES` drawn with seed 1."""
HEAD = dict(img_size=160, alpha=1.0, fine_tune_epochs=0, lr=3e-3, batch_size=32, seed=83)
"""Phase-1 settings shared by every variant (``epochs`` and ``patience`` from the flags)."""
VARIANTS = {
    "end to end": dict(feature_cache=False),
    "cached": dict(feature_cache=True, feature_views=1),
    "cached, 3 views": dict(feature_cache=True, feature_views=3),
}


def pretrained_backbone(out: Path, per_class: int) -> Path:
    """The backbone weights file, trained once (see the module docstring) and kept in ``out``."""
    weights = out / "backbone.weights.h5"
    if weights.is_file():
        return weights
    import keras

    from train.checkpoints import CHECKPOINT_DIR, STATE_FILE
    from train.config import TrainConfig
    from train.demo_data import CLASSES, write_demo_dataset
    from train.model import backbone_of
    from train.trainer import train

    data = out / "pretrain-data"
    if not data.is_dir():
        write_demo_dataset(data, per_class=per_class, seed=1)
        for name in set(CLASSES) - set(PRETRAIN_CLASSES):
            shutil.rmtree(data / name)
    run = out / "pretrain"
    if not (run / "model.keras").is_file():
        resume = (run / CHECKPOINT_DIR / STATE_FILE).is_file()
        if run.exists() and not resume:
            shutil.rmtree(run)
        train(TrainConfig(data=str(data), out=str(run), resume=resume, **PRETRAIN))
    base = backbone_of(keras.models.load_model(run / "model.keras"))
    atomic_write(weights, base.save_weights)
    return weights


def measure_variant(data: Path, run: Path, weights: Path, epochs: int, **changes) -> dict:
    """One fresh phase-1 run: its epoch seconds, the time outside the epochs, its accuracies."""
    from train.config import TrainConfig
    from train.trainer import train

    if run.exists():
        shutil.rmtree(run)
    started = time.perf_counter()
    result = train(TrainConfig(data=str(data), out=str(run), weights=str(weights), epochs=epochs,
                               patience=epochs, **HEAD, **changes))
    wall = time.perf_counter() - started
    seconds = [r["seconds"] for r in result.history]
    return {"settings": changes, "epoch_seconds": seconds,
            "seconds_per_epoch": statistics.median(seconds[1:] or seconds),
            "outside_epochs_seconds": round(wall - sum(seconds), 1),
            "wall_seconds": round(wall, 1),
            "best_val_accuracy": result.metrics["val_accuracy"],
            "last_val_accuracy": result.history[-1]["val_accuracy"],
            "test_accuracy": result.metrics["test_accuracy"],
            "num_train": result.metrics["num_train"], "num_val": result.metrics["num_val"]}


def report_markdown(study: dict) -> str:
    base = study["variants"]["end to end"]
    lines = [f"Phase 1 of MobileNetV2 1.0/160 on the demo data set ({base['num_train']} train, "
             f"{base['num_val']} val images), {study['epochs']} epochs, backbone pretrained on "
             f"other data ({', '.join(PRETRAIN_CLASSES)}; seed 1); {study['machine']}.", "",
             "| phase 1 | s/epoch | × faster per epoch | outside the epochs (s) | val accuracy "
             "(best epoch) | val accuracy (last epoch) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, row in study["variants"].items():
        ratio = base["seconds_per_epoch"] / row["seconds_per_epoch"]
        lines.append(f"| {name} | {row['seconds_per_epoch']:.2f} | {ratio:.0f}× | "
                     f"{row['outside_epochs_seconds']:.0f} | {row['best_val_accuracy']:.3f} | "
                     f"{row['last_val_accuracy']:.3f} |")
    return "\n".join(lines) + "\n"


def build_parser() -> Parser:
    parser = Parser(prog="python -m benchmarks.feature_cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/feature-cache-bench"),
                        help="where the pretrained backbone, the runs and the report go")
    parser.add_argument("--epochs", type=positive_int, default=6, help="phase 1 epochs per variant")
    parser.add_argument("--per-class", type=positive_int, default=300,
                        help="demo images per class (the demo's own data set: 300)")
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=list(VARIANTS),
                        help="which variants to run (end to end is the baseline of the ratios)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def work(args) -> int:
        from benchmarks.machine import cpu_model
        from edge_runtime.interpreter import available_cores
        from train.demo_data import demo_dataset

        args.out.mkdir(parents=True, exist_ok=True)
        weights = pretrained_backbone(args.out, args.per_class)
        data = demo_dataset(args.per_class)
        names = ["end to end", *[v for v in args.variants if v != "end to end"]]
        study = {"epochs": args.epochs, "weights": str(weights),
                 "machine": f"{cpu_model()}, {available_cores()} cores",
                 "variants": {name: measure_variant(data, args.out / "runs" / name.replace(
                     ", ", "-").replace(" ", "-"), weights, args.epochs, **VARIANTS[name])
                     for name in names}}
        write_json(args.out / "report.json", study)
        text = report_markdown(study)
        write_text(args.out / "report.md", text)
        print(text, end="")
        print(f"report: {args.out / 'report.md'}")
        return 0

    return run_main(build_parser(), argv, work, "the benchmark was not written",
                    needs_tensorflow=True)


if __name__ == "__main__":
    raise SystemExit(main())
