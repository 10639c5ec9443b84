"""Shared fixtures: one tiny dataset, one tiny trained run and its export, built once per session.

The settings live in :mod:`tests.tiny_bundle`. Where TensorFlow is not installed (the ``edge``
extra alone, as on a Raspberry Pi), the tests marked ``edge`` run on a prebuilt data set and
bundle named by two variables, and every other test is skipped saying why::

    EDGE_TEST_DATA=DIR      the demo data set (python -m tests.tiny_bundle OUT writes OUT/data)
    EDGE_TEST_BUNDLE=DIR    an export/ bundle trained on it (OUT/run/export)

With TensorFlow, ``EDGE_TEST_CACHE=DIR`` lets pytest sessions share one build of the data set,
run and bundle (:func:`tests.tiny_bundle.cached`, rebuilt when the code that makes them
changes); each session works on its own copy of the run. CI's checks do, saving a training each.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests import tiny_bundle

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NO_TENSORFLOW = importlib.util.find_spec("tensorflow") is None
NEEDS_TENSORFLOW = ("needs TensorFlow, which is not installed here (the edge extra alone): "
                    "run it where the dev extra is installed")
# modules that import Keras at the top cannot even be collected without TensorFlow
KERAS_AT_IMPORT = ["test_train.py", "test_multiworker.py", "test_backbones.py", "test_features.py",
                   "test_demo_backbone.py"]
collect_ignore = KERAS_AT_IMPORT if NO_TENSORFLOW else []


def _given_folder(variable: str) -> Path | None:
    """The folder an ``EDGE_TEST_*`` variable names; a usage error when it is not a folder."""
    value = os.environ.get(variable)
    if not value:
        return None
    if not Path(value).is_dir():
        raise pytest.UsageError(f"{variable}={value}: not a folder")
    return Path(value)


def pytest_report_header(config):
    """Say up front what a run without TensorFlow leaves out."""
    if NO_TENSORFLOW:
        return [f"TensorFlow is not installed: {', '.join(KERAS_AT_IMPORT)} not collected, "
                "tests not marked edge skipped"]
    return []


TRAINING_FIXTURES = {"tiny_run", "exported_run", "bundle"}
"""Fixtures that train a model the first time they are used in a session."""


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs a trained model ``slow``: ``pytest -m "not slow"`` is the quick
    loop; ``make test`` and CI run everything. Without TensorFlow, skip what needs it."""
    for item in items:
        if (TRAINING_FIXTURES & set(getattr(item, "fixturenames", ()))
                or item.get_closest_marker("long")):
            item.add_marker(pytest.mark.slow)
    if NO_TENSORFLOW:  # only ``edge`` tests can run: skip the others, saying why
        skip = pytest.mark.skip(reason=NEEDS_TENSORFLOW)
        for item in items:
            if item.get_closest_marker("edge") is None:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Datasets and Keras downloads go to a per-session folder, never the user's cache."""
    cache = tmp_path_factory.getbasetemp() / "edge-cache"
    monkeypatch.setenv("EDGE_CACHE_DIR", str(cache))
    monkeypatch.setenv("KERAS_HOME", str(cache / "keras"))


@pytest.fixture(scope="session")
def shared_build() -> Path | None:
    """The build ``EDGE_TEST_CACHE`` shares between sessions (made by the first), or None."""
    cache = os.environ.get("EDGE_TEST_CACHE")
    if not cache or NO_TENSORFLOW:
        return None
    return tiny_bundle.cached(Path(cache))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory, shared_build) -> Path:
    """A small copy of the built-in demo dataset (or the one ``EDGE_TEST_DATA`` names)."""
    given = _given_folder("EDGE_TEST_DATA")
    if given is not None:
        return given
    if shared_build is not None:
        return shared_build / "data"
    return tiny_bundle.write_data(tmp_path_factory.mktemp("data") / "demo")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, demo_dir, shared_build) -> Path:
    """A finished edge-train run directory (tests/tiny_bundle.py: alpha 0.35, 64 px, 25 epochs)."""
    if NO_TENSORFLOW:
        pytest.skip(NEEDS_TENSORFLOW)
    run = tmp_path_factory.mktemp("runs") / "tiny"
    if shared_build is not None:
        shutil.copytree(shared_build / "run", run, ignore=shutil.ignore_patterns("export"))
        return run
    return tiny_bundle.train_run(demo_dir, run)


@pytest.fixture(scope="session")
def exported_run(tiny_run, tmp_path_factory, shared_build) -> Path:
    """A copy of ``tiny_run`` with ``export/`` holding fp32, fp16 and int8 models."""
    run = tmp_path_factory.mktemp("exported") / "tiny"
    if shared_build is not None:
        shutil.copytree(shared_build / "run", run)
        return run
    shutil.copytree(tiny_run, run)
    tiny_bundle.export_run(run)
    return run


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of ``tiny_run`` (no export yet) that a test may change."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    return run


@pytest.fixture(scope="session")
def bundle(request) -> Path:
    """The deployable ``export/`` folder of a tiny run (or the one ``EDGE_TEST_BUNDLE`` names)."""
    given = _given_folder("EDGE_TEST_BUNDLE")
    if given is not None:
        return given
    return request.getfixturevalue("exported_run") / "export"


@pytest.fixture
def ctrl_c_handler():
    """SIGINT as Ctrl-C for the test: Python leaves SIGINT ignored when its parent ignored it
    (a job started in the background, as CI may be), and edge-classify rightly keeps it so."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
