"""edge-service: run edge-classify as a systemd service at boot, for the user who installs it.

    sudo ~/edge/bin/edge-service install     # the int8 model of ~/edge-models' current version
    ~/edge/bin/edge-service install --model ~/pets/model_int8.tflite --print   # show, write nothing

``install`` fills in the unit template (deploy/edge-classify.service, package data: its one
definition) with the user's name, home, virtual environment and model, and writes it to
/etc/systemd/system/edge-classify.service (a different unit already there is kept as
edge-classify.service.bak). Under sudo the user is the one who ran sudo (SUDO_USER), never
root: current Raspberry Pi OS has no "pi" user, the first-boot wizard names one. Without
--model the service runs ``~/edge-models/current/model_int8.tflite``: the int8 variant, which
edge-model never makes current a bundle without. Before each start the service re-hashes its
store (``edge-model check --fallback``): a damaged current version gives way to the previous one.

The unit is ``Type=notify`` with a watchdog: edge-classify tells systemd it is alive as it
classifies frames, so a camera that hangs gets the service restarted. A ``--model`` through
edge-model's ``current`` link is reloaded between two frames when ``edge-model activate``
switches it (``systemctl reload edge-classify`` forces a reload).

--network serves the live view to the network (0.0.0.0) with a token kept in a chmod-600 file
that systemd hands over as EDGE_SERVE_TOKEN (EnvironmentFile=), so the token is never in `ps`
nor in the journal; an existing file, and its token, are kept.

TensorFlow-free (the edge extra). Exit codes: 0 done; 2 bad usage or a path that is not there
(one line on stderr); 3 an internal error (the traceback saved to a file).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from common.argtypes import Parser, add_verbosity
from common.command import run_main, say
from common.errors import UsageError
from deploy.checks import SERVICE_VARIANT
from deploy.store import DEFAULT_ROOT
from deploy.unit import (
    DEFAULT_ENV_FILE,
    DEFAULT_VENV,
    TOKEN_VARIABLE,
    UNIT_PATH,
    make_env_file,
    render,
    resolve,
    service_user,
    write_unit,
)

PROG = "edge-service"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``edge-service``."""
    parser = Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", metavar="install", required=True)
    install = commands.add_parser("install", help="write the systemd unit",
                                  description=__doc__, formatter_class=parser.formatter_class)
    install.error = parser.error  # one-line usage errors for the subcommand too
    install.add_argument("--model", metavar="FILE.tflite",
                         help="the model the service classifies with (its bundle's "
                              "manifest.json and labels.txt beside it); through edge-model's "
                              "current link, activating a version reloads the service "
                              f"(default: the {SERVICE_VARIANT} variant of {DEFAULT_ROOT}/"
                              "current, ~ the service user's home)")
    install.add_argument("--venv", default=DEFAULT_VENV, metavar="DIR",
                         help="the virtual environment with edge-classify installed "
                              "(~ is the service user's home)")
    install.add_argument("--user", metavar="NAME",
                         help="the account the service runs as (default: the one who ran "
                              "sudo, else the current one)")
    install.add_argument("--workdir", metavar="DIR",
                         help="the service's working directory (default: the user's home)")
    install.add_argument("--camera", default="auto", metavar="SOURCE",
                         help="edge-classify's --camera value (edge-classify --list-cameras "
                              "shows them)")
    install.add_argument("--port", type=int, default=8080, metavar="N",
                         help="the live view's port")
    install.add_argument("--network", action="store_true",
                         help="serve the live view to the network (0.0.0.0) with a token from "
                              "--env-file, instead of this machine only (reached with ssh -L)")
    install.add_argument("--env-file", default=DEFAULT_ENV_FILE, metavar="FILE",
                         help=f"the chmod-600 file holding {TOKEN_VARIABLE}=…, read by systemd "
                              "(EnvironmentFile=); with --network it is created with a random "
                              "token when missing")
    where = install.add_mutually_exclusive_group()
    where.add_argument("--print", action="store_true",
                       help="print the unit on stdout and write nothing")
    where.add_argument("--output", metavar="FILE",
                       help=f"write the unit to FILE instead of {UNIT_PATH} (to review it, "
                            "or for tests)")
    add_verbosity(install)
    return parser


