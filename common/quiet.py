"""Silencing native code that writes straight to file descriptors 1 and 2.

TensorFlow prints its start-up (oneDNN, CUDA probing) whatever
TF_CPP_MIN_LOG_LEVEL says, its converter prints pages of traced signatures,
and the TFLite interpreter logs "Created TensorFlow Lite XNNPACK delegate":
all past Python's ``sys.stdout``/``sys.stderr``, so only fd redirection helps. Picamera2's
AI Camera helper ``print()``s notices to stdout, where ``edge-classify --json`` writes its
results: :func:`stdout_aside` keeps those off stdout without silencing stderr.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def stdout_aside(hide: bool = True):
    """Keep stdout (Python's and C's) for the command's own output during the block: what a
    library writes there goes to stderr, or nowhere with ``hide``. stderr is left alone, so
    progress shown there (and a child process forked inside the block) still reaches the user.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no fd 1 to redirect
        yield
        return
    target = os.open(os.devnull, os.O_WRONLY) if hide else os.dup(2)
    os.dup2(target, 1)
    os.close(target)
    try:
        with open(os.devnull, "w") as devnull, \
                contextlib.redirect_stdout(devnull if hide else sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@contextlib.contextmanager
def quiet_output(enabled: bool = True):
    """Send everything written to stdout and stderr (Python and C++) to a scratch file.

    If the block raises, the tail of what it printed is appended to the
    exception's notes, so a failed conversion still explains itself.
    ``enabled=False`` (e.g. ``--verbose``) lets everything through.
    """
    if not enabled:
        yield
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
    except (OSError, ValueError):  # no fd to redirect (a GUI launcher, a closed stream)
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as scratch:
        os.dup2(scratch.fileno(), 1)
        os.dup2(scratch.fileno(), 2)
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")) as devnull:
                try:
                    yield
                finally:
                    devnull.close()
        except BaseException as exc:
            sys.stdout.flush()
            scratch.seek(0)
            tail = scratch.read().decode("utf-8", "replace")[-2000:]
            if tail.strip() and hasattr(exc, "add_note"):
                exc.add_note(tail)
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
