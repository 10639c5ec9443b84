"""Building ``run/export/`` as a whole: in a temporary folder beside it, swapped in complete.

An interrupted or failed export leaves the previous bundle exactly as it was, and a new bundle
never keeps a file of an earlier one (a ``model_dynamic.tflite`` or ``quant_report.csv`` that
its manifest does not name). Export deletes only what it can tell it wrote: the bundle's own
file names (:func:`own_names`) and ``edge-bench``'s report in ``bench/``, which describes the
old models. Anything else in ``export/`` (a user's ``notes.txt``), or an ``export`` that is a
file or a link, makes it refuse before it converts anything, leaving all as it was. Every
variant's bytes go through :func:`write_variant`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from common.fileio import create_temp, fsync, is_temp_of, sha256, write_bytes, write_text
from common.labels import labels_text
from common.rundir import BENCH_DIR, BENCH_FILES
from deploy.signature import SIGNATURE_FILE
from edge_runtime.errors import ManifestError
from edge_runtime.eval_set import EVAL_SET_FILE
from edge_runtime.manifest import MANIFEST_FILE, Manifest
from export.errors import ExportError
from export.formats import FORMATS, SELECTIVE, ExportFormat
from export.imx500 import FILES as SENSOR_FILES
from export.imx500 import FOLDER as SENSOR_FOLDER
from export.quant_debug import REPORT_FILE

log = logging.getLogger(__name__)

STAGING_PREFIX = ".export-tmp-"
"""Name prefix of the folder a bundle is built in (beside ``export/``, same file system)."""
RETIRED_PREFIX = ".export-old-"
"""Name prefix the previous bundle takes for the moment of the swap."""
LABELS_FILE = "labels.txt"
BUNDLE_FILES = (LABELS_FILE, MANIFEST_FILE, SIGNATURE_FILE, EVAL_SET_FILE, REPORT_FILE,
                *(f.file for f in (*FORMATS.values(), SELECTIVE) if "/" not in f.file))
"""Every file name edge-export writes into a bundle."""
SUBFOLDERS = {BENCH_DIR: set(BENCH_FILES), SENSOR_FOLDER: set(SENSOR_FILES)}
"""The bundle's folders and the file names in them export and edge-bench write (and the
device: ``imx500/network.rpk``, packaged on first use), which export may delete."""
SHOWN = 5
"""Foreign names an error lists before it says how many more there are."""


def leftovers(parent: Path) -> list[Path]:
    """Staging or retired folders an export killed outright (SIGKILL, power loss) left behind."""
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir()
                  if p.is_dir() and p.name.startswith((STAGING_PREFIX, RETIRED_PREFIX)))


def own_names(folder: Path) -> set[str]:
    """The file names export may delete in a bundle ``folder``: :data:`BUNDLE_FILES` and the
    models and evaluation set its manifest names (a variant of an older toolchain), when the
    manifest reads."""
    names = set(BUNDLE_FILES)
    with contextlib.suppress(ManifestError):
        manifest = Manifest.load(folder / MANIFEST_FILE)
        names.update(v.file for v in manifest.variants.values() if v.file.endswith(".tflite"))
        if manifest.eval_set and manifest.eval_set.file.endswith(".npz"):
            names.add(manifest.eval_set.file)
    return names


def _ours(entry: Path, names: set[str]) -> bool:
    """A regular file (not a link) with one of ``names``, or one's interrupted atomic write."""
    return (entry.is_file() and not entry.is_symlink()
            and any(entry.name == n or is_temp_of(entry.name, n) for n in names))


def foreign_entries(folder: Path) -> list[str]:
    """What in a bundle ``folder`` edge-export and edge-bench did not write, as paths relative to
    it (a foreign folder is named, not its contents), sorted."""
    names = own_names(folder)
    foreign = []
    for entry in sorted(folder.iterdir()):
        if entry.name in SUBFOLDERS and entry.is_dir() and not entry.is_symlink():
            foreign += [f"{entry.name}/{e.name}" for e in sorted(entry.iterdir())
                        if not _ours(e, SUBFOLDERS[entry.name])]
        elif not _ours(entry, names):
            foreign.append(entry.name + ("/" if entry.is_dir() else ""))
    return foreign


def check_replaceable(out: Path) -> None:
    """Refuse to replace ``out`` unless it is absent or a folder holding only what export and
    edge-bench wrote.

    Raises:
        ExportError: ``out`` is a file, a symbolic link, or holds a foreign file, naming it and
            what to do.
    """
    if out.is_symlink():
        raise ExportError(f"{out} is a symbolic link; edge-export writes a folder there: "
                          "remove the link (its target is not touched) and run edge-export again")
    if not out.exists():
        return
    if not out.is_dir():
        raise ExportError(f"{out} is a file, not an export folder; move it away and run "
                          "edge-export again")
    foreign = foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:SHOWN]) + (f" and {len(foreign) - SHOWN} more"
                                              if len(foreign) > SHOWN else "")
        raise ExportError(f"{out} holds {shown}, which edge-export did not write and would "
                          f"delete when it replaces the folder: move them out of {out} and run "
                          "edge-export again")


