"""edge-deploy: a bundle to one Raspberry Pi or fifty, over ssh and rsync, none left broken.

    edge-deploy runs/pets/export pi-kitchen pi-door pi@10.0.0.7
    edge-deploy runs/pets/export $(cat hosts.txt) --jobs 16 --json
    edge-deploy runs/pets-2/export $(cat hosts.txt) --stage            # run it in shadow first
    edge-deploy runs/pets-2/export $(cat hosts.txt) --promote-if 0.95  # then where it agreed
    edge-deploy runs/pets/export $(cat hosts.txt) --canary --wave 10   # one, then 10 at a time

Each host, in parallel, gets the bundle copied into a new version folder (rsync: only what
changed) and runs ``edge-model activate`` on it: every file's sha256 against the manifest, the
bundle's evaluation set giving the workstation's answers on that device, then the ``current``
link switched atomically; a running service picks the new model up between two frames. A host
that fails a check stays on its version. With ``--wave N`` (and ``--canary``: the first host
alone first) the hosts go N at a time, the next wave only once every host of the last one took
the bundle: the first failure stops the rollout, and the hosts after it are ``not reached``.
One row per host: version, state, checks, result. A signed bundle (``edge-model sign``) carries
its signature; a device with an ``allowed_signers`` file checks it. Hosts, users, ports, keys
and known hosts come from ssh's configuration (batch mode: keys, no password prompts).
The hosts need the wheel installed (README, 'On the Raspberry Pi'): ``~/edge/bin/edge-model``.
For an inventory instead of a list, deploy/ansible/ does the same with ansible-playbook.
--stage checks and stages the bundle instead (``edge-model stage``): each host's service runs it
beside its current version on live frames. --promote-if P later activates it on each host
whose shadow agreed on at least P of --min-frames live frames (``edge-model promote``; nothing
is copied): one row per host with the agreement and the frames.

Exit codes: 0 every host runs (or staged, or promoted) the bundle; 1 a host could not be
reached, could not take the copy, refused the bundle or was not promoted (the others of its wave
went on); 2 bad usage: not a bundle, a signature that does not match it, a host name starting
with '-', no ssh or rsync here; 3 an internal error (the traceback saved to a file).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from common import argtypes
from common.argtypes import (
    Parser,
    add_verbosity,
    parse_command_line,
    positive_float,
    positive_int,
)
from common.command import run_command, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from deploy.fleet import DEFAULT_EDGE_MODEL, DeployConfig, check_hosts, deploy, waves
from deploy.promote import MIN_FRAMES
from deploy.signature import SIGNATURE_FILE, SignatureError, matches
from deploy.store import version_of
from edge_runtime.errors import EdgeError
from edge_runtime.manifest import MANIFEST_FILE, Manifest

PROG = "edge-deploy"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``edge-deploy``."""
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("bundle", type=Path, metavar="BUNDLE",
                        help="the export/ folder edge-export wrote")
    parser.add_argument("hosts", nargs="+", metavar="HOST",
                        help="[USER@]HOST as ssh takes it (an alias of ~/.ssh/config too)")
    parser.add_argument("--ssh-config", type=Path, metavar="FILE",
                        help="ssh configuration to use instead of ~/.ssh/config (ssh -F)")
    parser.add_argument("--edge-model", default=DEFAULT_EDGE_MODEL, metavar="PATH",
                        help="edge-model on the hosts (~ is the remote user's home)")
    parser.add_argument("--root", metavar="DIR",
                        help="the versions' folder on the hosts (default: theirs, "
                             "$EDGE_MODEL_ROOT else ~/edge-models)")
    parser.add_argument("--jobs", type=positive_int, default=8, metavar="N",
                        help="hosts deployed to at once")
    parser.add_argument("--timeout", type=positive_float, default=600, metavar="SECONDS",
                        help="the longest one step (connect, copy, check) may take on a host")
    parser.add_argument("--wave", type=positive_int, metavar="N",
                        help="roll out N hosts at a time, in the order given: the next wave "
                             "only when every host of the last one took the bundle; the first "
                             "failure stops the rollout (default: every host at once, a "
                             "failure stopping none)")
    parser.add_argument("--canary", action="store_true",
                        help="the first host alone first, then the others (--wave at a time)")
    parser.add_argument("--json", action="store_true",
                        help='one JSON object per host: {"host", "version", "checks", '
                             '"result", "ok", "state"}; state: activated, already current, '
                             'staged, refused, failed or not reached ({"host", "version", '
                             '"frames", "agreement", "result", "ok"} with --promote-if)')
    shadow = parser.add_mutually_exclusive_group()
    shadow.add_argument("--stage", action="store_true",
                        help="stage the bundle instead of activating it: checked the same way, "
                             "then run by each host's service beside its current version")
    shadow.add_argument("--promote-if", type=argtypes.probability, metavar="P",
                        help="copy nothing: on each host where the bundle is staged, activate "
                             "it if its shadow agreed on at least P of the live frames")
    parser.add_argument("--min-frames", type=positive_int, default=MIN_FRAMES, metavar="N",
                        help="with --promote-if: the least live frames the shadow was "
                             "compared on")
    add_verbosity(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; returns the exit code."""
    bundle = args.bundle
    try:
        manifest = Manifest.load(bundle)
        manifest.check_files(bundle)  # a bundle broken here is broken everywhere: say it once
    except EdgeError as exc:
        if not (bundle / MANIFEST_FILE).is_file():
            raise UsageError(f"{bundle}: not a bundle (no {MANIFEST_FILE}): give the export/ "
                             "folder edge-export wrote") from None
        raise UsageError(f"{exc}; copy or export the bundle again") from None
    check_hosts(args.hosts)
    if (bundle / SIGNATURE_FILE).is_file():  # who signed is each device's to judge; the bytes
        try:                                 # are checked here once, not refused fifty times
            signed = matches(bundle)
        except SignatureError as exc:
            raise UsageError(f"{exc}: sign it again (edge-model sign {bundle} --key KEY)") \
                from None
    else:
        signed = None
    for tool in ("ssh", "rsync"):
        if shutil.which(tool) is None:
            raise UsageError(f"{tool} is not installed here (apt install openssh-client rsync)")
    if args.ssh_config is not None and not args.ssh_config.is_file():
        raise UsageError(f"--ssh-config {args.ssh_config}: no such file")
    hosts = list(dict.fromkeys(args.hosts))  # a host named twice is deployed to once
    version = version_of(bundle)
    if args.min_frames != MIN_FRAMES and args.promote_if is None:
        raise UsageError("--min-frames applies to --promote-if")
    settings = DeployConfig(args.ssh_config, args.edge_model, args.root, args.jobs, args.timeout,
                            "stage" if args.stage else "activate")
    if args.promote_if is not None:
        return promote_rows(args, hosts, version, settings)
    groups = waves(hosts, args.wave, args.canary)
    say(PROG, f"version {version}{f' (signed with {signed})' if signed else ''} to "
              f"{len(hosts)} host(s)"
              + (f" in {len(groups)} waves of {', '.join(str(len(g)) for g in groups)}"
                 if len(groups) > 1 else "")
              + f", {min(args.jobs, max(map(len, groups)))} at a time")
    rows = deploy(bundle.resolve(), hosts, version, settings,
                  on_done=lambda r: say(PROG, f"{r.host}: {r.result}"),
                  wave=args.wave, canary=args.canary)
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
    else:
        width = max(len("host"), *(len(r.host) for r in rows))
        states = max(len("state"), *(len(r.state) for r in rows))
        checks = max(len("checks"), *(len(r.checks) for r in rows))
        print(f"{'host':{width}}  {'version':12}  {'state':{states}}  {'checks':{checks}}  "
              "result")
        for r in rows:
            result = "" if r.result == r.state else r.result
            print(f"{r.host:{width}}  {r.version:12}  {r.state:{states}}  "
                  f"{r.checks:{checks}}  {result}".rstrip())
    failed = [r.host for r in rows if not r.ok]
    if failed:
        say(PROG, f"{len(failed)} of {len(rows)} host(s) not updated: {', '.join(failed)}")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def promote_rows(args: argparse.Namespace, hosts: list[str], version: str,
                 settings: DeployConfig) -> int:
    """``--promote-if``: the staged ``version`` promoted where its shadow allows; a row a host."""
    from deploy.fleet import promote

    say(PROG, f"promoting staged {version} on {len(hosts)} host(s) where it agreed on at least "
              f"{args.promote_if:g} of {args.min_frames}+ live frames")
    rows = promote(hosts, version, args.promote_if, args.min_frames, settings,
                   on_done=lambda r: say(PROG, f"{r.host}: {r.result}"))
    if args.json:
        for row in rows:
            print(json.dumps(row.to_json()))
    else:
        width = max(len("host"), *(len(r.host) for r in rows))
        print(f"{'host':{width}}  {'version':12}  {'frames':>7}  {'agreement':>9}  result")
        for r in rows:
            agreement = "-" if r.agreement is None else f"{r.agreement:.3f}"
            frames = "-" if r.frames is None else str(r.frames)
            print(f"{r.host:{width}}  {r.version:12}  {frames:>7}  {agreement:>9}  {r.result}")
    failed = [r.host for r in rows if not r.ok]
    if failed:
        say(PROG, f"{len(failed)} of {len(rows)} host(s) not promoted: {', '.join(failed)}")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-deploy``; returns the exit code (see the module doc)."""
    args = parse_command_line(lambda: build_parser().parse_intermixed_args(argv))
    if isinstance(args, int):
        return args
    return run_command(PROG, lambda: run(args), needs_tensorflow=False, verbose=args.verbose,
                       quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
