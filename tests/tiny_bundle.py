"""The tests' tiny data set, trained run and exported bundle: one definition, two users.

``tests/conftest.py`` builds them once per pytest session. ``python -m tests.tiny_bundle OUT``
builds them into a folder, for a place without TensorFlow (``make pi-check``'s arm64 userland),
where the edge tests are pointed at them with the variables the conftest reads::

    EDGE_TEST_DATA=OUT/data EDGE_TEST_BUNDLE=OUT/run/export pytest -m edge

Settings are the smallest that still exercise the real code and give a model that discriminates
(so "the same answers" on another machine mean something): MobileNetV2 alpha 0.35 at 64 px from
scratch, 5 classes x 20 demo images whose shapes have their class's colour (learnt in a couple of
hundred steps, where shape alone needs thousands), a second each per epoch. Needs the ``train``
extra.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

TINY = dict(img_size=64, alpha=0.35, weights="none", epochs=24, fine_tune_epochs=1,
            fine_tune_at=100, batch_size=16, lr=3e-3, patience=24, seed=1)
"""Training settings of the tiny run (a :class:`train.config.TrainConfig` minus paths)."""

DEMO = dict(per_class=20, size=64, class_colours=True)
"""The tiny copy of the built-in demo data set: 5 classes x 20 images, 64 px, a colour a class."""

EXPORT = dict(formats=("fp32", "fp16", "int8"), calibration_samples=40, max_accuracy_drop=100.0,
              progress=False)
"""Export settings: every variant; no accuracy guard (a tiny model's drop is not the point)."""


def write_data(folder: Path) -> Path:
    """The tiny demo data set at ``folder``."""
    from train.demo_data import write_demo_dataset

    return write_demo_dataset(folder, **DEMO)


def train_run(data: Path, out: Path) -> Path:
    """A finished ``edge-train`` run of the tiny settings on ``data``, at ``out``."""
    from train.config import TrainConfig
    from train.trainer import train

    train(TrainConfig(data=str(data), out=str(out), **TINY))
    return out


def export_run(run: Path) -> Path:
    """Export ``run`` in place; returns its ``export/`` bundle."""
    from export.exporter import ExportConfig, export

    export(ExportConfig(run=str(run), **EXPORT))
    return run / "export"


def build(out: Path) -> Path:
    """``out/data`` and ``out/run`` (with ``out/run/export``), built under a temporary name and
    renamed when complete, so an interrupted build leaves nothing that looks finished."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        # the run's splits.json names the temporary data paths: only the bundle and the
        # data are meant for use, not a re-export of the run
        write_data(tmp / "data")
        train_run(tmp / "data", tmp / "run")
        export_run(tmp / "run")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: build the tiny data set, run and bundle into a folder."""
    from common.argtypes import Parser, add_verbosity
    from common.command import run_main

    parser = Parser(prog="python -m tests.tiny_bundle", description=__doc__)
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    add_verbosity(parser)

    def work(args) -> int:
        out = build(args.out)
        print(f"tiny bundle: {out / 'run' / 'export'} (data: {out / 'data'})")
        return 0

    return run_main(parser, argv, work, "the folder was not replaced", needs_tensorflow=True)


if __name__ == "__main__":
    sys.exit(main())
