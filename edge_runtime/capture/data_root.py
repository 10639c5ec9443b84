"""The one place a device keeps data for the workstation: the data root's layout and its records.

Every writer on the device (``edge-capture``, the live view's capture panel, ``--save-uncertain``,
the shadow model, the monitor) writes here, and ``edge-collect`` reads the same layout back over
rsync. TensorFlow-free, standard library only (and the store's :func:`store_of`)::

    DATA_ROOT/                              ~/edge-data, or $EDGE_DATA_ROOT
      captures/<label>/<name>.jpg           labelled pictures
      captures/index.jsonl                  {"time", "file", "label", "source", "model_version"}
      uncertain/<predicted>/<name>.jpg      frames the model found hard (unlabelled)
      uncertain/index.jsonl                 {"time", "file", "prediction",
                                             "scores": [{"label", "score"}, ...],
                                             "model_version", "source"}
      shadow/<name>.jpg                     frames where a shadow candidate disagreed
      shadow/index.jsonl                    {"time", "file", "live": {"label", "score", "version"},
                                             "candidate": {"label", "score", "version"}, "source"}
      monitor/monitor.jsonl                 one record a minute: {"time", "model_version",
                                             "frames", "fps", "class_counts": {label: n},
                                             "mean_top1", "uncertain_share", "soc_temp_c"}
      monitor/monitor.1.jsonl               the previous monitor.jsonl, rotated past a size

``time`` is ISO-8601 in UTC (:func:`utc_time`); ``file`` is relative to the data root;
``model_version`` is the model store's version name (12 hex digits of the manifest's sha256)
when the model runs from a store, else the model file's sha256[:12], or null
(:func:`model_version`).

A record is one JSON line, appended and flushed to the disk before the call returns
(:func:`append_record`), so a pulled plug loses at most the line being written; a reader
(:func:`read_records`) skips a line torn that way, and the next append starts a new line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from common.fileio import sha256
from edge_runtime.service_status import store_of

ENVIRONMENT = "EDGE_DATA_ROOT"
"""The environment variable naming the data root (else :data:`DEFAULT`)."""
DEFAULT = "~/edge-data"
"""The data root when :data:`ENVIRONMENT` is not set (``~``: the user's home)."""

CAPTURES = "captures"
"""Labelled pictures: ``captures/<label>/<name>.jpg``."""
UNCERTAIN = "uncertain"
"""Frames the model found hard: ``uncertain/<predicted label>/<name>.jpg``."""
SHADOW = "shadow"
"""Frames where a shadow candidate disagreed with the live model: ``shadow/<name>.jpg``."""
MONITOR = "monitor"
"""The per-minute monitoring records."""
PICTURE_FOLDERS = (CAPTURES, UNCERTAIN, SHADOW)
"""The folders holding pictures, each with its :data:`INDEX`."""

INDEX = "index.jsonl"
"""One JSON line per picture, in each of :data:`PICTURE_FOLDERS`."""
MONITOR_FILE = f"{MONITOR}/monitor.jsonl"
"""The monitor's records, relative to the data root."""
MONITOR_ROTATED = f"{MONITOR}/monitor.1.jsonl"
"""Where :data:`MONITOR_FILE` goes when it passes its size (the older one is dropped)."""
MONITOR_MAX_BYTES = 1_000_000
"""The size past which :data:`MONITOR_FILE` is rotated: about two weeks of records a file."""


def default_data_root() -> Path:
    """``$EDGE_DATA_ROOT`` when set (and not blank), else ``~/edge-data``, ``~`` expanded."""
    given = os.environ.get(ENVIRONMENT, "").strip()
    return Path(given or DEFAULT).expanduser()


def model_version(model: str | os.PathLike | None) -> str | None:
    """The ``model_version`` of records about ``model``'s answers: its store's version when it
    runs from edge-model's store (``ROOT/current/…``), else the file's sha256[:12]; None for no
    model (``edge-capture``) or one that cannot be read.
    """
    if model is None:
        return None
    found = store_of(model)
    if found is not None:
        return found[1]
    try:
        return sha256(model)[:12]
    except OSError:
        return None


def index_path(root: str | os.PathLike, folder: str) -> Path:
    """The index of one of :data:`PICTURE_FOLDERS` under ``root``."""
    if folder not in PICTURE_FOLDERS:
        raise ValueError(f"{folder!r} is not a picture folder of the data root "
                         f"(one of {', '.join(PICTURE_FOLDERS)})")
    return Path(root) / folder / INDEX


def utc_time(seconds: float | None = None) -> str:
    """``seconds`` since the epoch (None: now) as the records' ISO-8601 UTC time, to the
    millisecond: ``2026-12-04T07:15:02.123+00:00``."""
    moment = datetime.now(timezone.utc) if seconds is None else datetime.fromtimestamp(
        seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def parse_time(text: str) -> datetime:
    """A record's ``time`` back as an aware datetime (a time without a zone is taken as UTC).

    Raises:
        ValueError: not an ISO-8601 time.
    """
    if text.endswith("Z"):  # Python 3.10's fromisoformat does not take the Z
        text = text[:-1] + "+00:00"
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def append_record(path: str | os.PathLike, record: dict,
                  max_bytes: int | None = None, rotated: str | os.PathLike | None = None) -> None:
    """Append ``record`` to ``path`` as one JSON line, flushed to the disk before returning.

    The folder is created when missing. A last line left torn by a crash is ended first, so
    the new record starts a line of its own. With ``max_bytes``, a file that this line would
    take past it is first renamed to ``rotated`` (replacing the one there), and a new file
    begins.

    Raises:
        OSError: the file cannot be written (a full disk: nothing half-written is left but a
            torn line, which readers skip).
    """
    path = Path(path)
    if max_bytes is not None:
        if rotated is None:
            raise ValueError("rotating needs the rotated file's path")
        size = len(json.dumps(record, ensure_ascii=False).encode("utf-8")) + 1
        try:
            if path.stat().st_size + size > max_bytes:
                os.replace(path, rotated)
        except FileNotFoundError:
            pass
    append_records(path, [record])


def append_records(path: str | os.PathLike, records: list[dict]) -> None:
    """Append ``records`` to ``path``, a JSON line each, with one flush to the disk at the end
    (the folder created when missing; a torn last line ended first, as
    :func:`append_record` does).

    Raises:
        OSError: the file cannot be written.
    """
    if not records:
        return
    path = Path(path)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        while data:  # a write may take fewer bytes than given (a signal, a nearly full disk)
            data = data[os.write(fd, data):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike) -> Iterator[dict]:
    """The records of a JSON-lines file, in order; nothing when it does not exist.

    A line that is not a JSON object (torn by a crash mid-write, or damaged) is skipped: the
    lines after it still count.

    Raises:
        OSError: the file exists but cannot be read.
    """
    try:
        f = open(path, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return
    with f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                yield record


def monitor_records(root: str | os.PathLike) -> list[dict]:
    """The monitor's records under ``root``, oldest first: the rotated file's, then the
    current one's."""
    root = Path(root)
    return [*read_records(root / MONITOR_ROTATED), *read_records(root / MONITOR_FILE)]
