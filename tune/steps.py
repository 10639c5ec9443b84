"""The slow steps of ``edge-tune search``, replaceable in tests: timing a probe on this
machine, training a candidate, measuring its int8 accuracy on the validation split."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Protocol

from common.errors import UserError
from tune.config import SearchConfig
from tune.device_report import Measured

log = logging.getLogger(__name__)

LOCAL_RUNS = 50
"""Timed inferences per candidate when measuring on this machine (no ``--device``)."""

class Steps(Protocol):
    """The slow parts, replaceable in tests: measuring, training, int8 accuracy."""

    def measure_here(self, config: SearchConfig, folder: Path) -> Path:
        """Build a probe in ``folder``, time it on this machine; the bench report's path."""

    def train(self, config: SearchConfig, candidate: Measured, out: Path, epochs: int,
              fine_tune_epochs: int, resume: bool = False) -> dict:
        """Train ``candidate`` into the run directory ``out``; its metrics.json content."""

    def int8_accuracy(self, config: SearchConfig, run: Path):
        """The run's :class:`tune.int8.Int8Accuracy` on the validation split."""


class TrainingSteps:
    """The real steps: :mod:`tune.probe` + :mod:`benchmarks.probe_bench`, ``train.trainer.train``,
    :func:`tune.int8.int8_val_accuracy`."""

    def measure_here(self, config: SearchConfig, folder: Path) -> Path:
        from benchmarks.config import BenchConfig
        from benchmarks.probe_bench import bench_probe, is_probe
        from tune.probe import DEFAULT_ALPHAS, DEFAULT_SIZES, ProbeConfig, build_probe

        report = folder / "bench" / "report.json"
        if report.is_file():  # an earlier attempt's (whose budget fitted nobody, say)
            log.info("reusing this machine's measurements in %s", report)
            return report
        if not is_probe(folder):
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted probe of our own
            build_probe(ProbeConfig(out=str(folder), backbones=config.backbones,
                                      alphas=config.alphas or DEFAULT_ALPHAS,
                                      sizes=config.sizes or DEFAULT_SIZES,
                                      progress=config.progress))
        result = bench_probe(BenchConfig(path=str(folder), runs=LOCAL_RUNS, warmup=5,
                                         repeats=5, threads=config.threads, memory=False,
                                         progress=config.progress))
        return result.out / "report.json"

    def train(self, config: SearchConfig, candidate: Measured, out: Path, epochs: int,
              fine_tune_epochs: int, resume: bool = False) -> dict:
        import keras

        from train.config import TrainConfig
        from train.trainer import train

        if resume:
            settings = TrainConfig(data=config.data, out=str(out), resume=True)
        else:
            settings = training_config(config, candidate, out, epochs, fine_tune_epochs)
        try:
            return train(settings).metrics
        finally:
            keras.backend.clear_session()

    def int8_accuracy(self, config: SearchConfig, run: Path):
        from tune.int8 import int8_val_accuracy

        return int8_val_accuracy(run, config.calibration_samples, config.threads,
                                 progress=config.progress)


def training_config(config: SearchConfig, candidate: Measured, out: Path, epochs: int,
                    fine_tune_epochs: int):
    """The ``TrainConfig`` of one candidate: the search's data, split, seed and weights."""
    from train.config import TrainConfig

    return TrainConfig(data=config.data, out=str(out), backbone=candidate.backbone,
                       alpha=candidate.alpha, img_size=candidate.img_size,
                       weights=config.weights, epochs=epochs,
                       fine_tune_epochs=fine_tune_epochs, batch_size=config.batch_size,
                       lr=config.learning_rate, val_split=config.val_split,
                       test_split=config.test_split, seed=config.seed)


def untrainable_reason(config: SearchConfig, candidate: Measured) -> str | None:
    """Why edge-train refuses this candidate with the search's weights (ImageNet weights
    exist for some widths and sizes only), or None; asked of ``TrainConfig.validate``."""
    try:
        training_config(config, candidate, Path(config.out), 1, 0).validate()
    except UserError as exc:
        return str(exc)
    return None
