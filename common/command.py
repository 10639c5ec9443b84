"""What every command does around its work: logging, quiet TensorFlow, errors, exit codes, Ctrl-C.

Each console script is a thin ``main(argv)`` that parses its flags and hands a ``work()``
function to :func:`run_command`, which turns every way of ending into one exit code of
:mod:`common.errors` and at most one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence

from common.errors import (
    EXIT_CHECK_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UserError,
)

PACKAGES = ("common", "train", "export", "edge_runtime", "deploy", "benchmarks", "tune")
"""The loggers :func:`setup_logging` configures: library code logs under its module name."""


class _ConsoleFormatter(logging.Formatter):
    """Progress as plain lines; warnings and errors prefixed so they stand out in a log."""

    def __init__(self, prog: str | None = None) -> None:
        super().__init__()
        self.prefix = f"{prog}: " if prog else ""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            return f"{self.prefix}error: {message}"
        if record.levelno >= logging.WARNING:
            return f"{self.prefix}warning: {message}"
        return f"{self.prefix}{message}"


class _MaxLevel(logging.Filter):
    def __init__(self, below: int) -> None:
        super().__init__()
        self.below = below

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.below


def setup_logging(verbose: bool = False, quiet: bool = False,
                  progress_to: str = "stdout", prog: str | None = None) -> None:
    """Route the packages' logging to the terminal: progress to stdout, warnings to stderr.

    ``quiet`` keeps warnings and errors only; ``verbose`` adds debug detail. A command whose
    stdout is data (``edge-classify``'s JSON lines) sends progress to ``"stderr"`` too. Streams
    are looked up at each record, so redirection (pytest's capture, ``quiet_output``) is
    honoured. With ``prog``, every line starts with the program's name (for a command whose
    notes share stderr with other programs' output).
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO

    class _Stream(logging.StreamHandler):
        def __init__(self, name: str) -> None:
            super().__init__()
            self._name = name

        @property
        def stream(self):  # the current sys.stdout/sys.stderr, not the one at set-up
            return getattr(sys, self._name)

        @stream.setter
        def stream(self, _value) -> None:
            pass

    out, err = _Stream(progress_to), _Stream("stderr")
    out.addFilter(_MaxLevel(logging.WARNING))
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(_ConsoleFormatter(prog))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.handlers[:] = [out, err]
        logger.setLevel(level)
        logger.propagate = False


def import_tensorflow_quietly(prog: str) -> bool:
    """Import TensorFlow without its start-up log (which ignores TF_CPP_MIN_LOG_LEVEL)."""
    from common.quiet import quiet_output

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet_output():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA probing logs here, once
            # TensorFlow's Python warnings (tf.function retracing advice and the like) speak
            # to TensorFlow developers, not to users of these commands; errors still show.
            tf.get_logger().setLevel("ERROR")
    except ImportError as exc:
        say(prog, f"error: TensorFlow is not installed ({exc}); "
                  "install the workstation extra: pip install '.[train]'")
        return False
    return True


def say(prog: str, message: object) -> None:
    """One line on stderr, prefixed with the program name, whatever the message holds."""
    text = " ".join(str(message).split()) or type(message).__name__
    print(f"{prog}: {text}", file=sys.stderr, flush=True)


def save_traceback(prog: str, exc: BaseException) -> str | None:
    """Write ``exc``'s traceback to a file in the temp folder; its path, or None if unwritable."""
    try:
        fd, path = tempfile.mkstemp(prefix=f"{prog}-crash-{time.strftime('%Y%m%d-%H%M%S')}-",
                                    suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(f"{prog} {' '.join(sys.argv[1:])}\n\n")
            f.write("".join(traceback.format_exception(exc)))
        return path
    except OSError:
        return None


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the same clean-up runs and the exit code is 130."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def run_command(prog: str, work: Callable[[], int], interrupted: str = "",
                needs_tensorflow: bool = True, verbose: bool = False, quiet: bool = False,
                progress_to: str = "stdout") -> int:
    """Run a command's ``work`` and return its exit code (see :mod:`common.errors`).

    A :class:`UserError` becomes one line on stderr and exit code 2. Ctrl-C or SIGTERM
    prints ``interrupted`` (what was kept, how to go on) and gives 130. Anything else is a
    bug: one line naming it and where its traceback was saved (printed whole with
    ``verbose``), and exit code 3. Logging is set up first (see :func:`setup_logging`).
    """
    # a command whose stdout is data names itself on every stderr line
    setup_logging(verbose, quiet, progress_to, prog if progress_to == "stderr" else None)
    if needs_tensorflow and not import_tensorflow_quietly(prog):
        return EXIT_USAGE
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread (a test harness): no SIGTERM handler
        pass
    try:
        return work()
    except UserError as exc:
        say(prog, f"error: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        if needs_tensorflow:  # a progress bar may be mid-line
            print(file=sys.stderr)
        say(prog, "interrupted" + (f"; {interrupted}" if interrupted else ""))
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_CHECK_FAILED
    except Exception as exc:
        if verbose:
            traceback.print_exc()
        path = save_traceback(prog, exc)
        where = f"traceback saved to {path}" if path else "traceback not saved"
        say(prog, f"internal error: {type(exc).__name__}: {exc} ({where}; please report it)")
        return EXIT_INTERNAL
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def run_main(parser, argv: Sequence[str] | None, work: Callable[[argparse.Namespace], int],
             interrupted: str = "", needs_tensorflow: bool = False,
             progress_to: str = "stdout") -> int:
    """A whole ``main(argv)`` for a command with nothing to check before its work: ``argv``
    parsed by ``parser`` (a :class:`common.argtypes.Parser`; ``--help`` gives 0, a usage error
    one line and 2), then ``work(args)`` under :func:`run_command`, named ``parser.prog``, with
    the parser's ``-v``/``-q`` where it has them."""
    from common.argtypes import parse_command_line

    args = parse_command_line(lambda: parser.parse_args(argv))
    if isinstance(args, int):
        return args
    return run_command(parser.prog, lambda: work(args), interrupted, needs_tensorflow,
                       verbose=getattr(args, "verbose", False),
                       quiet=getattr(args, "quiet", False), progress_to=progress_to)


def check_first(prog: str, check: Callable[[], object]) -> int | None:
    """Run ``check`` (a validation that must answer before TensorFlow's seconds of start-up):
    None when it passes; when it raises a :class:`UserError`, one line on stderr and the exit
    code to return (2)."""
    try:
        check()
    except UserError as exc:
        say(prog, f"error: {exc}")
        return EXIT_USAGE
    return None
