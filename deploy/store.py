"""Models on a device as versions (A/B with rollback, as Mender and balena update devices).

::

    ROOT/                       (default ~/edge-models, or $EDGE_MODEL_ROOT)
      versions/<version>/       a bundle, checked before it ever became current
      current -> versions/<v>   what the service runs (--model ROOT/current/model_int8.tflite)
      previous -> versions/<v>  what `edge-model rollback` goes back to
      staged -> versions/<v>    a checked version the service runs as its shadow (`edge-model stage`)
      incoming/<version>/       where edge-deploy copies a bundle before activating it
      status.json               the running service's report (edge_runtime.service_status)
      allowed_signers           optional: the keys every bundle must then be signed by

A version is named by its manifest's sha256 (12 hex digits), and the manifest holds the sha256
of every other file of the bundle, so a version binds every byte it carries. :func:`activate`
runs the checks of :mod:`deploy.checks` in order (:data:`STEPS`), the first refusal ending
them: once ``allowed_signers`` is there, the manifest's signature (:mod:`deploy.signature`),
before anything else of the bundle is read; the manifest; the copy (only what the manifest binds: :mod:`deploy.bundle_copy`, with room
left on the card); every file's sha256; the labels; the AI Camera's network; the CPU variants'
answers on the evaluation set. Then it switches ``current`` and, when a service runs on the
store, waits for it to *commit* the new version (classify a frame with it, reported in
``status.json``), switching back when it does not. A bundle that fails a check never becomes
current. ``stage=True`` runs the same checks and stops before the switch: the version lands in
``versions/`` and ``staged`` names it, for the service to run beside ``current`` as its shadow
(``edge-model promote`` activates it later, :mod:`deploy.promote`).

The order of writes is the crash-safety protocol (docs/ARCHITECTURE.md): each copied file is
flushed (fsync), then the folders it went into, the copy's folder last; the copy is renamed
into ``versions/`` and ``versions/`` flushed; only then are the links switched (a new link
renamed over the old one) and the root flushed. A power cut or SIGKILL at any moment leaves
``current`` on a complete version, the old one or the new one; what the interrupted
activation left (hidden names) goes at the next one (:func:`prune`).

A version already installed is not trusted for being there: activating its bundle again
re-hashes the installed copy and replaces each damaged file from the bundle (:func:`activate`),
``edge-model check`` re-hashes ``current`` and ``previous`` (:func:`verify`), and
:func:`rollback` checks its target first.

A Pi's card is not a workstation's disk: after each activation only the :data:`KEEP` most
recently activated versions stay (``current`` and ``previous`` always among them), with their
``incoming/`` copies; copies in ``incoming/`` of no version, untouched for
:data:`STALE_INCOMING_S`, go too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common.errors import UsageError
from common.fileio import create_temp, fsync, sha256, write_bytes
from deploy.bundle_copy import (
    bundle_files,
    check_room,
    copy_file,
    copy_files,
    device_made,
    entries,
)
from deploy.checks import (
    Refused,
    check_answers,
    check_hashes,
    check_labels,
    check_manifest,
    check_sensor,
)
from deploy.signature import ALLOWED_SIGNERS, SIGNATURE_FILE, SignatureError
from deploy.signature import verify as verify_signature
from edge_runtime.errors import EdgeError
from edge_runtime.manifest import MANIFEST_FILE, Manifest
from edge_runtime.sensor_network import PACKED
from edge_runtime.service_status import CURRENT, STAGED, STATUS_FILE, VERSIONS, read_status
from edge_runtime.stream.upload_watch import DEFAULT_UPLOAD_WAIT_S

ROOT_VARIABLE = "EDGE_MODEL_ROOT"
DEFAULT_ROOT = "~/edge-models"
INCOMING, PREVIOUS = "incoming", "previous"
KEEP = 3
"""Versions kept on a device after an activation: current, previous and the newest other."""
MIN_FREE_MB = 100.0
"""What an activation leaves free on the card, at least, beside the copy (``--min-free-mb``):
the journal, the status file and the system need room too."""
HEALTH_TIMEOUT_S = 120.0
"""How long :func:`activate` waits for a running service to commit the new version
(``--health-timeout``) when the service classifies on the CPU: a model reloads within seconds.
A service on the AI Camera uploads the network to the sensor first (minutes, the first time):
it gets the upload's own limit, ``--upload-wait``'s default, on top."""
POLL_S = 0.25
STALE_INCOMING_S = 24 * 3600.0
"""A copy in ``incoming/`` of no installed version, untouched this long, is an abandoned
deploy's: :func:`prune` removes it (a younger one may be an edge-deploy copying now)."""
OK_RESULTS = ("activated", "already current", "repaired", "staged")


