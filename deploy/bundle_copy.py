"""What of a bundle a device copies, and copying it so that a power cut cannot undo it.

A device copies exactly what the manifest binds (:func:`bundle_files`): the files its
``files`` lists, manifest.json itself and, when there is one, its signature. Anything else in
the folder refuses the bundle with one line naming it — a symbolic link (to a file or a folder:
it could lead anywhere, ``/dev/zero`` or a home folder), a device file, a FIFO or a socket, a
file the manifest does not list — and so does a listed file that is missing. Two things are let
be and never copied: edge-bench's report (``bench/``) and the network the AI Camera's tools make
on the device from the checked zip (``imx500/network.rpk``).

Every copied file is flushed to the card (fsync) and then every folder it went into
(:func:`copy_files`), before the caller renames the copy into place.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from common.fileio import fsync, is_temp_of
from deploy.checks import Refused
from deploy.signature import SIGNATURE_FILE
from edge_runtime.manifest import MANIFEST_FILE, Manifest

SKIPPED_FOLDERS = frozenset({"bench"})
"""Folders at a bundle's top that are not the model (edge-bench's report): never copied."""
SENSOR_PACKAGE = "imx500/network.rpk"
"""Made on the device from the checked ``imx500/packerOut.zip`` (``imx500-package``) and cached
beside it: never copied, and made anew from the checked zip in each version."""
MB = 1e6


def device_made(name: str) -> bool:
    """Whether ``name`` (bundle-relative) is what a device makes itself: :data:`SENSOR_PACKAGE`,
    or the temporary file it is written under."""
    folder, _, base = name.rpartition("/")
    package_folder, _, package = SENSOR_PACKAGE.rpartition("/")
    return folder == package_folder and (base == package or is_temp_of(base, package))


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return kind
    return "not a regular file"


def entries(folder: Path, skip: frozenset[str] = frozenset()) -> Iterator[tuple[str, int]]:
    """Every entry under ``folder`` that is not a folder, as (path relative to it, its mode as
    ``lstat`` gives it), in name order; links are never followed (a link to a folder is an
    entry), and the top-level folders named in ``skip`` are not entered."""
    def walk(where: Path, prefix: str) -> Iterator[tuple[str, int]]:
        with os.scandir(where) as scan:
            found = sorted(scan, key=lambda e: e.name)
        for entry in found:
            name = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if not (prefix == "" and entry.name in skip):
                    yield from walk(Path(entry.path), name + "/")
            else:
                yield name, entry.stat(follow_symlinks=False).st_mode

    yield from walk(folder, "")


def bundle_files(bundle: Path, manifest: Manifest) -> dict[str, int]:
    """Every file a device copies of ``bundle`` → its size: the manifest's ``files``,
    manifest.json, and :data:`SIGNATURE_FILE` when it is there. Nothing is followed or opened.

    Raises:
        Refused: a link, a device file, a FIFO or socket, a file the manifest does not list
            (each named, bundle-relative), or a listed file that is missing.
    """
    listed = {*(manifest.files or {}), MANIFEST_FILE}
    found: dict[str, int] = {}
    for name, mode in entries(bundle, SKIPPED_FOLDERS):
        if stat.S_ISLNK(mode):
            raise Refused(f"{name} is a symbolic link: a bundle holds files only (a link could "
                          "lead anywhere); put the file itself there")
        if not stat.S_ISREG(mode):
            raise Refused(f"{name} is {_kind(mode)}, not a file: a bundle holds files only")
        if name in listed or name == SIGNATURE_FILE:
            found[name] = (bundle / name).lstat().st_size
        elif not device_made(name):
            raise Refused(f"{name} is not among the manifest's files, so nothing binds it to "
                          "the version: remove it from the bundle (or re-export)")
    missing = sorted(listed - set(found))
    if missing:
        raise Refused(f"{missing[0]} is in the manifest but not in the bundle")
    return found


def check_room(folder: Path, need: int, reserve: int) -> str:
    """Room in ``folder``'s file system for ``need`` bytes with ``reserve`` bytes left free.

    Raises:
        Refused: not enough, saying how much there is and how much is needed.
    """
    info = os.statvfs(folder)
    free = info.f_bavail * info.f_frsize
    if free < need + reserve:
        raise Refused(f"{folder} has {free / MB:.1f} MB free; the copy needs {need / MB:.1f} MB "
                      f"and {reserve / MB:.0f} MB must stay free (--min-free-mb): free some "
                      "space (edge-model prune --keep 2) and deploy again")
    return f"{need / MB:.1f} MB, {free / MB:.0f} MB free"


def open_file(path: Path) -> int:
    """A read-only descriptor of the regular file ``path``, never through a link at its end and
    never blocking on a FIFO put there since it was looked at.

    Raises:
        Refused: ``path`` is a link or not a regular file now.
        OSError: it cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a link
            raise Refused(f"{path} is a symbolic link: a bundle holds files only") from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Refused(f"{path} is {_kind(mode)}, not a file: a bundle holds files only")
    return fd


def copy_file(source: Path, target: Path) -> None:
    """Copy ``source`` (see :func:`open_file`) to the new file ``target``, flushed to the card.

    Raises:
        Refused: see :func:`open_file`.
        OSError: reading or writing failed (a full card: ENOSPC).
    """
    with os.fdopen(open_file(source), "rb") as src, open(target, "xb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def copy_files(bundle: Path, into: Path, names: Iterable[str], manifest_bytes: bytes) -> None:
    """Copy the bundle-relative ``names`` from ``bundle`` into the empty folder ``into``:
    manifest.json as ``manifest_bytes`` (the bytes the version was named after), the rest
    byte for byte. Each file is flushed as it is written, then each folder, deepest first,
    ``into`` last.

    Raises:
        Refused: a file became a link or something else than a file since it was looked at.
        OSError: reading or writing failed (a full card: ENOSPC).
    """
    folders = {into}
    for name in sorted(names):
        target = into / name
        if target.parent not in folders:
            target.parent.mkdir(parents=True, exist_ok=True)
            folders.add(target.parent)
        if name == MANIFEST_FILE:
            with open(target, "xb") as dst:
                dst.write(manifest_bytes)
                dst.flush()
                os.fsync(dst.fileno())
        else:
            copy_file(bundle / name, target)
    for folder in sorted(folders, key=lambda p: -len(p.parts)):
        fsync(folder)
