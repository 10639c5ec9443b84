"""edge-model: the models on this device as versions — activate one, check them, roll back.

    edge-model activate ~/pets                  # check the bundle here, then make it current
    edge-model list                             # the versions; * current, - previous
    edge-model check                            # re-hash current and previous (seconds)
    edge-model rollback                         # back to the previous version, once it verifies
    edge-model prune --keep 2                   # only current and previous stay
    edge-model stage ~/pets-2                   # checked, then run by the service as its shadow
    edge-model promote --min-agreement 0.95     # activated if the shadow agreed enough
    edge-model sign runs/pets/export --key ~/.ssh/id_ed25519   # on the workstation

``activate`` copies the bundle beside the running version — only what its manifest binds by
sha256: a link, a device file or a file the manifest does not list refuses it — and checks the
copy: every file's sha256, the labels, the AI Camera's network by its dnnParams.xml, and the
bundle's evaluation set through every CPU variant on this machine, which must give the
workstation's answers (every one for a float variant, 75 % for int8, whose kernels round
differently on ARM). Only then does it switch the ``current`` link in one atomic rename, each
file and folder flushed to the card first. A service installed with ``edge-service install``
(``--model ROOT/current/model_int8.tflite``) loads the new model between two frames; activate
waits (--health-timeout) for it to report the new version classifying frames, and switches
back when it does not. A model that fails a check never becomes current: the command names
the check. Activating an installed version again re-hashes it and repairs what is damaged.
After each activation only the --keep most recent versions stay on the card (default 3).
``check --fallback --model FILE`` is what the service runs before it starts: a damaged current
version, or one that does not load, gives way to a previous one that verifies, with one loud
line. ``incoming VERSION`` prints (and makes) the folder edge-deploy copies a bundle into.
``stage`` checks a bundle as ``activate`` does but leaves ``current`` alone: the version is
linked as ``staged``, and the service running on the store picks it up within seconds as its
shadow, comparing its top-1 with the current version's on the camera's frames (reported in
status.json). ``promote`` activates the staged version only if that report shows it agreed on
at least --min-agreement of at least --min-frames live frames; ``stage --clear`` drops it.
``sign`` writes BUNDLE/manifest.json.sig, an OpenSSH signature of the manifest (which binds every
file); once ROOT/allowed_signers (OpenSSH's format) exists on a device, ``activate`` first checks
that the bundle was signed, as it is, by a key listed there (the ``signature`` check), and
``check`` and ``rollback`` hold installed versions to it too.

TensorFlow-free (the edge extra). Exit codes: 0 done (or already current); 1 a check failed
(nothing changed), the service did not commit the new version (switched back), a version is
damaged (check), the previous version is damaged (rollback, nothing changed), not enough free
space (nothing changed), the shadow's agreement is short of promote's bar (nothing changed);
2 bad usage: not a bundle, no previous version to roll back to, no ssh-keygen to sign or check
a signature with, a key that cannot sign; 3 an internal error (the traceback saved to a file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from common import argtypes
from common.argtypes import Parser, add_verbosity, non_negative_float, positive_float, positive_int
from common.command import run_main, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from deploy.promote import MIN_AGREEMENT, MIN_FRAMES, promote
from deploy.signature import ALLOWED_SIGNERS, SIGNATURE_FILE, sign
from deploy.store import (
    DEFAULT_ROOT,
    HEALTH_TIMEOUT_S,
    KEEP,
    MIN_FREE_MB,
    ROOT_VARIABLE,
    DamagedVersion,
    Store,
    activate,
    default_root,
    describe,
    fall_back,
    prune,
    rollback,
    verify,
    version_of,
)
from edge_runtime.errors import EdgeError
from edge_runtime.service_status import CURRENT
from edge_runtime.stream.upload_watch import DEFAULT_UPLOAD_WAIT_S

PROG = "edge-model"


def _keep(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--keep", type=positive_int, default=KEEP, metavar="N",
                        help=f"{text}: the N most recently activated, current and previous "
                             f"among them (at least 2; default {KEEP})")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``edge-model``."""
    parser = Parser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="activate|list|check|rollback|prune|incoming|"
                                             "stage|promote|sign")

    def command(name: str, text: str, root: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=f"{text}\n\n{__doc__}",
                                  formatter_class=parser.formatter_class)
        sub.error = parser.error  # one-line usage errors
        if root:
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
    act.add_argument("--min-free-mb", type=non_negative_float, default=MIN_FREE_MB, metavar="MB",
                     help="free space the copy must leave on the card; less refuses the bundle "
                          "before anything is copied")
    act.add_argument("--health-timeout", type=positive_float, default=None,
                     metavar="SECONDS",
                     help="when a service runs on this store: how long it has to report the "
                          "new version classifying frames before the switch is undone (default: "
                          f"{HEALTH_TIMEOUT_S:g}, plus {DEFAULT_UPLOAD_WAIT_S:g} for the AI "
                          "Camera's network upload when the service runs on the sensor)")
    act.add_argument("--json", action="store_true",
                     help='one JSON object on stdout: {"version", "result", "checks": '
                          '[{"name", "ok", "detail"}], "removed": [versions]} (what '
                          'edge-deploy reads)')
    listing = command("list", "the versions here, oldest activation first")
    listing.add_argument("--json", action="store_true", help="one JSON object per version")
    check = command("check", "re-hash the current and previous versions (seconds, no model "
                             "run); exit 1 naming what is damaged")
    check.add_argument("--model", metavar="FILE",
                       help="the service's model, ROOT/current/NAME: its store is checked "
                            "(instead of --root) and it must load; a model outside a store: "
                            "nothing to check")
    check.add_argument("--fallback", action="store_true",
                       help="a current version that is damaged or does not load gives way to "
                            "the previous one if that verifies, with one loud line (the "
                            "service's ExecStartPre=)")
    command("rollback", "make the previous version current again, once it verifies")
    _keep(command("prune", "remove older versions (and what an interrupted activation left)"),
          "versions left")
    incoming = command("incoming", "print (and make) the folder a bundle of VERSION is copied "
                                   "into before activate (edge-deploy)")
    incoming.add_argument("version", metavar="VERSION")
    stage = command("stage", "check a bundle as activate does and stage it: the service runs "
                             "it beside the current version as its shadow")
    stage.add_argument("bundle", type=Path, nargs="?", metavar="BUNDLE_DIR",
                       help="the export/ folder edge-export wrote")
    stage.add_argument("--clear", action="store_true",
                       help="drop the staged version instead (the service's shadow ends)")
    stage.add_argument("--threads", type=positive_int, metavar="N",
                       help="interpreter threads for the answers check (default: every core)")
    stage.add_argument("--min-free-mb", type=non_negative_float, default=MIN_FREE_MB,
                       metavar="MB", help="free space the copy must leave on the card")
    stage.add_argument("--json", action="store_true",
                       help="one JSON object on stdout, as activate's")
    promote = command("promote", "activate the staged version if the service's shadow agreed "
                                 "enough with the current one on live frames")
    promote.add_argument("--min-agreement", type=argtypes.probability, default=MIN_AGREEMENT,
                         metavar="P", help="the least share of live frames whose top-1 the "
                                           "staged version matched")
    promote.add_argument("--min-frames", type=positive_int, default=MIN_FRAMES, metavar="N",
                         help="the least live frames it was compared on")
    promote.add_argument("--if-staged", dest="staged", metavar="VERSION",
                         help="only if the staged version is VERSION (edge-deploy passes the "
                              "bundle's)")
    promote.add_argument("--threads", type=positive_int, metavar="N",
                         help="interpreter threads for the answers check (default: every core)")
    _keep(promote, "versions left on this device after the activation")
    promote.add_argument("--health-timeout", type=positive_float, default=None,
                         metavar="SECONDS",
                         help="how long the service has to report the new version classifying "
                              "frames before the switch is undone (default: as activate's)")
    promote.add_argument("--json", action="store_true",
                         help='one JSON object on stdout: {"version", "result", "reason", '
                              '"staged", "current", "frames", "agreement", "checks", '
                              '"removed"} (what edge-deploy --promote-if reads)')
    signing = command("sign", "sign a bundle (on the workstation): BUNDLE_DIR/manifest.json.sig",
                      root=False)
    signing.add_argument("bundle", type=Path, metavar="BUNDLE_DIR",
                         help="the export/ folder edge-export wrote")
    signing.add_argument("--key", type=Path, required=True, metavar="KEY",
                         help="an OpenSSH private key (~/.ssh/id_ed25519), or its .pub when "
                              "ssh-agent holds it; the devices list its public key in "
                              f"ROOT/{ALLOWED_SIGNERS}")
    return parser


