"""make gpu-check: the demo trained on an NVIDIA GPU with mixed precision, exported and checked,
with the images per second of each phase.

    python -m benchmarks.gpu_check [--out DIR]      # make gpu-check

Two runs on the built-in demo data (no download). First the demo's network from scratch
(:data:`FROM_SCRATCH`: every layer trains from the first epoch, the GPU's training throughput), in
mixed precision, exported to fp32, fp16 and int8 and each variant checked against Keras as
``edge-export`` checks it. Then, with that run's backbone saved as a pretrained weights file, the
path a workstation takes on real photos: phase 1 on cached backbone features
(:mod:`train.features`), then fine-tuning.

Where this machine has no NVIDIA GPU it skips in one line (exit 0) before TensorFlow starts. An
NVIDIA GPU that TensorFlow cannot see fails the check (exit 1) with the line that says why
(:mod:`train.nvidia`). Exit codes: 0 passed or skipped; 1 no GPU for TensorFlow, a variant lost
more than ``edge-export``'s limit, or the model did not learn (test accuracy under
:data:`MIN_ACCURACY`); 2 a bad flag; 3 a bug.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from common.argtypes import Parser
from common.command import import_tensorflow_quietly, run_main, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE

FROM_SCRATCH = dict(weights="none", epochs=7, fine_tune_epochs=3, lr=5e-3, patience=6)
"""The first run's changes to the demo's settings: from scratch, both phases end to end (on two
CPU cores: test accuracy 0.900 in 166 CPU s, docs/training.md)."""
MIN_ACCURACY = 0.8
"""Test accuracy the demo must reach on the GPU: far above chance (0.2), below the 0.9 the
README reports for the CPU, as mixed precision and GPU kernels take other paths."""
PRETRAINED = dict(epochs=3, fine_tune_epochs=2, lr=1e-3, patience=3, feature_cache=True)
"""The second run, on the first one's backbone: phase 1 on cached features, then fine-tuning."""


def phase_rates(history: list[dict], images: int) -> list[dict]:
    """Per phase of ``history`` (``history.csv`` rows): its epochs, seconds, and images per
    second in its epochs after the first (the first traces the model and fills the data
    cache; a phase of one epoch: that epoch), ``images`` being what an epoch trains on."""
    rows = []
    for phase in sorted({r["phase"] for r in history}):
        seconds = [r["seconds"] for r in history if r["phase"] == phase]
        steady = statistics.median(seconds[1:] or seconds)
        rows.append({"phase": phase, "epochs": len(seconds), "seconds": round(sum(seconds), 1),
                     "first_epoch_seconds": round(seconds[0], 1),
                     "images_per_second": round(images / steady) if steady > 0 else None})
    return rows


def format_rates(name: str, rows: list[dict], images: int) -> list[str]:
    """One line per phase of :func:`phase_rates`."""
    what = {1: "phase 1", 2: "phase 2 (fine-tuning)"}
    return [f"{name}, {what[r['phase']]}: {r['epochs']} epoch(s) of {images} images in "
            f"{r['seconds']:.0f} s (the first {r['first_epoch_seconds']:.0f} s), "
            f"{r['images_per_second']} images/s"
            + (" after the first" if r["epochs"] > 1 else " (tracing included)") for r in rows]


def train_timed(config) -> tuple[object, float]:
    """``train(config)`` and its wall seconds."""
    from train.trainer import train

    started = time.perf_counter()
    result = train(config)
    return result, time.perf_counter() - started


def check(out: Path, settings: dict, pretrained: dict = PRETRAINED) -> int:
    """Train, export and measure (see the module docstring) under ``out``; print the results.
    ``settings`` are the demo's (tests pass smaller ones)."""
    import keras
    import tensorflow as tf

    from export.exporter import ExportConfig, export
    from export.table import format_table, guard_message
    from train.config import TrainConfig
    from train.model import backbone_of

    gpus = tf.config.list_physical_devices("GPU")
    where = f"{len(gpus)} GPU(s)" if gpus else "the CPU"
    demo = out / "demo"
    shutil.rmtree(demo, ignore_errors=True)
    # throughput, not reproducibility: deterministic GPU kernels are the slower ones
    config = TrainConfig(out=str(demo), **{**settings, "mixed_precision": True,
                                            "deterministic": False})
    result, wall = train_timed(config)
    images = result.metrics["num_train"]
    lines = [f"demo on {where}, mixed precision: test accuracy "
             f"{result.metrics['test_accuracy']:.3f}, training {wall:.0f} s"]
    lines += format_rates("demo", phase_rates(result.history, images), images)

    export_config = ExportConfig(run=str(demo), progress=False)
    exported = export(export_config)
    table = format_table(exported.manifest)

    weights = out / "backbone.weights.h5"
    backbone_of(keras.models.load_model(demo / "model.keras")).save_weights(weights)
    second = out / "pretrained"
    shutil.rmtree(second, ignore_errors=True)
    cached, cached_wall = train_timed(TrainConfig(**{
        **config.to_dict(), "out": str(second), "weights": str(weights), **pretrained}))
    in_epochs = sum(r["seconds"] for r in cached.history)
    lines.append(f"pretrained backbone: test accuracy {cached.metrics['test_accuracy']:.3f}; "
                 f"feature extraction and set-up {cached_wall - in_epochs:.0f} s")
    lines += format_rates("pretrained", phase_rates(cached.history, images), images)
    print(table)
    print("\n".join(lines))

    failed = []
    if exported.failures:
        failed.append(guard_message(exported.manifest, exported.failures,
                                    export_config.max_accuracy_drop))
    accuracy = result.metrics["test_accuracy"]
    if accuracy is None or accuracy < MIN_ACCURACY:
        failed.append(f"the demo's test accuracy {accuracy} is under {MIN_ACCURACY}")
    for line in failed:
        say("gpu-check", f"failed: {line}")
    return EXIT_CHECK_FAILED if failed else EXIT_OK


def build_parser() -> Parser:
    parser = Parser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="where the runs go (default: a temporary folder, removed after)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    def work(args) -> int:
        from train import nvidia

        if nvidia.gpus_hidden():
            print("gpu-check skipped: no GPU visible to TensorFlow: CUDA_VISIBLE_DEVICES hides "
                  "them")
            return EXIT_OK
        found = nvidia.nvidia_gpus()
        if not found:
            print("gpu-check skipped: no GPU visible to TensorFlow: this machine has no NVIDIA "
                  f"GPU (nvidia-smi -L lists none, no {nvidia.PROC_GPUS})")
            return EXIT_OK
        if not import_tensorflow_quietly("gpu-check"):
            return EXIT_USAGE
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            say("gpu-check", "failed: " + nvidia.unseen_gpu_hint(
                found, tf.__version__, dict(tf.sysconfig.get_build_info()),
                nvidia.cuda_libraries_installed()))
            return EXIT_CHECK_FAILED
        from train.demo_data import DEMO_TRAIN_SETTINGS

        settings = {**DEMO_TRAIN_SETTINGS, **FROM_SCRATCH}
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            return check(args.out, settings)
        with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
            return check(Path(scratch), settings)

    return run_main(build_parser(), argv, work, "nothing was kept")


if __name__ == "__main__":
    raise SystemExit(main())
