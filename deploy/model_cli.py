"""edge-model: the models on this device as versions — activate one, list them, roll back.

    edge-model activate ~/pets                  # check the bundle here, then make it current
    edge-model list                             # the versions; * current, - previous
    edge-model rollback                         # back to the previous version
    edge-model prune --keep 2                   # only current and previous stay

``activate`` copies the bundle beside the running version, checks the copy — every file's
sha256 against manifest.json, then the bundle's evaluation set through every variant on this
machine, which must give the workstation's answers (every one for a float variant, 75 % for
int8, whose kernels round differently on ARM) — and only then switches the ``current`` link in
one atomic rename. A model that fails a check never becomes current: the command names the
check. A service installed with ``edge-service install --model ROOT/current/model_int8.tflite``
loads the new model between two frames (within a second). After each activation only the
--keep most recent versions stay on the card (default 3: current, previous and one more).
``incoming VERSION`` prints (and makes) the folder edge-deploy copies a bundle into.

TensorFlow-free (the edge extra). Exit codes: 0 done (or already current); 1 a check failed,
nothing changed; 2 bad usage: not a bundle, no previous version to roll back to; 3 an internal
error (the traceback saved to a file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common.argtypes import Parser, add_verbosity, positive_int
from common.command import run_main, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK
from deploy.store import (
    DEFAULT_ROOT,
    KEEP,
    ROOT_VARIABLE,
    Store,
    activate,
    default_root,
    describe,
    prune,
)

PROG = "edge-model"


def _keep(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--keep", type=positive_int, default=KEEP, metavar="N",
                        help=f"{text}: the N most recently activated, current and previous "
                             f"among them (at least 2; default {KEEP})")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``edge-model``."""
    parser = Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="activate|list|rollback|prune|incoming")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=f"{text}\n\n{__doc__}",
                                  formatter_class=parser.formatter_class)
        sub.error = parser.error  # one-line usage errors
        sub.add_argument("--root", type=Path, default=None, metavar="DIR",
                         help=f"where the versions live (default: ${ROOT_VARIABLE}, else "
                              f"{DEFAULT_ROOT})")
        add_verbosity(sub)
        return sub

    act = command("activate", "check a bundle on this machine and make it the current version")
    act.add_argument("bundle", type=Path, metavar="BUNDLE_DIR",
                     help="the export/ folder edge-export wrote (manifest.json, the .tflite "
                          "variants, labels.txt, eval_set.npz)")
    act.add_argument("--threads", type=positive_int, metavar="N",
                     help="interpreter threads for the answers check (default: every core)")
    _keep(act, "versions left on this device after the activation")
    act.add_argument("--json", action="store_true",
                     help='one JSON object on stdout: {"version", "result", "checks": '
                          '[{"name", "ok", "detail"}], "removed": [versions]} (what '
                          'edge-deploy reads)')
    listing = command("list", "the versions here, oldest activation first")
    listing.add_argument("--json", action="store_true", help="one JSON object per version")
    command("rollback", "make the previous version current again")
    _keep(command("prune", "remove older versions (and what an interrupted activation left)"),
          "versions left")
    incoming = command("incoming", "print (and make) the folder a bundle of VERSION is copied "
                                   "into before activate (edge-deploy)")
    incoming.add_argument("version", metavar="VERSION")
    return parser


def _say_removed(versions: list[str]) -> None:
    if versions:
        say(PROG, f"removed {len(versions)} older version(s): {', '.join(versions)}")


def run(args: argparse.Namespace) -> int:
    """Carry out the subcommand; returns the exit code."""
    store = Store(args.root if args.root is not None else default_root())
    if args.command == "activate":
        done = activate(store, args.bundle, args.threads,
                        progress=lambda text: say(PROG, f"checking {text}"), keep=args.keep)
        if args.json:
            print(json.dumps(done.to_json()), flush=True)
        for check in done.checks:
            say(PROG, f"{check.name}: {'ok' if check.ok else 'FAILED'}: {check.detail}")
        failed = done.failed()
        if failed is not None:
            say(PROG, f"refused {args.bundle} (version {done.version}): the {failed.name} "
                      f"check failed; current stays {store.current or 'none'}")
            return EXIT_CHECK_FAILED
        say(PROG, f"{done.version} is {'already ' if done.result != 'activated' else 'now '}"
                  f"current in {store.root}"
                  + (f" (previous: {store.previous})" if store.previous else ""))
        _say_removed(done.removed)
        return EXIT_OK
    if args.command == "prune":
        removed = prune(store, args.keep)
        _say_removed(removed)
        if not removed:
            say(PROG, f"nothing to remove: {len(store.versions())} version(s) in {store.root}")
        return EXIT_OK
    if args.command == "rollback":
        was, now = store.rollback()
        say(PROG, f"rolled back: current {was} → {now} in {store.root}")
        return EXIT_OK
    if args.command == "incoming":
        print(store.incoming(args.version).resolve(), flush=True)
        return EXIT_OK
    rows = [describe(store, version) for version in store.versions()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif not rows:
        say(PROG, f"no versions in {store.root} yet: edge-model activate BUNDLE_DIR")
    else:
        print(f"  {'version':12}  {'activated':16}  {'exported':16}  model (variants), "
              "exported by edge-toolchain")
        for row in rows:
            mark = "*" if row["current"] else "-" if row["previous"] else " "
            print(f"{mark} {row['version']:12}  {row['activated']:16}  {row['created']:16}  "
                  f"{row['model']} ({', '.join(row['variants'])}), {row['toolchain']}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-model``; returns the exit code (see the module doc)."""
    return run_main(build_parser(), argv, run, progress_to="stderr")


if __name__ == "__main__":
    sys.exit(main())
