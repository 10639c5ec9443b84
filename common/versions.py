"""Versions: this toolchain's own (``--version``, manifests, reports) and the libraries a run
depended on, recorded in config.json and manifests."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

DISTRIBUTION = "edge-toolchain"
"""The name pip knows this toolchain by (pyproject.toml's ``[project] name``)."""
CHECKOUT = Path(__file__).resolve().parents[1]
"""Where ``common/`` lies: a git checkout when this runs from one (``make``'s editable
install), an installed wheel's site-packages otherwise."""

_KEYS = {"PIL": "pillow", "cv2": "opencv"}
"""Modules whose import name is not the package name people know."""


@functools.cache
def toolchain_version() -> str:
    """This toolchain's version, e.g. ``0.2.dev251+g1a2b3c4d``: git's (setuptools-scm, as
    pyproject.toml configures it) when this runs from a git checkout, so an editable install
    names the commit it runs rather than the one it was installed at; else the installed
    package's (a wheel's, fixed when it was built); ``unknown`` when neither says."""
    if (CHECKOUT / ".git").exists() and (CHECKOUT / "pyproject.toml").is_file():
        try:  # the command line is setuptools-scm's stable interface; absent, it fails fast
            done = subprocess.run([sys.executable, "-m", "setuptools_scm"], cwd=CHECKOUT,
                                  capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            done = None
        lines = done.stdout.split() if done is not None and done.returncode == 0 else []
        if lines:
            return lines[-1]
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def library_versions(*names: str) -> dict[str, str]:
    """Python's and this toolchain's version (``edge-toolchain``) and each importable
    library's ``__version__`` (absent ones left out).

    Importing TensorFlow costs seconds: name it only where it is already loaded.
    """
    found = {"python": platform.python_version(), DISTRIBUTION: toolchain_version()}
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # a broken install can raise anything at import
            continue
        found[_KEYS.get(name, name)] = str(getattr(module, "__version__", "unknown"))
    return found
