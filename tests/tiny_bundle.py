"""The tests' tiny data set, trained run and exported bundle: one definition, two users.

``tests/conftest.py`` builds them once per pytest session, or once for many sessions into the
folder ``EDGE_TEST_CACHE`` names (:func:`cached`: CI's checks share one). ``python -m
tests.tiny_bundle OUT`` builds them into a folder, for a place without TensorFlow (``make
pi-check``'s arm64 userland), where the edge tests are pointed at them with the variables the
conftest reads::

    EDGE_TEST_DATA=OUT/data EDGE_TEST_BUNDLE=OUT/run/export pytest -m edge

Settings are the smallest that still exercise the real code and give a model that discriminates
(so "the same answers" on another machine mean something): MobileNetV2 alpha 0.35 at 64 px from
scratch, 5 classes x 20 demo images whose shapes have their class's colour (learnt in a couple of
hundred steps, where shape alone needs thousands), a second each per epoch. Needs the ``train``
extra.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

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
    """``out/data``, then ``out/run`` trained on it (with ``out/run/export``). Each is made under
    a temporary name and renamed when complete, the data first, so the paths the run records
    (``splits.json``'s root) name the data where it stays, and only a finished build has
    ``out/run/export/manifest.json``. What ``out`` held before is removed first."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    _made_aside(out / "data", write_data)
    _made_aside(out / "run", lambda run: export_run(train_run(out / "data", run)))
    return out


def _made_aside(target: Path, make: Callable[[Path], object]) -> None:
    """``make(path)`` under a temporary name beside ``target``, renamed to it when complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        make(tmp / target.name)
        os.replace(tmp / target.name, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


SOURCES = ("common/", "edge_runtime/", "export/", "train/", "tests/tiny_bundle.py",
           "pyproject.toml")
"""What the tiny bundle is made with: a change to any of it makes :func:`cached` build anew."""


def fingerprint() -> str:
    """16 hex digits of sha256 over :data:`SOURCES` (names and bytes, bytecode left out)."""
    digest = hashlib.sha256()
    for source in SOURCES:
        path = REPO / source
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


def cache_folder(cache: Path) -> Path:
    """Where :func:`cached` keeps the build of this version of the code."""
    return cache / f"tiny-{fingerprint()}"


def cached(cache: Path) -> Path:
    """:func:`build` once per :func:`fingerprint` into ``cache/tiny-<fingerprint>``, shared by
    every process pointed at ``cache`` (one builds while the others wait; older builds are
    removed); returns the folder."""
    out = cache_folder(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".tiny-bundle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (out / "run" / "export" / "manifest.json").is_file():
            build(out)
        for old in cache.glob("tiny-*"):
            if old != out and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: build the tiny data set, run and bundle into a folder."""
    from common.argtypes import Parser, add_verbosity
    from common.command import run_main

    parser = Parser(prog="python -m tests.tiny_bundle", description=__doc__)
    parser.add_argument("out", type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument("--cache", action="store_true",
                        help="OUT is a cache: build into OUT/tiny-<fingerprint of the code that "
                             "makes it> unless that is there already, and say which")
    add_verbosity(parser)

    def work(args) -> int:
        out = cached(args.out) if args.cache else build(args.out)
        print(f"tiny bundle: {out / 'run' / 'export'} (data: {out / 'data'})")
        return 0

    return run_main(parser, argv, work, "the folder holds no finished bundle",
                    needs_tensorflow=True)


if __name__ == "__main__":
    sys.exit(main())
