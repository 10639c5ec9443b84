"""Models on a device as versions (A/B with rollback, as Mender and balena update devices).

::

    ROOT/                       (default ~/edge-models, or $EDGE_MODEL_ROOT)
      versions/<version>/       a bundle, checked before it ever became current
      current -> versions/<v>   what the service runs (--model ROOT/current/model_int8.tflite)
      previous -> versions/<v>  what `edge-model rollback` goes back to
      incoming/<version>/       where edge-deploy copies a bundle before activating it

A Pi's card is not a workstation's disk: after each activation only the :data:`KEEP` most
recently activated versions stay (``current`` and ``previous`` always among them), with their
``incoming/`` copies; what an interrupted activation left half-copied goes too (:func:`prune`).

A version is named by its manifest's sha256 (12 hex digits), so the same bundle is the same
version on every device and activating it twice changes nothing. :func:`activate` copies the
bundle beside the running one under a temporary name, checks the copy (every file's sha256
against the manifest, then the bundle's evaluation set through every variant here: the
workstation's answers, at :func:`edge_runtime.eval_set.required_agreement`), renames it into
``versions/`` and only then switches ``current`` in one atomic rename. A running edge-classify
whose ``--model`` goes through ``current`` loads the new model between two frames
(:mod:`edge_runtime.reload`). A bundle that fails a check never becomes current.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from common.errors import UsageError
from common.fileio import create_temp, fsync, sha256
from common.quiet import quiet_output
from edge_runtime.classifier import Classifier
from edge_runtime.errors import EdgeError
from edge_runtime.eval_set import EvalSet, required_agreement
from edge_runtime.manifest import MANIFEST_FILE, Manifest

ROOT_VARIABLE = "EDGE_MODEL_ROOT"
DEFAULT_ROOT = "~/edge-models"
VERSIONS, INCOMING, CURRENT, PREVIOUS = "versions", "incoming", "current", "previous"
SKIPPED = {"bench"}
"""What a bundle may hold that is not the model (edge-bench's report): not copied."""
KEEP = 3
"""Versions kept on a device after an activation: current, previous and the newest other."""


def default_root() -> Path:
    """``$EDGE_MODEL_ROOT``, else ``~/edge-models``."""
    return Path(os.path.expanduser(os.environ.get(ROOT_VARIABLE) or DEFAULT_ROOT))


@dataclass(frozen=True)
class Check:
    """One check of a bundle and what it found."""

    name: str
    """``manifest``, ``sha256``, ``labels`` or ``answers``."""
    ok: bool
    detail: str


@dataclass
class Activation:
    """What :func:`activate` did."""

    version: str | None
    result: str
    """``activated``, ``already current`` or ``refused``."""
    checks: list[Check] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    """Older versions removed after the activation (:func:`prune`)."""

    @property
    def ok(self) -> bool:
        return self.result != "refused"

    def failed(self) -> Check | None:
        """The check that refused the bundle, if one did."""
        return next((c for c in self.checks if not c.ok), None)

    def to_json(self) -> dict:
        return {"version": self.version, "result": self.result,
                "checks": [asdict(c) for c in self.checks], "removed": self.removed}


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
        except FileNotFoundError:
            return None

    @property
    def current(self) -> str | None:
        return self._link(CURRENT)

    @property
    def previous(self) -> str | None:
        return self._link(PREVIOUS)

    def versions(self) -> list[str]:
        """Every version here, oldest activation first."""
        folder = self.root / VERSIONS
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
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

    def _switch(self, name: str, version: str) -> None:
        """Point link ``name`` at ``versions/<version>``: a new link renamed over the old one."""
        temporary = self.root / f".{name}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        os.symlink(f"{VERSIONS}/{version}", temporary)
        os.replace(temporary, self.root / name)

    def make_current(self, version: str) -> None:
        """``current`` → ``version``, the version it left becoming ``previous``."""
        was = self.current
        if was is not None and was != version:
            self._switch(PREVIOUS, was)
        self._switch(CURRENT, version)
        fsync(self.root)

    def rollback(self) -> tuple[str, str]:
        """Swap ``current`` and ``previous``; returns (from, to).

        Raises:
            UsageError: there is no previous version (or it is gone).
        """
        with self.locked():
            current, previous = self.current, self.previous
            if previous is None or not (self.root / VERSIONS / previous).is_dir():
                raise UsageError(f"{self.root}: no previous version to roll back to")
            self._switch(CURRENT, previous)
            if current is not None:
                self._switch(PREVIOUS, current)
            fsync(self.root)
            return current or "-", previous


def check_bundle(folder: Path, threads: int | None = None,
                 progress: Callable[[str], None] = lambda _: None) -> list[Check]:
    """The checks a bundle must pass to become current, in order; the first failure ends them.

    1. ``manifest``: manifest.json reads and names an evaluation set;
    2. ``sha256``: every variant file is there and its sha256 is the manifest's;
    3. ``labels``: labels.txt, when there is one, holds the manifest's labels;
    4. ``answers``: every variant, run here on the bundle's evaluation set, gives the answers
       it gave on the workstation at export, on at least :func:`required_agreement` of them.
    """
    checks: list[Check] = []

    def fail(name: str, detail: str) -> list[Check]:
        checks.append(Check(name, False, " ".join(detail.split())))
        return checks

    try:
        manifest = Manifest.load(folder)
    except EdgeError as exc:
        return fail("manifest", str(exc))
    if manifest.eval_set is None:
        return fail("manifest", "the bundle has no evaluation set to check its answers with: "
                                "re-export it with a current edge-export")
    checks.append(Check("manifest", True, f"{len(manifest.variants)} variants"))
    try:
        manifest.check_files(folder)
    except EdgeError as exc:
        return fail("sha256", str(exc))
    checks.append(Check("sha256", True, f"{len(manifest.variants)} files"))
    labels = folder / "labels.txt"
    if labels.is_file():
        if labels.read_text(encoding="utf-8", errors="replace").split() != list(manifest.labels):
            return fail("labels", f"{labels} does not hold the manifest's labels")
        checks.append(Check("labels", True, f"{len(manifest.labels)} classes"))
    try:
        eval_set = EvalSet.load(folder / manifest.eval_set.file)
    except EdgeError as exc:
        return fail("answers", str(exc))
    shown = []
    for name, variant in manifest.variants.items():
        answers = eval_set.variant_top1.get(name)
        if answers is None:
            return fail("answers", f"{manifest.eval_set.file} holds no workstation answers of "
                                   f"{name}: re-export the bundle with a current edge-export")
        progress(f"{name}: {len(eval_set)} evaluation images")
        try:
            with quiet_output():  # the interpreter's "Created XNNPACK delegate" line
                classifier = Classifier(folder / variant.file,
                                        labels if labels.is_file() else None, threads)
            top1 = np.argmax(classifier.probabilities(eval_set.pixels), axis=1)
        except (EdgeError, ValueError) as exc:
            return fail("answers", f"{name}: cannot run it here: {exc}")
        same = int(np.sum(top1 == answers))
        needed = required_agreement(name)
        shown.append(f"{name} {same}/{len(answers)}")
        if same < needed * len(answers):
            return fail("answers", f"{name} gives the workstation's answer on {same} of "
                                   f"{len(answers)} evaluation images here; at least "
                                   f"{needed:.0%} are required")
    checks.append(Check("answers", True, ", ".join(shown)))
    return checks


def _copy_bundle(bundle: Path, into: Path) -> None:
    """Copy the bundle's files (not edge-bench's report) into the empty folder ``into``."""
    for item in bundle.iterdir():
        if item.name in SKIPPED or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, into / item.name)
        else:
            shutil.copy2(item, into / item.name)


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
        # hidden folders are what an activation or a removal left when interrupted: no other
        # activation runs while the lock is held
        for leftover in folder.glob(".*") if folder.is_dir() else []:
            shutil.rmtree(leftover, ignore_errors=True)
    versions = store.versions()
    kept = {store.current, store.previous}
    for version in reversed(versions):
        if len(kept - {None}) >= keep:
            break
        kept.add(version)
    removed = [v for v in versions if v not in kept]
    for version in removed:
        _remove(store.root / VERSIONS / version)
        _remove(store.root / INCOMING / version)
    if removed:
        fsync(store.root / VERSIONS)
    return removed