def default_root() -> Path:
    """``$EDGE_MODEL_ROOT``, else ``~/edge-models``."""
    return Path(os.path.expanduser(os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT))


@dataclass(frozen=True)
class Check:
    """One check of a bundle and what it found."""

    name: str
    """``signature``, ``manifest``, ``copy``, ``sha256``, ``labels``, ``imx500``, ``answers`` or
    ``commit``."""
    ok: bool
    detail: str


@dataclass
class Activation:
    """What :func:`activate` did."""

    version: str | None
    result: str
    """``activated``; ``already current`` (installed, current and intact); ``repaired`` (the
    current version's damaged files replaced from the bundle); ``refused`` (a check failed:
    nothing changed); ``rolled back`` (switched, but the running service did not commit it:
    switched back)."""
    checks: list[Check] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Older versions removed after the activation (:func:`prune`)."""

    @property
    def ok(self) -> bool:
        return self.result in OK_RESULTS

    def failed(self) -> Check | None:
        """The check that refused the bundle, if one did."""
        return next((c for c in self.checks if not c.ok), None)

    def to_json(self) -> dict:
        return {"version": self.version, "result": self.result,
                "checks": [asdict(c) for c in self.checks], "removed": self.removed}


class DamagedVersion(EdgeError):
    """An installed version's files are not the ones it was checked with."""


def version_of(bundle: Path) -> str:
    """The version a bundle becomes: its manifest's sha256, 12 hex digits."""
    return sha256(bundle / MANIFEST_FILE)[:12]


class Store:
    """The versions under ``root`` (created on first use)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _link(self, name: str) -> str | None:
        """The version a link names, None when there is none."""
        try:
            return Path(os.readlink(self.root / name)).name
        except (FileNotFoundError, OSError):
            return None

    @property
    def current(self) -> str | None:
        return self._link(CURRENT)

    @property
    def previous(self) -> str | None:
        return self._link(PREVIOUS)

    @property
    def staged(self) -> str | None:
        """The version staged as the service's shadow, None when none is."""
        return self._link(STAGED)

    def set_staged(self, version: str | None) -> None:
        """``staged`` → ``version`` (None: removed) in one rename, the root flushed."""
        self._switch(STAGED, version)
        fsync(self.root)

    def folder(self, version: str) -> Path:
        return self.root / VERSIONS / version

    @property
    def allowed_signers(self) -> Path | None:
        """``ROOT/allowed_signers`` when it is there (a broken link too: refused, not ignored):
        then every bundle must be signed by a key it lists (:mod:`deploy.signature`)."""
        path = self.root / ALLOWED_SIGNERS
        return path if os.path.lexists(path) else None

    def versions(self) -> list[str]:
        """Every version here, oldest activation first."""
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir()
                 if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    def incoming(self, version: str) -> Path:
        """The folder a bundle of ``version`` is copied into before :func:`activate` (made)."""
        if not version or "/" in version or version.startswith("."):
            raise UsageError(f"{version!r} is not a version name")
        path = self.root / INCOMING / version
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One change of links at a time (two deploys to one device queue)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _made(self) -> Path:
        """``versions/``, made (and its making flushed) on first use."""
        folder = self.root / VERSIONS
        if not folder.is_dir():
            folder.mkdir(parents=True)
            fsync(self.root)
        return folder

    def _switch(self, name: str, version: str | None) -> None:
        """Point link ``name`` at ``versions/<version>`` (None: remove it): a new link renamed
        over the old one. The caller flushes the root."""
        if version is None:
            (self.root / name).unlink(missing_ok=True)
            return
        temporary = self.root / f".{name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        os.symlink(f"{VERSIONS}/{version}", temporary)
        os.replace(temporary, self.root / name)

    def set_links(self, current: str | None, previous: str | None) -> None:
        """``current`` and ``previous`` set as given (previous first), the root flushed."""
        self._switch(PREVIOUS, previous)
        self._switch(CURRENT, current)
        fsync(self.root)

    def make_current(self, version: str) -> None:
        """``current`` → ``version``, the version it left becoming ``previous``."""
        was = self.current
        self.set_links(version, was if was is not None and was != version else self.previous)


