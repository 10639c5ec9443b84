"""``edge-bench --demo``: make the built-in demo run (train, export) before benchmarking it."""

from __future__ import annotations

import logging
from pathlib import Path

from common.rundir import EXPORT_DIR, MODEL

log = logging.getLogger(__name__)


def export_run(run: Path, threads: int | None = None, progress: bool = True) -> None:
    """``edge-export`` with the default formats; a variant that lost too much is a warning
    here (the benchmark is how one looks at it), not a stop."""
    from export.exporter import ExportConfig, export

    log.info("exporting %s ...", run)
    result = export(ExportConfig(run=str(run), threads=threads, progress=progress))
    if result.failures:
        log.warning("%s lost more accuracy than the export allows; benchmarking anyway",
                    ", ".join(result.failures))


def prepare_demo(run: Path) -> None:
    """Make ``run`` a trained, exported demo run if it is not one already.

    Trains with :data:`train.demo_data.DEMO_TRAIN_SETTINGS` when there is no
    ``model.keras`` (resuming an interrupted demo training), then exports
    with the default formats when ``export/`` is missing.
    """
    if not (run / MODEL).is_file():
        from train.checkpoints import CHECKPOINT_DIR, STATE_FILE
        from train.config import TrainConfig
        from train.demo_data import DEMO_TRAIN_SETTINGS
        from train.trainer import train

        resume = (run / CHECKPOINT_DIR / STATE_FILE).is_file()
        log.info("%s the demo model in %s (about half a minute) ...",
                 "resuming" if resume else "training", run)
        train(TrainConfig(out=str(run), resume=resume, **DEMO_TRAIN_SETTINGS))
    if not (run / EXPORT_DIR / "manifest.json").is_file():
        export_run(run)