def prune(store: Store, keep: int = KEEP) -> list[str]:
    """Remove every version but the ``keep`` most recently activated (``current`` and
    ``previous`` always kept), with their ``incoming/`` copies, and what an interrupted
    activation left; returns the versions removed, oldest first.

    Raises:
        UsageError: ``keep`` is under 2.
    """
    with store.locked():
        return _prune(store, keep)


def activate(store: Store, bundle: Path, threads: int | None = None,
             progress: Callable[[str], None] = lambda _: None,
             keep: int | None = KEEP) -> Activation:
    """Check ``bundle`` as a copy beside the running version and make it current.

    The copy is made under a temporary name in ``versions/`` and checked there (the bytes that
    will run are the bytes checked), renamed to its version, and ``current`` switched; then
    versions beyond ``keep`` are removed (:func:`prune`; None keeps them all). On a failed
    check nothing changes but ``incoming/<version>`` (when the bundle is there) being removed,
    so the next deploy copies it whole.

    Raises:
        UsageError: ``bundle`` is not a folder with a manifest.json, or ``keep`` is under 2.
    """
    if keep is not None:
        _check_keep(keep)
    bundle = Path(bundle)
    if not (bundle / MANIFEST_FILE).is_file():
        raise UsageError(f"{bundle}: not a bundle (no {MANIFEST_FILE}): give the export/ "
                         "folder edge-export wrote")
    version = version_of(bundle)
    with store.locked():
        if store.current == version:
            return Activation(version, "already current")
        target = store.root / VERSIONS / version
        if target.is_dir():  # an older version again: it passed once; check it again all the same
            checks = check_bundle(target, threads, progress)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            aside = create_temp(target.parent, f".{version}.", directory=True)
            try:
                _copy_bundle(bundle, aside)
                checks = check_bundle(aside, threads, progress)
                if all(c.ok for c in checks):
                    os.replace(aside, target)
            finally:
                shutil.rmtree(aside, ignore_errors=True)
        if not all(c.ok for c in checks):
            incoming = store.root / INCOMING
            if bundle.resolve().parent == incoming.resolve():
                shutil.rmtree(bundle, ignore_errors=True)
            return Activation(version, "refused", checks)
        os.utime(target)  # versions are listed in order of activation
        store.make_current(version)
        removed = _prune(store, keep) if keep is not None else []
        return Activation(version, "activated", checks, removed)


def describe(store: Store, version: str) -> dict:
    """A version's row for ``edge-model list``: the model, when it was exported and activated."""
    folder = store.root / VERSIONS / version
    row = {"version": version, "current": store.current == version,
           "previous": store.previous == version,
           "activated": time.strftime("%Y-%m-%d %H:%M", time.localtime(folder.stat().st_mtime))}
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