# ----------------------------------------------------------------------- an installed version

def damage(folder: Path, version: str, manifest: Manifest | None = None) -> list[tuple[str, str]]:
    """What of the installed ``folder`` is not the version it was checked as, as (file name,
    what is wrong); empty when it is intact. Hashes only: seconds, no interpreter.

    ``manifest``: the version's (from its bundle); None reads the installed one, and a
    manifest.json that is not the version's then is the only damage named (its list of files
    cannot be trusted). Files the manifest does not bind are damage too ("not among the
    manifest's files"), but for the AI Camera's package the device makes itself.
    """
    found: list[tuple[str, str]] = []
    if not folder.is_dir() or folder.is_symlink():
        return [(".", "the version's folder is missing")]
    path = folder / MANIFEST_FILE
    made = sha256(path)[:12] if path.is_file() and not path.is_symlink() else None
    if made != version:
        found.append((MANIFEST_FILE, "missing" if made is None else
                      f"sha256 {made}…, not the version's {version}…"))
        if manifest is None:
            return found
    if manifest is None:
        try:
            manifest = Manifest.load(folder)
        except EdgeError as exc:
            return [(MANIFEST_FILE, str(exc))]
    try:
        found += manifest.damaged_files(folder)
    except EdgeError as exc:
        return [(MANIFEST_FILE, str(exc))]
    bound = {*(manifest.files or {}), *(v.file for v in manifest.variants.values()),
             MANIFEST_FILE, SIGNATURE_FILE}
    for name, _mode in entries(folder):
        if name not in bound and not device_made(name):
            found.append((name, "not among the manifest's files"))
    return found


def verify(store: Store, version: str) -> list[str]:
    """:func:`damage` of an installed version, as lines ``FILE: what is wrong``; once
    ``allowed_signers`` is there, a version whose signature it does not accept is damaged too
    (an unsigned one kept from before the keys were configured included)."""
    found = [f"{name}: {problem}" for name, problem in damage(store.folder(version), version)]
    if not found and store.allowed_signers is not None:
        try:
            verify_signature(store.folder(version), store.allowed_signers)
        except SignatureError as exc:
            found.append(f"{SIGNATURE_FILE}: {exc}")
    return found


def _repair(store: Store, version: str, bundle: Path, manifest: Manifest,
            manifest_bytes: bytes) -> tuple[str, list[str]]:
    """Replace each damaged file of the installed ``version`` from ``bundle``: copied under a
    hidden name in ``versions/``, flushed, its sha256 checked, renamed over the damaged one,
    the folder flushed. A file the manifest does not bind is removed. Returns (the detail of
    the ``copy`` check, the files repaired).

    Raises:
        Refused: the bundle's own copy of a damaged file is damaged too.
        OSError: reading or writing failed.
    """
    folder = store.folder(version)
    found = damage(folder, version, manifest)
    if not found:
        return "the installed copy is intact", []
    bound = {**(manifest.files or {}), MANIFEST_FILE: None}
    repaired = []
    for name, _problem in found:
        target = folder / name
        if name not in bound:
            target.unlink(missing_ok=True)
            fsync(target.parent)
            repaired.append(name)
            continue
        target.parent.mkdir(exist_ok=True)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        aside = store.root / VERSIONS / f".{version}.repair.{secrets.token_hex(4)}"
        try:
            if name == MANIFEST_FILE:
                aside.write_bytes(manifest_bytes)
                fsync(aside)
            else:
                copy_file(bundle / name, aside)
                if sha256(aside) != bound[name]:
                    raise Refused(f"{name} is damaged in the installed copy and in {bundle} "
                                  "too: copy or export the bundle again")
            os.replace(aside, target)
        finally:
            aside.unlink(missing_ok=True)
        fsync(target.parent)
        repaired.append(name)
    fsync(folder)
    return f"repaired from the bundle: {', '.join(repaired)}", repaired


# ----------------------------------------------------------------------------- activation

