"""Every way a command can end maps to one exit code and at most one line on stderr."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from common.command import run_command
from common.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    UserError,
)
from edge_runtime.errors import BackendError, CameraError, EdgeError, ImageError, ModelError

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge

REPO = Path(__file__).resolve().parents[1]


def _run(work, **kwargs) -> int:
    return run_command("prog", work, "kept what was done", needs_tensorflow=False, **kwargs)


def _raise(exc: BaseException):
    def work():
        raise exc
    return work


def test_the_work_decides_the_code_when_it_returns():
    assert _run(lambda: EXIT_OK) == 0
    assert _run(lambda: EXIT_CHECK_FAILED) == 1


@pytest.mark.parametrize("error", [UserError("bad flag"), ModelError("bad model"),
                                   BackendError("no interpreter"), CameraError("no camera"),
                                   ImageError("not an image")])
def test_user_errors_are_one_line_and_exit_2(capsys, error):
    assert isinstance(error, EdgeError) or type(error) is UserError
    assert _run(_raise(error)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.splitlines() == [f"prog: error: {error}"]


def test_ctrl_c_says_what_was_kept_and_exits_130(capsys):
    assert _run(_raise(KeyboardInterrupt())) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.strip() == "prog: interrupted; kept what was done"


def test_an_internal_error_is_one_line_exit_3_and_its_traceback_is_saved(capsys):
    def buggy():
        return {}["missing"]

    assert _run(buggy) == EXIT_INTERNAL
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "internal error: KeyError" in err
    saved = Path(err.split("traceback saved to ")[1].split(";")[0])
    try:
        text = saved.read_text()
        assert "Traceback" in text and "in buggy" in text
    finally:
        saved.unlink()


def test_verbose_prints_the_traceback_too(capsys):
    assert _run(_raise(RuntimeError("boom")), verbose=True) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: boom" in err
    Path(err.split("traceback saved to ")[1].split(";")[0]).unlink()


def test_sigterm_is_handled_like_ctrl_c():
    # a child that waits inside run_command until it is terminated
    script = textwrap.dedent("""
        import sys, time
        from common.command import run_command
        def work():
            print("ready", flush=True)
            for _ in range(600):  # short sleeps: under emulation a signal may not cut one short
                time.sleep(0.1)
            return 0
        sys.exit(run_command("prog", work, "nothing lost", needs_tensorflow=False))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == EXIT_INTERRUPTED
    assert err.strip() == "prog: interrupted; nothing lost"


def test_edge_classify_crash_is_exit_3_not_a_traceback(capfd, bundle, demo_dir, monkeypatch):
    from edge_runtime import classifier
    from edge_runtime.commands.classify import main

    def broken(self, *args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(classifier.Classifier, "classify", broken)
    image = next(demo_dir.rglob("*.png"), None) or next(demo_dir.rglob("*.jpg"))
    code = main(["--model", str(bundle / "model_int8.tflite"), str(image)])
    err = capfd.readouterr().err.strip()
    assert code == EXIT_INTERNAL
    assert err.startswith("edge-classify: internal error: ZeroDivisionError: a bug (traceback saved")
    assert "Traceback" not in err
    Path(err.split("traceback saved to ")[1].split(";")[0]).unlink()
