"""The device install: ``pip install ".[edge]"`` in a fresh venv classifies without TensorFlow.

Builds and installs the project into a new virtual environment (about 20-40 s with the
configured package indexes and pip's cache), so the ``edge`` extra is proven to be
enough on its own: no package of the training side sneaks into the device path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import demo_images, write_video

REPO = Path(__file__).resolve().parents[1]
# what is never part of a build: environments, caches, outputs, version control
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "venv", "runs", "build", "dist", "*.egg-info",
                                    "__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache")


def _run(args: list, timeout: int, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)


def test_edge_extra_installs_alone_and_classifies(bundle, demo_dir, tmp_path):
    # a copy of the repository root, so the build leaves nothing in the working tree
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    venv = tmp_path / "venv"
    done = _run([sys.executable, "-m", "venv", venv], timeout=120)
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = _run([python, "-m", "pip", "install", "--quiet", f"{source}[edge]"], timeout=600,
                env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    image = demo_images(demo_dir)[0]
    clip = write_video(tmp_path / "clip.avi", [image], frames=4)
    script = venv / "bin" / "edge-classify"
    elsewhere = tmp_path  # not the repo: the installed package must be what runs
    done = _run([script, "--model", bundle / "model_int8.tflite", "--json", image], timeout=120,
                env=env, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    (result,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert result["source"] == str(image) and len(result["top_k"]) == 3
    done = _run([script, "--model", bundle / "model_int8.tflite", "--json", "--camera", clip,
                 "--headless"], timeout=120, env=env, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["summary"]["frames"] == 4

    done = _run([python, "-c", "import tensorflow"], timeout=120, env=env, cwd=elsewhere)
    assert done.returncode != 0 and "No module named 'tensorflow'" in done.stderr
    done = _run([python, "-c", "import edge_runtime, sys; print(edge_runtime.__file__)"],
                timeout=60, env=env, cwd=elsewhere)
    assert str(venv) in done.stdout  # the installed copy, not the repository's
