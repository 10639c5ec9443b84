"""argparse pieces every command uses: value types that say what is wrong, and help formatting."""

from __future__ import annotations

import argparse
from collections.abc import Callable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows real defaults and keeps the description's layout; None, False, [] and on/off
    flags say nothing (their help text describes the default instead)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if (action.default is None or action.default is False or action.default == []
                or action.nargs == 0):
            return action.help
        return super()._get_help_string(action)


class _PrintVersion(argparse.Action):
    """``--version``: the toolchain's version, looked up only when asked for (in a checkout,
    asking git takes a fraction of a second)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print this toolchain's version (edge-toolchain's, from git) and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from common.versions import toolchain_version

        print(f"{parser.prog} {toolchain_version()}", flush=True)  # stdout, as argparse's own
        parser.exit()


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line (exit code 2), not usage + message,
    with ``--version`` (every command prints the toolchain's version)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        if self.add_help:  # not in a parent parser, whose options the child takes over
            self.add_argument("--version", action=_PrintVersion)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind: type):
    try:
        return kind(text)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """An integer ≥ 0."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 0")
    return value


def positive_float(text: str) -> float:
    """A number > 0."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def non_negative_float(text: str) -> float:
    """A number ≥ 0."""
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value} is not ≥ 0")
    return value


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def fraction(text: str) -> float:
    """A number in [0, 1): a share of the data."""
    value = _number(text, float)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in [0, 1)")
    return value


def positive_fraction(text: str) -> float:
    """A number in (0, 1]: a share of something that must get some of it (a core's time)."""
    value = _number(text, float)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not in (0, 1]")
    return value


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` and ``-q/--quiet``, read by :func:`common.command.setup_logging`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true",
                       help="more detail; an internal error prints its whole traceback")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="warnings and errors only")


def parse_command_line(parse: Callable[[], argparse.Namespace]) -> argparse.Namespace | int:
    """``parse()``'s namespace, or the exit code when it ended the program (``--help``: 0; a
    usage error, already printed as one line: 2), so a ``main()`` returns it like any other."""
    try:
        return parse()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
