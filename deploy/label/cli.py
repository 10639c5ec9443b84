"""edge-label: label what edge-collect brought back, in a browser, one key per class.

    edge-label collected/ --into photos/
    edge-label collected/ --into photos/ --serve 0.0.0.0:8090     # from another machine

The page shows the pictures of ``DIR`` (an edge-collect folder) not labelled yet, most uncertain
first, with the model's guess and scores (or the label a device gave, or the live and
candidate models' answers), near-duplicates grouped so one key labels a burst. Keys: the class's
key (1-9, then letters), Enter to accept the guess, n for a new class, x to discard (into
``DIR/discarded/``), u to undo. A labelled picture moves into ``INTO/<label>/`` — linked
there, then unlinked from ``DIR``, never replacing a file — after the action is written to
``DIR/label-journal.jsonl``, so a crash loses nothing and undo works after a restart. Train on
INTO afterwards (``edge-train --data photos/ --init-from runs/NAME``).

The page listens on this machine only unless ``--serve`` says otherwise, and every request
needs the token the printed URL carries (labelling moves files). It runs until Ctrl-C.
Exit codes: 0 stopped with Ctrl-C or SIGTERM (what was labelled is in INTO); 2 bad usage: not
an edge-collect folder, the port in use, another edge-label on DIR; 3 an internal error.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from common.argtypes import Parser, add_verbosity, non_negative_int, parse_command_line
from common.command import run_command, say
from common.errors import EXIT_OK, UsageError
from deploy.collect.collection import INDEX, RESERVED, STATE
from deploy.label.dhash import BITS, NEAR
from deploy.label.journal import Journal, LabelError
from deploy.label.pending import Pending
from deploy.label.server import LabelServeError, LabelServer
from edge_runtime.live.network import is_loopback, parse_address

PROG = "edge-label"
DEFAULT_SERVE = "127.0.0.1:8090"


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``edge-label``."""
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("folder", type=Path, metavar="DIR",
                        help="the folder edge-collect --out wrote (with index.jsonl)")
    parser.add_argument("--into", type=Path, required=True, metavar="PHOTOS",
                        help="where labelled pictures go: PHOTOS/<label>/ (made when missing)")
    parser.add_argument("--serve", type=_address, default=DEFAULT_SERVE, metavar="[HOST:]PORT",
                        help="where the page listens (127.0.0.1: this machine only, reach it "
                             "from another with ssh -L; 0.0.0.0: the network)")
    parser.add_argument("--near", type=non_negative_int, default=NEAR, metavar="BITS",
                        help=f"pictures whose difference hashes are at most this many bits "
                             f"apart (of {BITS}) are grouped as near-duplicates; 0: only "
                             "identical-looking ones")
    add_verbosity(parser)
    return parser


def _check(args: argparse.Namespace) -> tuple[Path, Path]:
    folder, into = args.folder, args.into
    if not (folder / INDEX).is_file():
        raise UsageError(f"{folder}: not an edge-collect folder (no {INDEX}); collect into it "
                         "first: edge-collect HOST... --out DIR")
    inside = into.resolve()
    for name in RESERVED:
        kept = (folder / name).resolve()
        if inside == kept or kept in inside.parents:
            raise UsageError(f"--into {into}: inside {folder}/{name}, a folder edge-collect "
                             "keeps for itself")
    try:
        into.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--into {into}: cannot create it ({exc.strerror or exc})") from None
    return folder, into


def run(args: argparse.Namespace, stop: threading.Event | None = None) -> int:
    """Serve the page until Ctrl-C (or ``stop`` is set); returns the exit code."""
    folder, into = _check(args)
    (folder / STATE).mkdir(exist_ok=True)
    lock = os.open(folder / STATE / "label.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"another edge-label is labelling {folder}") from None
        try:
            journal = Journal(folder, into)
        except LabelError as exc:
            raise UsageError(f"{folder}/label-journal.jsonl: its last action cannot be "
                             f"finished: {exc}") from None
        before = journal.counts()
        pending = Pending(folder, journal, args.near)
        host, port = args.serve
        try:
            server = LabelServer(pending, host, port).start()
        except LabelServeError as exc:
            raise UsageError(str(exc)) from None
        try:  # a stop at any moment once the page is served is the normal end, exit 0
            for url in server.urls():
                say(PROG, f"open {url}")
            if is_loopback(server.host):
                say(PROG, f"from another machine: ssh -L {server.port}:127.0.0.1:{server.port} "
                          "THIS-MACHINE, then open the URL there")
            left = pending.state()["pending"]
            say(PROG, f"{left['pictures']} picture(s) in {left['groups']} group(s) to label "
                      f"into {into}/; Ctrl-C to stop")
            (stop or threading.Event()).wait()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        after = journal.counts()
        say(PROG, f"stopped: {after['labelled'] - before['labelled']} picture(s) labelled and "
                  f"{after['discarded'] - before['discarded']} discarded this time "
                  f"(undone ones not counted); the journal is {journal.path}")
        return EXIT_OK
    finally:
        os.close(lock)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-label``; returns the exit code (see the module doc)."""
    args = parse_command_line(lambda: build_parser().parse_args(argv))
    if isinstance(args, int):
        return args
    return run_command(PROG, lambda: run(args), needs_tensorflow=False, verbose=args.verbose,
                       quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
