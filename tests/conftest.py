"""Shared fixtures: one tiny dataset, one tiny trained run and its export, built once per session.

Settings are the smallest that still exercise the real code: MobileNetV2
alpha 0.35 at 64 px, a few dozen demo images, two short epochs per phase.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY = dict(img_size=64, alpha=0.35, weights="none", epochs=2, fine_tune_epochs=1,
            fine_tune_at=100, batch_size=16, lr=1e-3, seed=1)


TRAINING_FIXTURES = {"tiny_run", "exported_run", "bundle"}
"""Fixtures that train a model the first time they are used in a session."""


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs a trained model ``slow``: ``pytest -m "not slow"`` is the quick
    loop (seconds); ``make test`` and CI run everything."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Datasets and Keras downloads go to a per-session folder, never the user's cache."""
    cache = tmp_path_factory.getbasetemp() / "edge-cache"
    monkeypatch.setenv("EDGE_CACHE_DIR", str(cache))
    monkeypatch.setenv("KERAS_HOME", str(cache / "keras"))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A small copy of the built-in demo dataset: 5 classes × 16 images, 64 px."""
    from train.demo_data import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("data") / "demo", per_class=16, size=64)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_dir) -> Path:
    """A finished edge-train run directory (alpha 0.35, 64 px, 3 epochs)."""
    from train.config import TrainConfig
    from train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(data=str(demo_dir), out=str(out), **TINY))
    return out


@pytest.fixture(scope="session")
def exported_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of ``tiny_run`` with ``export/`` holding fp32, fp16 and int8 models."""
    from export.exporter import ExportConfig, export

    run = tmp_path_factory.mktemp("exported") / "tiny"
    shutil.copytree(tiny_run, run)
    export(ExportConfig(run=str(run), formats=("fp32", "fp16", "int8"), calibration_samples=40,
                        max_accuracy_drop=100.0, progress=False))
    return run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of ``tiny_run`` (no export yet) that a test may change."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


@pytest.fixture(scope="session")
def bundle(exported_run) -> Path:
    """The deployable ``export/`` folder of a tiny run."""
    return exported_run / "export"