def _say_removed(versions: list[str]) -> None:
    if versions:
        say(PROG, f"removed {len(versions)} older version(s): {', '.join(versions)}")


def run(args: argparse.Namespace) -> int:
    """Carry out the subcommand; returns the exit code."""
    if args.command == "sign":
        key = sign(args.bundle, args.key)
        say(PROG, f"signed {args.bundle} (version {version_of(args.bundle)}) with {key}: "
                  f"{args.bundle / SIGNATURE_FILE}")
        return EXIT_OK
    store = Store(args.root if args.root is not None else default_root())
    if args.command == "activate":
        done = activate(store, args.bundle, args.threads,
                        progress=lambda text: say(PROG, f"checking {text}"), keep=args.keep,
                        min_free_mb=args.min_free_mb, health_timeout_s=args.health_timeout)
        if args.json:
            print(json.dumps(done.to_json()), flush=True)
        for check in done.checks:
            if check.ok:
                say(PROG, f"{check.name}: ok: {check.detail}")
        failed = done.failed()
        if done.result == "rolled back":
            say(PROG, f"switched back to {store.current or 'none'}: the service did not "
                      f"commit {done.version} ({failed.detail})")
            return EXIT_CHECK_FAILED
        if failed is not None:  # one line, the reason in it (edge-deploy's row shows this line)
            say(PROG, f"refused {args.bundle} (version {done.version}): the {failed.name} "
                      f"check failed: {failed.detail}; current stays {store.current or 'none'}")
            return EXIT_CHECK_FAILED
        if store.allowed_signers is None and (args.bundle / SIGNATURE_FILE).is_file():
            say(PROG, f"note: {SIGNATURE_FILE} not checked: there is no "
                      f"{store.root / ALLOWED_SIGNERS} here (docs/raspberry-pi.md, 'Signed "
                      "bundles')")
        how = {"activated": "now", "already current": "already", "repaired": "repaired and"}
        say(PROG, f"{done.version} is {how[done.result]} current in {store.root}"
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
        try:
            was, now = rollback(store)
        except DamagedVersion as exc:
            say(PROG, exc)
            return EXIT_CHECK_FAILED
        say(PROG, f"rolled back: current {was} → {now} in {store.root}")
        return EXIT_OK
    if args.command == "check":
        return _check(args, store)
    if args.command == "incoming":
        print(store.incoming(args.version).resolve(), flush=True)
        return EXIT_OK
    if args.command == "stage":
        return _stage(args, store)
    if args.command == "promote":
        return _promote(args, store)
    rows = [describe(store, version) for version in store.versions()]
    if args.json:
        for row in rows:
            print(json.dumps(row))
    elif not rows:
        say(PROG, f"no versions in {store.root} yet: edge-model activate BUNDLE_DIR")
    else:
        print(f"  {'version':12}  {'activated':16}  {'exported':16}  {'service':13}  "
              "model (variants), exported by edge-toolchain")
        serving = any(row["running"] for row in rows)
        for row in rows:
            mark = ("*" if row["current"] else "-" if row["previous"]
                    else "+" if row["staged"] else " ")
            print(f"{mark} {row['version']:12}  {row['activated']:16}  {row['created']:16}  "
                  f"{_service(row, serving):13}  {row['model']} ({', '.join(row['variants'])}), "
                  f"{row['toolchain']}")
    return EXIT_OK


def _service(row: dict, serving: bool) -> str:
    """The ``service`` column: ``running`` (the service classifies with it now), ``committed``
    (it did, and is not running now), ``not committed`` (current, while a running service
    classifies with another version), else ``-``."""
    if row["running"]:
        return "running"
    if row["committed"]:
        return "committed"
    return "not committed" if row["current"] and serving else "-"


def _model_store(model: str) -> Store | None:
    """The store a service's ``--model ROOT/current/NAME`` goes through, or None."""
    link = Path(model).parent
    if link.name != CURRENT or not link.is_symlink():
        return None
    return Store(link.parent)


def _load_problem(model: Path) -> str | None:
    """Why the service's model does not load (a .tflite in the interpreter; the AI Camera's
    network by its dnnParams.xml), or None when it does."""
    from common.quiet import quiet_output
    from edge_runtime.sources.ai_camera import is_sensor_model

    try:
        if is_sensor_model(model):
            if model.name.endswith(".zip"):
                from edge_runtime.manifest import find_manifest
                from edge_runtime.sensor_network import check_network

                manifest = find_manifest(model)
                if manifest is None:
                    return "does not load (no manifest.json beside it or one folder up)"
                check_network(model, *manifest.input.size, len(manifest.labels))
        else:
            from edge_runtime.classifier import Classifier

            with quiet_output():
                Classifier(model)
    except (EdgeError, ValueError, OSError) as exc:
        return f"does not load ({' '.join(str(exc).split())})"
    return None


def _check(args: argparse.Namespace, store: Store) -> int:
    """``edge-model check``: current and previous re-hashed, each named with what is damaged;
    with ``--fallback``, a current version that cannot run gives way to the previous one."""
    if args.model is not None:
        if args.root is not None:
            raise UsageError("give --model or --root, not both: --model names the store")
        found = _model_store(args.model)
        if found is None:
            say(PROG, f"{args.model} does not go through a store's current link "
                      f"(ROOT/{CURRENT}/NAME): nothing to check")
            return EXIT_OK
        store = found
    current, previous = store.current, store.previous
    if current is None:
        say(PROG, f"no current version in {store.root}: nothing to check")
        return EXIT_OK
    damaged = False
    problems = {}
    for name, version in (("current", current), ("previous", previous)):
        if version is None or (name == "previous" and version == current):
            continue
        found = verify(store, version)
        if name == "current" and not found and args.model is not None:
            load = _load_problem(Path(args.model))
            found = [f"{Path(args.model).name}: {load}"] if load else []
        problems[name] = found
        damaged |= bool(found)
        shown = (f"DAMAGED: {'; '.join(found)}" if found else "intact")
        say(PROG, f"{name} {version}: {shown}")
    if not args.fallback:
        return EXIT_CHECK_FAILED if damaged else EXIT_OK
    if not problems["current"]:
        return EXIT_OK
    problem = f"is damaged ({problems['current'][0]})"
    try:
        now = fall_back(store, problem)
    except DamagedVersion as exc:
        say(PROG, f"NO VERSION TO RUN: {exc}; activate a bundle again (edge-deploy or "
                  "edge-model activate) to repair it")
        return EXIT_CHECK_FAILED
    say(PROG, f"FALLBACK: current version {current} {problem}: the previous version {now} is "
              "current now and runs instead; activate the damaged version's bundle again to "
              "repair it")
    return EXIT_OK


def _stage(args: argparse.Namespace, store: Store) -> int:
    """``edge-model stage``: a bundle checked and staged, or (``--clear``) the stage dropped."""
    if args.clear:
        if args.bundle is not None:
            raise UsageError("give a bundle to stage or --clear, not both")
        was = store.staged
        with store.locked():
            store.set_staged(None)
        say(PROG, f"{was} is no longer staged" if was else "nothing was staged")
        return EXIT_OK
    if args.bundle is None:
        raise UsageError("give the bundle to stage (or --clear)")
    done = activate(store, args.bundle, args.threads,
                    progress=lambda text: say(PROG, f"checking {text}"), keep=None,
                    min_free_mb=args.min_free_mb, stage=True)
    if args.json:
        print(json.dumps(done.to_json()), flush=True)
    for check in done.checks:
        say(PROG, f"{check.name}: {'ok' if check.ok else 'FAILED'}: {check.detail}")
    failed = done.failed()
    if failed is not None:
        say(PROG, f"refused {args.bundle} (version {done.version}): the {failed.name} check "
                  f"failed; staged stays {store.staged or 'none'}")
        return EXIT_CHECK_FAILED
    if done.result != "staged":
        say(PROG, f"{done.version} is already current in {store.root}: nothing to stage")
        return EXIT_OK
    say(PROG, f"{done.version} is staged in {store.root}: a service running on the store "
              f"compares it with current {store.current or 'none'} on live frames; edge-model "
              "promote activates it once it agrees enough")
    return EXIT_OK


def _promote(args: argparse.Namespace, store: Store) -> int:
    """``edge-model promote``: the staged version activated if its shadow run allows it."""
    done = promote(store, args.min_agreement, args.min_frames, args.staged, args.threads,
                   progress=lambda text: say(PROG, f"checking {text}"), keep=args.keep,
                   health_timeout_s=args.health_timeout)
    if args.json:
        print(json.dumps(done.to_json()), flush=True)
    if done.activation is None:
        say(PROG, f"not promoted: {done.reason}")
        return EXIT_CHECK_FAILED
    for check in done.activation.checks:
        say(PROG, f"{check.name}: {'ok' if check.ok else 'FAILED'}: {check.detail}")
    failed = done.activation.failed()
    if failed is not None:
        say(PROG, f"staged {done.evidence.staged} not promoted: the {failed.name} check failed "
                  f"({failed.detail}); current stays {store.current or 'none'}")
        return EXIT_CHECK_FAILED
    say(PROG, f"promoted {done.evidence.staged} (agreement {done.evidence.agreement:.3f} on "
              f"{done.evidence.frames} live frames): current in {store.root}"
              + (f" (previous: {store.previous})" if store.previous else ""))
    _say_removed(done.activation.removed)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-model``; returns the exit code (see the module doc)."""
    return run_main(build_parser(), argv, run, progress_to="stderr")


if __name__ == "__main__":
    sys.exit(main())