STEPS = ("signature", "manifest", "copy", "sha256", "labels", "imx500", "answers")
"""The checks :func:`activate` runs, in order (``signature`` only once ``allowed_signers`` is
there, ``imx500`` only for a bundle that has the AI Camera's network); ``commit`` follows the
switch."""


def activate(store: Store, bundle: Path, threads: int | None = None,
             progress: Callable[[str], None] = lambda _: None,
             keep: int | None = KEEP, min_free_mb: float = MIN_FREE_MB,
             health_timeout_s: float | None = None, stage: bool = False) -> Activation:
    """Check ``bundle`` as a copy beside the running version, make it current, and keep it there
    only if the running service (if any) commits it.

    A new version is copied under a hidden name in ``versions/`` and checked there (the bytes
    that will run are the bytes checked), renamed to its version, and ``current`` switched. An
    installed version is re-hashed and its damaged files replaced from the bundle first; one
    that is current and intact is ``already current`` (its answers not run again). After the
    switch, when ``status.json`` names a live service, it must report the new version
    classifying a frame within ``health_timeout_s`` (None: :func:`commit_timeout`), else the
    links are switched back. Then
    versions beyond ``keep`` are removed (:func:`prune`; None keeps them all). On a refusal
    nothing changes but ``incoming/<version>`` (when the bundle is there) being removed, so the
    next deploy copies it whole.

    Raises:
        UsageError: ``bundle`` is not a folder with a manifest.json, or ``keep`` is under 2.
    """
    if keep is not None:
        _check_keep(keep)
    bundle = Path(bundle)
    if not (bundle / MANIFEST_FILE).is_file():
        raise UsageError(f"{bundle}: not a bundle (no {MANIFEST_FILE}): give the export/ "
                         "folder edge-export wrote")
    manifest_bytes = (bundle / MANIFEST_FILE).read_bytes()  # read once: the version's bytes
    version = hashlib.sha256(manifest_bytes).hexdigest()[:12]
    checks: list[Check] = []
    with store.locked():
        target = store._made() / version
        installed = target.is_dir() and not target.is_symlink()
        work = target if installed else create_temp(target.parent, f".{version}.",
                                                    directory=True)
        manifest: Manifest | None = None
        repaired: list[str] = []
        trusted = store.allowed_signers
        brought = bundle / SIGNATURE_FILE

        def signature() -> str | None:
            if trusted is None:
                return None
            try:
                return verify_signature(bundle, trusted, data=manifest_bytes)
            except SignatureError as exc:
                raise Refused(str(exc)) from None

        def read_manifest() -> str:
            nonlocal manifest
            try:
                manifest = Manifest.from_json(json.loads(manifest_bytes))
            except (ValueError, EdgeError) as exc:
                raise Refused(f"{bundle / MANIFEST_FILE}: {exc}") from None
            return check_manifest(manifest)

        def copy() -> str:
            nonlocal repaired
            files = bundle_files(bundle, manifest)
            if installed:
                detail, repaired = _repair(store, version, bundle, manifest, manifest_bytes)
                return detail
            room = check_room(target.parent, sum(files.values()), int(min_free_mb * 1e6))
            copy_files(bundle, work, files, manifest_bytes)
            return f"{len(files)} files, {room}"

        def answers() -> str | None:
            if installed and not repaired and store.current == version:
                return None  # current and intact: the bytes that passed, unchanged
            return check_answers(work, manifest, threads, progress)

        steps: list[tuple[str, Callable[[], str | None]]] = [
            ("signature", signature),  # first: nothing else is read from an untrusted bundle
            ("manifest", read_manifest),
            ("copy", copy),
            ("sha256", lambda: check_hashes(work, manifest, version)),
            ("labels", lambda: check_labels(work, manifest)),
            ("imx500", lambda: check_sensor(work, manifest)),
            ("answers", answers),
        ]
        try:
            passed = _run(steps, checks)
            if passed and installed and trusted is not None and brought.is_file():
                # the signature it came with now, checked above, travels with the version
                write_bytes(target / SIGNATURE_FILE, brought.read_bytes())
            if passed and not installed:
                os.replace(work, target)
                fsync(target.parent)
        finally:
            if not installed:
                shutil.rmtree(work, ignore_errors=True)  # gone once renamed
        if not passed:
            if bundle.resolve().parent == (store.root / INCOMING).resolve():
                shutil.rmtree(bundle, ignore_errors=True)
            return Activation(version, "refused", checks)
        if store.current == version:
            return Activation(version, "repaired" if repaired else "already current", checks)
        if stage:  # checked and installed; current stays, the service shadows it
            store.set_staged(version)
            return Activation(version, "staged", checks)
        os.utime(target)  # versions are listed in order of activation
        was = store.current, store.previous
        before = _status_mark(store)
        store.make_current(version)
    commit = _await_commit(store, version, before, health_timeout_s)
    checks.append(commit)
    with store.locked():
        if not commit.ok:
            if store.current == version:  # nobody switched it since
                store.set_links(*was)
            return Activation(version, "rolled back", checks)
        if store.staged == version:  # no longer a candidate: it runs
            store.set_staged(None)
        removed = _prune(store, keep) if keep is not None else []
    return Activation(version, "activated", checks, removed)