def install(args: argparse.Namespace) -> int:
    """Carry out ``edge-service install``; returns the exit code.

    Raises:
        UsageError: a path that is not there, an account that is not, no right to write.
    """
    account = service_user(args.user)
    home = account.pw_dir
    model = resolve(args.model, home) if args.model else _store_model(home)
    venv = resolve(args.venv, home)
    workdir = resolve(args.workdir, home) if args.workdir else Path(home)
    env_file = resolve(args.env_file, home)
    edge_classify = venv / "bin" / "edge-classify"
    if not model.is_file():
        raise UsageError(f"--model {model}: no such file")
    for tool in (edge_classify, edge_classify.with_name("edge-model")):
        if not (tool.is_file() and os.access(tool, os.X_OK)):
            raise UsageError(f"{tool} is not there: create the venv and install the wheel "
                             "with the edge extra into it first (README, 'On the Raspberry "
                             "Pi'), or name it with --venv DIR")
    if not workdir.is_dir():
        raise UsageError(f"--workdir {workdir}: no such folder")
    if not 1 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: expected 1-65535")
    serve = f"{'0.0.0.0' if args.network else '127.0.0.1'}:{args.port}"
    unit = render(account.pw_name, workdir, edge_classify, model, args.camera, serve, env_file)
    if args.print:
        sys.stdout.write(unit)
        return 0
    target = Path(args.output).resolve() if args.output else UNIT_PATH
    if not os.access(target.parent, os.W_OK):
        raise UsageError(f"cannot write {target}: run it with sudo (or --print to see the "
                         "unit, --output FILE to write it elsewhere)")
    if args.network:
        created, warning = make_env_file(env_file, account)
        if warning:
            say(PROG, f"warning: {warning}")
        if created:
            say(PROG, f"wrote the live view's token to {env_file} (chmod 600)")
    elif env_file.exists():
        say(PROG, f"note: {env_file} exists: the live view asks for the token in it on "
                  "loopback too")
    if target.exists() and target.read_text(encoding="utf-8", errors="replace") == unit:
        say(PROG, f"{target} is already this unit")
    else:
        if target.exists():
            os.replace(target, target.with_name(target.name + ".bak"))
            say(PROG, f"kept the previous unit as {target.name}.bak")
        write_unit(target, unit)
        say(PROG, f"wrote {target} for {account.pw_name} (model {model})")
    if args.output:
        return 0
    say(PROG, "start it now and at every boot, and follow what it says:")
    print("  sudo systemctl daemon-reload && sudo systemctl enable --now edge-classify\n"
          "  journalctl -u edge-classify -f", file=sys.stderr)
    if args.network:
        print(f"  the live view: http://{os.uname().nodename}.local:{args.port}/?token=TOKEN, "
              f"TOKEN from: sed -n 's/^{TOKEN_VARIABLE}=//p' {env_file}", file=sys.stderr)
    else:
        print(f"  the live view: ssh -L {args.port}:127.0.0.1:{args.port} "
              f"{account.pw_name}@{os.uname().nodename}.local, then open "
              f"http://127.0.0.1:{args.port}/", file=sys.stderr)
    return 0


def _store_model(home: str) -> Path:
    """The model the service runs by default: the :data:`SERVICE_VARIANT` file the manifest of
    edge-model's current version names (the path through ``current``, so activations reach it).

    Raises:
        UsageError: there is no current version, or its manifest does not read.
    """
    from edge_runtime.errors import EdgeError
    from edge_runtime.manifest import Manifest

    current = resolve(DEFAULT_ROOT, home) / "current"
    try:
        variant = Manifest.load(current).variants.get(SERVICE_VARIANT)
    except EdgeError as exc:
        raise UsageError(f"no --model, and {current} has no readable manifest ({exc}): "
                         "edge-model activate BUNDLE_DIR first, or give --model FILE") from None
    if variant is None:
        raise UsageError(f"no --model, and the current version in {current} has no "
                         f"{SERVICE_VARIANT} variant: give --model FILE")
    return current / variant.file


def run(args: argparse.Namespace) -> int:
    """The subcommand; an unwritable path is a usage error (exit 2), not a crash."""
    try:
        return install(args)
    except OSError as exc:
        raise UsageError(f"{exc.filename or ''}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-service``; returns the exit code (see the module doc)."""
    return run_main(build_parser(), argv, run, progress_to="stderr")


if __name__ == "__main__":
    sys.exit(main())
