"""Builds that upgrade: the version comes from git (setuptools-scm), every command's
``--version`` prints it, and a wheel from a later commit replaces an earlier one in a venv
without ``--force-reinstall``."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from common.versions import CHECKOUT, toolchain_version
from tests.test_docs import console_scripts

GIT_VERSION = re.compile(r"^\d+\.\d+\.dev\d+\+g[0-9a-f]{7,}(\.d\d{8})?$")
"""What setuptools-scm makes of an untagged history (pyproject.toml's [tool.setuptools_scm]):
``0.2.dev251+g1a2b3c4d``, plus the day for a tree with uncommitted changes."""


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.mark.parametrize("command", sorted(console_scripts()))
def test_every_command_prints_the_toolchains_version(command, capsys):
    module, _, function = console_scripts()[command].partition(":")
    main = getattr(importlib.import_module(module), function)
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out == f"{command} {toolchain_version()}\n"


@pytest.mark.skipif(not (CHECKOUT / ".git").exists() or shutil.which("git") is None,
                    reason="not a git checkout: the version is the installed package's")
def test_in_a_checkout_the_version_is_gits():
    version = toolchain_version.__wrapped__()  # asked now, not when this process first asked
    assert GIT_VERSION.match(version), version
    # the commit that runs, not the one the editable install was made at
    assert f"+g{_git('rev-parse', '--short=7', 'HEAD', cwd=CHECKOUT)}" in version


def _wheel(source: Path, out: Path) -> Path:
    """``make wheel``'s build of ``source`` into ``out``."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                    out, source], check=True, capture_output=True, text=True, timeout=600)
    (wheel,) = out.glob("*.whl")
    return wheel


@pytest.mark.long
@pytest.mark.skipif(not (CHECKOUT / ".git").exists() or shutil.which("git") is None,
                    reason="not a git checkout: there is no history to build two versions from")
def test_a_later_commits_wheel_replaces_the_earlier_one(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", CHECKOUT, clone], check=True)
    first = _wheel(clone, tmp_path / "first")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "commit",
                    "--quiet", "--allow-empty", "-m", "a later commit"], cwd=clone, check=True)
    second = _wheel(clone, tmp_path / "second")
    versions = [w.name.split("-")[1] for w in (first, second)]
    assert versions[0] != versions[1] and all(GIT_VERSION.match(v) for v in versions), versions
    # without .git (a tarball): the fallback version, and the build still works
    archive = tmp_path / "archive"
    archive.mkdir()
    tar = subprocess.run(["git", "archive", "HEAD"], cwd=clone, check=True,
                         capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", archive], input=tar, check=True)
    assert _wheel(archive, tmp_path / "tarball").name.split("-")[1] == "0.1"

    # a venv with the first wheel; its dependencies from this one (a .pth after its own
    # site-packages), so the wheels install with --no-deps and nothing is downloaded
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    (site,) = venv.glob("lib/python3*/site-packages")
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    def install(wheel: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python",
                               "install", "--quiet", "--no-deps", wheel],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return subprocess.run([venv / "bin" / "edge-classify", "--version"], check=True,
                              capture_output=True, text=True, timeout=120).stdout

    assert install(first) == f"edge-classify {versions[0]}\n"
    assert install(second) == f"edge-classify {versions[1]}\n"  # no --force-reinstall