def _run(steps: list[tuple[str, Callable[[], str | None]]], checks: list[Check]) -> bool:
    """Run ``steps`` in order into ``checks`` (a step returning None did not apply); False at
    the first refusal. A card that fails a read or write refuses the step, naming why."""
    for name, step in steps:
        try:
            detail = step()
        except Refused as exc:
            checks.append(Check(name, False, " ".join(str(exc).split())))
            return False
        except OSError as exc:
            where = f"{exc.filename}: " if exc.filename else ""
            checks.append(Check(name, False, f"{where}{exc.strerror or exc}"))
            return False
        if detail is not None:
            checks.append(Check(name, True, detail))
    return True


def _status_mark(store: Store) -> tuple[int, int] | None:
    """Which status file is there now (inode and time): a new one replaces it, so a report
    written after the switch is told from one written before."""
    try:
        info = (store.root / STATUS_FILE).stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def commit_timeout(service_model: str | os.PathLike) -> float:
    """How long a service running ``service_model`` has to commit a new version:
    :data:`HEALTH_TIMEOUT_S`, plus ``--upload-wait``'s default when it runs on the AI Camera (its
    network, ``imx500/packerOut.zip``, is uploaded to the sensor before the first frame)."""
    on_sensor = Path(service_model).name == PACKED
    return HEALTH_TIMEOUT_S + (DEFAULT_UPLOAD_WAIT_S if on_sensor else 0.0)


def _await_commit(store: Store, version: str, before: tuple[int, int] | None,
                  timeout_s: float | None) -> Check:
    """Wait until a service running on the store reports ``version`` classifying frames.

    "A service runs on the store" = ``status.json`` names a live process. None: nothing to wait
    for. It has ``timeout_s`` to write a new status naming ``version`` (a restart of the
    service, with another process id, counts).
    """
    status = read_status(store.root)
    if status is None or not status.alive:
        return Check("commit", True, "no service runs on this store: nothing to wait for")
    if timeout_s is None:
        timeout_s = commit_timeout(status.model)
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        time.sleep(POLL_S)
        now = read_status(store.root)
        if (now is not None and now.version == version and now.alive
                and _status_mark(store) != before):
            return Check("commit", True, f"the service (pid {now.pid}) classifies with it "
                                         f"after {time.monotonic() - started:.1f} s")
    return Check("commit", False, f"the service (pid {status.pid}) did not report {version} "
                                  f"classifying a frame within {timeout_s:g} s "
                                  "(journalctl -u edge-classify says why)")


# ----------------------------------------------------------------------------- rollback, check

def rollback(store: Store) -> tuple[str, str]:
    """Swap ``current`` and ``previous``, once ``previous`` verifies; returns (from, to).

    Raises:
        UsageError: there is no previous version (or it is gone).
        DamagedVersion: the previous version's files are not those it was checked with.
    """
    with store.locked():
        current, previous = store.current, store.previous
        if previous is None or not store.folder(previous).is_dir():
            raise UsageError(f"{store.root}: no previous version to roll back to")
        problems = verify(store, previous)
        if problems:
            raise DamagedVersion(f"the previous version {previous} is damaged ({problems[0]}"
                                 f"{f' and {len(problems) - 1} more' if len(problems) > 1 else ''}"
                                 f"): not rolled back; activate its bundle again to repair it")
        store.set_links(previous, current)
        return current or "-", previous