@contextlib.contextmanager
def staged_bundle(out: Path) -> Iterator[Path]:
    """An empty folder beside ``out`` to build the bundle in, swapped in for ``out`` when the
    block ends normally and deleted when it raises (Ctrl-C included), ``out`` untouched.

    Raises:
        ExportError: see :func:`check_replaceable`, checked at the swap (call it first too, to
            fail before the work).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in leftovers(out.parent):
        log.warning("%s is left from an earlier export (killed, or kept for files of yours); "
                    "look inside, then delete it", path)
    staging = create_temp(out.parent, STAGING_PREFIX, directory=True)
    try:
        yield staging
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # only export has written there
        raise


def _sync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (and itself) to the disk."""
    for path in sorted(folder.rglob("*"), key=lambda p: -len(p.parts)):
        if not path.is_symlink():
            fsync(path)
    fsync(folder)


def swap_in(new: Path, out: Path) -> None:
    """Put folder ``new`` in place of ``out``: the old one is renamed aside, ``new`` renamed in,
    then what export wrote of the old one deleted (:func:`discard`). ``new`` is flushed to the
    disk before the renames and the parent folder after them, so a power cut leaves the old
    bundle or the new one. Renames within one folder are atomic; should the second fail, the
    old bundle is put back.

    Raises:
        ExportError: ``out`` is no longer replaceable (a file was put into it meanwhile).
    """
    check_replaceable(out)
    _sync_tree(new)
    retired = None
    if out.exists():
        retired = out.with_name(f"{RETIRED_PREFIX}{secrets.token_hex(4)}")
        os.rename(out, retired)
    try:
        os.rename(new, out)
    except BaseException:
        if retired is not None:
            os.rename(retired, out)
        raise
    fsync(out.parent)
    if retired is not None:
        try:
            discard(retired)
        except OSError as exc:  # the new bundle is in place; only tidying up failed
            log.warning("could not delete the previous bundle %s (%s); delete it", retired, exc)


def discard(old: Path) -> None:
    """Delete what export and edge-bench wrote in a replaced bundle ``old``, then the folder.

    Anything else (a file put there between the check and the swap) is kept, with the folder,
    and a warning names it: export deletes by name, never a whole tree.
    """
    names = own_names(old)
    for entry in old.iterdir():
        if entry.name in SUBFOLDERS and entry.is_dir() and not entry.is_symlink():
            for report in entry.iterdir():
                if _ours(report, SUBFOLDERS[entry.name]):
                    report.unlink()
            with contextlib.suppress(OSError):
                entry.rmdir()
        elif _ours(entry, names):
            entry.unlink()
    try:
        old.rmdir()
    except OSError:
        log.warning("%s holds %s, which edge-export did not write; it was kept: move them "
                    "back into place and delete %s", old, ", ".join(foreign_entries(old)), old)


def write_variant(folder: Path, fmt: ExportFormat, flatbuffer: bytes, *, run_name: str,
                  version: str, labels: list[str], input_spec: dict, model: str) -> Path:
    """Write one variant into the bundle (atomically) with its TFLite metadata; every variant
    passes here.

    The metadata (:mod:`export.metadata`: name, description naming the ``model`` (e.g.
    "MobileNetV3-Small 1.0/160"), class names, the input contract)
    makes the file a model on its own. Verification, hashes and sizes all read the file
    written here, so they cover the metadata too.
    """
    from export.metadata import add_variant_metadata

    return write_bytes(folder / fmt.file, add_variant_metadata(
        flatbuffer, fmt, run_name=run_name, version=version, labels=labels,
        input_spec=input_spec, model=model))


def file_hashes(folder: Path) -> dict[str, str]:
    """The manifest's ``files``: every file in a bundle being built (``folder``, which holds
    only what export wrote) but manifest.json, by path relative to it, → its sha256, sorted.

    Raises:
        ExportError: something in it that is not a regular file (export writes none).
    """
    hashes = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise ExportError(f"{path} is not a regular file; export writes only files")
        if path.is_file() and name != MANIFEST_FILE:
            hashes[name] = sha256(path)
    return hashes


def write_labels(folder: Path, labels: list[str]) -> Path:
    """The bundle's ``labels.txt``: one class name per line, in output order."""
    return write_text(folder / LABELS_FILE, labels_text(labels))
