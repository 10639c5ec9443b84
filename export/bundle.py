"""Building ``run/export/`` as a whole: in a temporary folder beside it, swapped in complete.

An interrupted or failed export leaves the previous bundle exactly as it was, and a new bundle
never keeps a file of an earlier one (a ``model_dynamic.tflite`` or ``quant_report.csv`` that
its manifest does not name). Every variant's bytes go through :func:`write_variant`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from edge_runtime.fileio import write_bytes, write_text
from edge_runtime.labels import labels_text
from export.formats import ExportFormat

log = logging.getLogger(__name__)

STAGING_PREFIX = ".export-tmp-"
"""Name prefix of the folder a bundle is built in (beside ``export/``, same file system)."""
RETIRED_PREFIX = ".export-old-"
"""Name prefix the previous bundle takes for the moment of the swap."""
LABELS_FILE = "labels.txt"


def leftovers(parent: Path) -> list[Path]:
    """Staging or retired folders an export killed outright (SIGKILL, power loss) left behind."""
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir()
                  if p.is_dir() and p.name.startswith((STAGING_PREFIX, RETIRED_PREFIX)))


@contextlib.contextmanager
def staged_bundle(out: Path) -> Iterator[Path]:
    """An empty folder beside ``out`` to build the bundle in, swapped in for ``out`` when the
    block ends normally and deleted when it raises (Ctrl-C included), ``out`` untouched.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in leftovers(out.parent):
        log.warning("%s is left from an export that was killed; delete it", path)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp's 0700 would hide the bundle from others
        yield staging
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def swap_in(new: Path, out: Path) -> None:
    """Put folder ``new`` in place of ``out``: the old one is renamed aside, ``new`` renamed in,
    then the old one deleted. Renames within one folder are atomic; should the second fail,
    the old bundle is put back.
    """
    retired = None
    if out.exists() or out.is_symlink():
        retired = out.with_name(f"{RETIRED_PREFIX}{secrets.token_hex(4)}")
        os.rename(out, retired)
    try:
        os.rename(new, out)
    except BaseException:
        if retired is not None:
            os.rename(retired, out)
        raise
    if retired is not None:
        if retired.is_dir() and not retired.is_symlink():
            shutil.rmtree(retired, ignore_errors=True)
        else:
            retired.unlink()


def write_variant(folder: Path, fmt: ExportFormat, flatbuffer: bytes) -> Path:
    """Write one variant's final bytes into the bundle (atomically); every variant passes here.

    The one place to change what a ``.tflite`` file of the bundle holds (e.g. adding TFLite
    metadata): verification, hashes and sizes all read the file written here.
    """
    return write_bytes(folder / fmt.file, flatbuffer)


def write_labels(folder: Path, labels: list[str]) -> Path:
    """The bundle's ``labels.txt``: one class name per line, in output order."""
    return write_text(folder / LABELS_FILE, labels_text(labels))