def fall_back(store: Store, problem: str) -> str:
    """``current`` cannot run (``problem``): make ``previous`` current if it verifies; returns
    the version now current.

    Raises:
        DamagedVersion: there is no previous version, or it is damaged too.
    """
    with store.locked():
        current, previous = store.current, store.previous
        if previous is None or previous == current:
            raise DamagedVersion(f"current version {current} {problem}, and there is no "
                                 "previous version to fall back to")
        problems = verify(store, previous)
        if problems:
            raise DamagedVersion(f"current version {current} {problem}, and the previous "
                                 f"version {previous} is damaged too ({problems[0]})")
        store.set_links(previous, current)
        return previous


# ----------------------------------------------------------------------------- pruning

def _remove(folder: Path) -> None:
    """Remove a folder: first renamed to a hidden name (never listed as a version), then
    deleted, so an interruption cannot leave half a version looking whole."""
    if not folder.exists():
        return
    hidden = folder.with_name(f".{folder.name}.removing.{os.getpid()}")
    os.replace(folder, hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def _check_keep(keep: int) -> None:
    if keep < 2:
        raise UsageError(f"--keep {keep}: at least 2 versions stay, the current one and the "
                         "previous one (what rollback goes back to)")


def _prune(store: Store, keep: int) -> list[str]:
    """:func:`prune` for a caller that holds the lock."""
    _check_keep(keep)
    for folder in (store.root / VERSIONS, store.root / INCOMING):
        # hidden entries are what an activation, a repair or a removal left when interrupted:
        # no other activation runs while the lock is held
        for leftover in folder.glob(".*") if folder.is_dir() else []:
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
    for name in (CURRENT, PREVIOUS, STAGED):  # a link switch's new link, never renamed
        for leftover in store.root.glob(f".{name}.*"):
            leftover.unlink(missing_ok=True)
    versions = store.versions()
    kept = {store.current, store.previous}
    staged = store.staged  # kept too, beside the keep most recent
    for version in reversed(versions):
        if len(kept - {None}) >= keep:
            break
        kept.add(version)
    removed = [v for v in versions if v not in kept and v != staged]
    for version in removed:
        _remove(store.folder(version))
        _remove(store.root / INCOMING / version)
    incoming = store.root / INCOMING
    stale = time.time() - STALE_INCOMING_S
    for copy in incoming.iterdir() if incoming.is_dir() else []:
        if (copy.name not in versions and not copy.name.startswith(".")
                and copy.lstat().st_mtime < stale):
            _remove(copy)
    if removed:
        fsync(store.root / VERSIONS)
    return removed


def prune(store: Store, keep: int = KEEP) -> list[str]:
    """Remove every version but the ``keep`` most recently activated (``current`` and
    ``previous`` always kept), with their ``incoming/`` copies; what an interrupted activation
    left; and copies in ``incoming/`` of no version untouched for :data:`STALE_INCOMING_S`.
    Returns the versions removed, oldest first.

    Raises:
        UsageError: ``keep`` is under 2.
    """
    with store.locked():
        return _prune(store, keep)


def describe(store: Store, version: str) -> dict:
    """A version's row for ``edge-model list``: the model, when it was exported and activated,
    and whether the service runs it (``running``) and has committed it (``committed``: the
    service reported it classifying frames)."""
    folder = store.folder(version)
    status = read_status(store.root)
    row = {"version": version, "current": store.current == version,
           "previous": store.previous == version, "staged": store.staged == version,
           "activated": time.strftime("%Y-%m-%d %H:%M", time.localtime(folder.stat().st_mtime)),
           "running": bool(status and status.version == version and status.alive),
           "committed": bool(status and status.version == version)}
    try:
        data = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        row["model"] = (data.get("model") or {}).get("name", "?")
        row["created"] = str(data.get("created", "?"))[:16]
        row["variants"] = sorted(data.get("variants", {}))
        # the toolchain that exported it (common.versions.library_versions); older: unknown
        row["toolchain"] = str((data.get("versions") or {}).get("edge-toolchain", "?"))
    except (OSError, ValueError, AttributeError):
        row.update(model="(unreadable manifest)", created="?", variants=[], toolchain="?")
    return row
