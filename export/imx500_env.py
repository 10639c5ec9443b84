"""The side environment Sony's IMX500 toolchain runs in: made once, cached, driven by subprocess.

Sony's Model Compression Toolkit (MCT) and ``imx500-converter`` run only on TensorFlow ≤ 2.15
(Keras 2) and Python ≤ 3.11, while this toolchain runs Keras 3 on TensorFlow ≥ 2.16. So the
conversion (:mod:`export.imx500_convert`, a standalone script) runs in a venv of its own, under
``$EDGE_IMX500_VENV`` or ``~/.cache/edge-toolchain/imx500-<hash of the pins>``: changing
:data:`PINS` makes a new one. It is built in a temporary folder and renamed into place once pip
has finished, so an interrupted build is never taken for a finished one. The converter calls
``java`` (17 or later) from ``PATH``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from export.errors import ExportError

log = logging.getLogger(__name__)

PINS = ("edge-mdt[tf]==1.3.0", "tensorflow==2.15.1")
"""What the side venv holds: MCT 2.5.1, edge-mdt-tpc 1.3.0 and imx500-converter 3.18.2 come
with edge-mdt 1.3.0 (MCT 2.6 and converter 3.19 cannot be installed together)."""
PYTHONS = ("python3.11", "python3.10")
"""Interpreters the side venv may be built with (TensorFlow 2.15 has wheels up to 3.11)."""
MIN_JAVA = 17
INSTALL_SECONDS = 1800
"""Longest a pip install of the side venv may take."""
VENV_ENV = "EDGE_IMX500_VENV"
PYTHON_ENV = "EDGE_IMX500_PYTHON"
"""Environment variables: the venv folder to use, the Python to build it with."""


def venv_dir() -> Path:
    """Where the side venv lives (:data:`VENV_ENV`, else a cache folder keyed by :data:`PINS`)."""
    given = os.environ.get(VENV_ENV)
    if given:
        return Path(given).expanduser()
    key = hashlib.sha256(" ".join(PINS).encode()).hexdigest()[:12]
    return Path.home() / ".cache" / "edge-toolchain" / f"imx500-{key}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _version(python: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    parts = done.stdout.split()
    return (int(parts[0]), int(parts[1])) if done.returncode == 0 and len(parts) == 2 else None


def find_python() -> str:
    """A Python 3.10 or 3.11 to build the side venv with (:data:`PYTHON_ENV` first).

    Raises:
        ExportError: none found, saying what to install.
    """
    given = os.environ.get(PYTHON_ENV)
    candidates = [given] if given else [*filter(None, map(shutil.which, PYTHONS)), sys.executable]
    for python in candidates:
        version = _version(python)
        if version is not None and (3, 10) <= version <= (3, 11):
            return python
    found = (f"{PYTHON_ENV}={given} is not one" if given
             else "there is no python3.11 or python3.10 on PATH")
    raise ExportError(f"the imx500 format needs Python 3.10 or 3.11 for Sony's converter "
                      f"(TensorFlow 2.15), and {found}: install python3.11 (e.g. apt-get "
                      f"install python3.11-venv, or pyenv) or set {PYTHON_ENV}=/path/to/python3.11")


def check_java() -> str:
    """The ``java`` the converter will call (version ≥ :data:`MIN_JAVA`).

    Raises:
        ExportError: no java on PATH or an older one, saying what to install.
    """
    install = "install Java 17 (apt-get install openjdk-17-jre-headless) and put java on PATH"
    java = shutil.which("java")
    if java is None:
        raise ExportError(f"the imx500 format needs Java for Sony's converter (imxconv-tf) and "
                          f"there is no java on PATH: {install}")
    try:
        done = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExportError(f"{java} -version failed ({exc}): {install}") from None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    major = int(found.group(1)) if found else 0
    if major == 1 and found.group(2):  # "1.8.0": Java 8
        major = int(found.group(2))
    if major < MIN_JAVA:
        raise ExportError(f"the imx500 format needs Java {MIN_JAVA} or later for Sony's converter;"
                          f" {java} is {major or 'of an unknown version'}: {install}")
    return java


def _pip_failure(done: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in (done.stderr + done.stdout).splitlines()
             if ln.strip() and not ln.startswith("WARNING: Location")]
    return lines[-1][:200] if lines else f"exit code {done.returncode}"


def ensure_venv() -> Path:
    """The side venv's python, the venv made first when missing (minutes, once).

    Raises:
        ExportError: no suitable Python, or pip could not install :data:`PINS` (its last line).
    """
    venv = venv_dir()
    python = venv_python(venv)
    if python.exists():
        return python
    base = find_python()
    building = venv.with_name(f".{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    log.warning("imx500: creating the converter's environment %s (once: pip installs %s, about "
                "2.3 GB; minutes)", venv, " ".join(PINS))
    env = clean_env()
    try:
        done = subprocess.run([base, "-m", "venv", str(building)], capture_output=True, text=True,
                              timeout=600, env=env)
        if done.returncode == 0:
            done = subprocess.run([str(venv_python(building)), "-m", "pip", "install", "--quiet",
                                   "--disable-pip-version-check", *PINS], capture_output=True,
                                  text=True, timeout=INSTALL_SECONDS, env=env)
        if done.returncode != 0:
            raise ExportError(f"could not create the imx500 converter's environment {venv}: "
                              f"{_pip_failure(done)}")
        # the venv's scripts name their python by the building path, so the converter is
        # always started as `python SCRIPT` (see :func:`console_script`); renamed in last
        os.rename(building, venv)
    except subprocess.TimeoutExpired:
        raise ExportError(f"creating the imx500 converter's environment took over "
                          f"{INSTALL_SECONDS} s; run edge-export again") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return python


def console_script(python: Path, name: str) -> list[str]:
    """The command line that runs the side venv's console script ``name`` (``imxconv-tf``)
    with its own python, whatever path the script's first line names."""
    return [str(python), str(python.parent / name)]


def clean_env() -> dict:
    """This process's environment without its venv and source tree on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env
