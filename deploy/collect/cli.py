"""edge-collect: the pictures and monitoring records of one Raspberry Pi or fifty, back on the
workstation, each distinct picture once.

    edge-collect pi-kitchen pi-door pi@10.0.0.7 --out collected/
    edge-collect $(cat hosts.txt) --out collected/ --prune-remote --report --jobs 16
    edge-collect --out collected/ --report            # the drift report only

Each host, in parallel, is asked where its data root is (``HOST:PATH``, else its
``$EDGE_DATA_ROOT``, else ``~/edge-data``: what edge-capture and edge-classify write), and rsync
copies it into ``DIR/.edge-collect/hosts/<host>/data/`` (only what is new: a second run copies
nothing). Every distinct picture (by sha256, across hosts and runs) is then stored once:
labelled ones in ``DIR/<label>/``, uncertain frames and shadow disagreements in
``DIR/unlabelled/`` (label them with edge-label), each with a line in ``DIR/index.jsonl``
(hosts, times, model versions, scores); each host's monitoring records gather in
``DIR/monitor/<host>.jsonl``. ``--prune-remote`` then deletes on each device the pictures that
arrived, each only if its sha256 there is the one checked here. ``--report`` draws per host how
the class mix and the confidence moved (``DIR/report/drift.png``, ``drift.md``, ``drift.json``).
``--staged`` takes in copies the Ansible role (deploy/ansible/edge-collect.yml) pulled.

A run killed at any moment loses nothing: run the same command again. One row per host.
Exit codes: 0 every host collected; 1 a host could not be reached or copied from (the others
went on); 2 bad usage: no ssh or rsync here, an unwritable DIR (a full disk), another
edge-collect writing into it, --report with no monitoring records; 3 an internal error (the
traceback saved).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from common.argtypes import (
    Parser,
    add_verbosity,
    parse_command_line,
    positive_float,
    positive_int,
)
from common.command import run_command, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from deploy.collect import drift
from deploy.collect.collection import Collection, CollectionError
from deploy.collect.pull import Host, HostRow, collect
from deploy.fleet import DeployConfig

PROG = "edge-collect"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``edge-collect``."""
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("hosts", nargs="*", metavar="HOST[:PATH]",
                        help="[USER@]HOST as ssh takes it (an alias of ~/.ssh/config too), and "
                             "the data root there when it is not the host's own "
                             "($EDGE_DATA_ROOT, else ~/edge-data)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="the collection: DIR/<label>/, DIR/unlabelled/, DIR/index.jsonl")
    parser.add_argument("--prune-remote", action="store_true",
                        help="delete on each host the pictures that arrived, each only when its "
                             "sha256 there is still the one checked here")
    parser.add_argument("--staged", action="store_true",
                        help="no ssh: take in the hosts' copies already in "
                             "DIR/.edge-collect/hosts/<host>/data/ (the Ansible role's pull)")
    parser.add_argument("--report", action="store_true",
                        help="draw the drift report from DIR/monitor/ into DIR/report/ (after "
                             "collecting, when hosts are named)")
    parser.add_argument("--ssh-config", type=Path, metavar="FILE",
                        help="ssh configuration to use instead of ~/.ssh/config (ssh -F)")
    parser.add_argument("--jobs", type=positive_int, default=8, metavar="N",
                        help="hosts collected from at once")
    parser.add_argument("--timeout", type=positive_float, default=600, metavar="SECONDS",
                        help="the longest one step (connect, copy, prune) may take on a host")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per host: {"host", "data_root", "pulled", '
                             '"pictures", "new", "monitor", "pruned", "result", "ok"}; with '
                             '--report a last {"report": {...}}')
    add_verbosity(parser)
    return parser


def _check(args: argparse.Namespace) -> list[Host]:
    if not args.hosts and not args.report:
        raise UsageError("name the hosts to collect from, or ask for --report")
    if args.staged and args.prune_remote:
        raise UsageError("--prune-remote needs ssh: not with --staged")
    if not args.hosts and (args.staged or args.prune_remote):
        raise UsageError("--staged and --prune-remote need hosts")
    try:
        hosts = list({h.name: h for h in map(Host.parse, args.hosts)}.values())
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if hosts and not args.staged:
        for tool in ("ssh", "rsync"):
            if shutil.which(tool) is None:
                raise UsageError(f"{tool} is not installed here (apt install "
                                 f"{'openssh-client' if tool == 'ssh' else tool})")
    if args.ssh_config is not None and not args.ssh_config.is_file():
        raise UsageError(f"--ssh-config {args.ssh_config}: no such file")
    return hosts


def _staged(hosts: list[Host], collection: Collection) -> list[HostRow]:
    rows = []
    for host in hosts:
        if not collection.staging(host.name).is_dir():
            rows.append(HostRow(host.name, "-", 0, 0, 0, 0, None,
                                f"no staged copy in {collection.staging(host.name)}", False))
            continue
        taken = collection.take(host.name)
        rows.append(HostRow(host.name, "-", 0, taken.pictures, taken.new, taken.monitor, None,
                            "taken from the staged copy", True))
    collection.finish()
    return rows


def _print_rows(rows: list[HostRow], as_json: bool, pruning: bool) -> None:
    if as_json:
        for row in rows:
            print(json.dumps(row.to_json()), flush=True)
        return
    width = max(len("host"), *(len(r.host) for r in rows))
    head = f"{'host':{width}}  pictures  new  pulled" + ("  pruned" if pruning else "")
    print(head + "  result")
    for r in rows:
        line = f"{r.host:{width}}  {r.pictures:8d}  {r.new:3d}  {r.pulled:6d}"
        if pruning:
            line += f"  {'-' if r.pruned is None else r.pruned:>6}"
        print(f"{line}  {r.result}", flush=True)


def _report(folder: Path, as_json: bool, required: bool) -> None:
    try:
        rows, png, why = drift.write_report(folder)
    except ValueError as exc:
        if required:
            raise UsageError(str(exc)) from None
        say(PROG, f"no report: {exc}")
        return
    flagged = [r.host for r in rows if r.watch]
    where = folder / "report"
    if why:
        say(PROG, f"warning: no drift.png: {why} (pip install matplotlib); the tables are in "
                  f"{where}")
    if as_json:
        print(json.dumps({"report": {"png": None if png is None else str(png),
                                     "markdown": str(where / "drift.md"),
                                     "json": str(where / "drift.json"),
                                     "hosts": len(rows), "flagged": flagged}}))
    else:
        say(PROG, f"drift report of {len(rows)} host(s) in {where}/"
                  + (f"; flagged: {', '.join(flagged)}" if flagged else "; none flagged"))


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; returns the exit code."""
    hosts = _check(args)
    try:
        collection = Collection(args.out)
        with collection.locked():
            rows = []
            if hosts and args.staged:
                rows = _staged(hosts, collection)
            elif hosts:
                settings = DeployConfig(args.ssh_config, jobs=args.jobs, timeout_s=args.timeout)
                say(PROG, f"collecting from {len(hosts)} host(s), "
                          f"{min(args.jobs, len(hosts))} at a time, into {args.out}")
                rows = collect(hosts, collection, settings, args.prune_remote,
                               on_done=lambda r: say(PROG, f"{r.host}: {r.result}"))
            if rows:
                _print_rows(rows, args.json, args.prune_remote)
                new = sum(r.new for r in rows)
                say(PROG, f"{new} new picture(s); {len(collection.entries)} distinct in "
                          f"{args.out}/index.jsonl")
            if args.report:
                _report(args.out, args.json, required=not hosts)
    except CollectionError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # the workstation's side: a full disk, a folder made read-only
        raise UsageError(f"cannot write into {args.out}: "
                         f"{exc.strerror or exc}{f' ({exc.filename})' if exc.filename else ''}"
                         "; what was stored stays, run again when fixed") from None
    failed = [r.host for r in rows if not r.ok]
    if failed:
        say(PROG, f"{len(failed)} of {len(rows)} host(s) not collected: {', '.join(failed)}")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-collect``; returns the exit code (see the module doc)."""
    args = parse_command_line(lambda: build_parser().parse_intermixed_args(argv))
    if isinstance(args, int):
        return args
    return run_command(PROG, lambda: run(args), needs_tensorflow=False, verbose=args.verbose,
                       quiet=args.quiet,
                       interrupted="what was copied and stored stays: run the same command "
                                   "again to go on")


if __name__ == "__main__":
    sys.exit(main())
