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


def write_variant(folder: Path, fmt: ExportFormat, flatbuffer: bytes, *, run_name: str,
                  version: str, labels: list[str], input_spec: dict) -> Path:
    """Write one variant into the bundle (atomically) with its TFLite metadata; every variant
    passes here.

    The metadata (:mod:`export.metadata`: name, description, class names, the input contract)
    makes the file a model on its own. Verification, hashes and sizes all read the file
    written here, so they cover the metadata too.
    """
    from export.metadata import add_variant_metadata

    return write_bytes(folder / fmt.file, add_variant_metadata(
        flatbuffer, fmt, run_name=run_name, version=version, labels=labels,
        input_spec=input_spec))


def write_labels(folder: Path, labels: list[str]) -> Path:
    """The bundle's ``labels.txt``: one class name per line, in output order."""
    return write_text(folder / LABELS_FILE, labels_text(labels))
