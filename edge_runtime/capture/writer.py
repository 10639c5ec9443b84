"""Saving camera frames as pictures on the device, each with its line in the folder's index.

Used by ``edge-capture``, the live view's capture panel, ``edge-classify --save-uncertain``
and the shadow model's disagreements. Frames are saved as the camera gives them (full field of
view, before any resize the model does), as JPEG, into ``FOLDER/<label>/`` (or ``FOLDER/``
itself), and each picture gets a JSON line in ``FOLDER/index.jsonl`` (the data root's record
shapes: :mod:`edge_runtime.capture.data_root`), appended and flushed after the picture is in
place. A name is never reused: each file is written under a temporary name, flushed, then
hard-linked to its final name, which fails rather than replaces when that name exists, so no
picture is ever overwritten, and a crash leaves a hidden temporary file, never a truncated
picture.

Every save first asks its :class:`SpaceBudget`: ``max_mb`` over the data root's whole size
(captures, uncertain frames, shadow disagreements and monitoring records together, whoever
wrote them) or, for a folder given by name, over what this run writes into it; and the disk's
free space (``min_free_mb``, kept for the system: a full SD card can take a Pi down). Frames
saved without anyone asking (uncertain ones, shadow disagreements) share one
:class:`PerMinute` limit too. TensorFlow-free; OpenCV encodes.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.fileio import create_temp, fsync
from common.labels import label_problem
from edge_runtime.capture import data_root
from edge_runtime.errors import EdgeError

JPEG_QUALITY = 95
"""OpenCV's JPEG quality for saved pictures: training material, so little is lost."""

MIN_FREE_MB = 200.0
"""Free disk space, in MB, a writer leaves alone by default (the system needs some)."""
REMEASURE_S = 60.0
"""How often a budget over a folder's whole size walks the folder again: other runs (an
``edge-capture`` beside the service) write into the data root too."""


class CaptureError(EdgeError, OSError):
    """A picture cannot be saved: a bad label, a folder that cannot be written."""


class CaptureLimit(CaptureError):
    """A writer's limit is reached: ``--max-mb`` written, or the disk nearly full."""


def check_label(name: str) -> str:
    """``name``, when it can be a label (:func:`common.labels.label_problem`).

    Raises:
        CaptureError: naming what is wrong with it.
    """
    problem = label_problem(name)
    if problem:
        raise CaptureError(problem)
    return name


def encode_jpeg(frame_bgr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """A BGR frame (OpenCV's order, as every source gives it) as JPEG bytes."""
    import cv2

    ok, data = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise CaptureError(f"cannot encode a frame of shape {frame_bgr.shape} as JPEG")
    return data.tobytes()


def folder_size(folder: str | os.PathLike) -> int:
    """The bytes of every file under ``folder`` (0 when it does not exist yet)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:  # gone meanwhile (a prune, a rotation)
                pass
    return total


class SpaceBudget:
    """What the writers of one run may still write, shared by them (thread-safe).

    Args:
        folder: where they write (created when missing).
        max_mb: the most MB, None for no limit but the disk's.
        min_free_mb: free space on the disk left alone.
        whole: ``max_mb`` bounds ``folder``'s whole size (the data root: what is there,
            whoever wrote it, measured at the start and every :data:`REMEASURE_S`), not only
            what this budget's writers wrote (a folder given by name).
        clock: seconds, monotonic, for the measuring (tests pass a fake).

    Raises:
        CaptureError: ``folder`` cannot be created.
    """

    def __init__(self, folder: str | os.PathLike, max_mb: float | None = None,
                 min_free_mb: float = MIN_FREE_MB, whole: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(folder)
        self.max_bytes = None if max_mb is None else int(max_mb * 1e6)
        self.min_free_bytes = int(min_free_mb * 1e6)
        self.whole = whole
        self.written = 0
        """Bytes written through this budget."""
        self._clock = clock
        self._lock = threading.Lock()
        self._measured: tuple[float, int] | None = None  # (when, folder size then)
        self._since = 0  # bytes written since then
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"cannot create {self.folder}: {exc.strerror or exc}") from None

    def used(self) -> int:
        """The bytes counted against ``max_mb``."""
        if not self.whole or self.max_bytes is None:
            return self.written
        now = self._clock()
        if self._measured is None or now - self._measured[0] >= REMEASURE_S:
            self._measured, self._since = (now, folder_size(self.folder)), 0
        return self._measured[1] + self._since

    def check(self, size: int = 0) -> None:
        """Raise :class:`CaptureLimit` when ``size`` more bytes would pass a limit."""
        with self._lock:
            used = self.used()
        if self.max_bytes is not None and used + size > self.max_bytes:
            held = (f"{self.folder} holds {used / 1e6:.1f} MB" if self.whole
                    else f"{used / 1e6:.1f} MB written")
            raise CaptureLimit(f"--max-mb {self.max_bytes / 1e6:g} reached ({held})")
        free = shutil.disk_usage(self.folder).free
        if free - size < self.min_free_bytes:
            raise CaptureLimit(f"the disk of {self.folder} is nearly full ({free / 1e6:.0f} MB "
                               f"free; {self.min_free_bytes / 1e6:g} MB are left for the "
                               "system): stopped saving")

    def spent(self, size: int) -> None:
        """Count ``size`` bytes written."""
        with self._lock:
            self.written += size
            self._since += size


class PerMinute:
    """At most ``limit`` frames saved in any 60 s, shared by the run's automatic writers
    (``--max-per-minute``); thread-safe.

    Args:
        limit: the most in any minute.
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._recent: deque[float] = deque()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Count one frame now if the minute has room; False (nothing counted) when it has not."""
        with self._lock:
            now = self._clock()
            while self._recent and now - self._recent[0] >= 60.0:
                self._recent.popleft()
            if len(self._recent) >= self.limit:
                return False
            self._recent.append(now)
            return True


class PictureWriter:
    """Writes pictures into ``root/<label>/`` (or ``root`` itself), a line each in
    ``root/index.jsonl``, within its budget; thread-safe.

    Args:
        root: the picture folder (created when missing): ``DATA_ROOT/captures`` (or
            ``uncertain``, ``shadow``), or a folder given by name.
        max_mb, min_free_mb: this writer's own :class:`SpaceBudget` over ``root``, when
            ``budget`` is not given.
        prefix: the start of every file name (e.g. ``capture``, ``uncertain``).
        budget: a budget shared with the run's other writers (the data root's).
        base: what the records' ``file`` is relative to (the data root; default ``root``).
        source: the records' ``source`` for :meth:`save` without a ``record``.
        model_version: the records' ``model_version`` likewise (set it anew when the model
            changes).

    Raises:
        CaptureError: ``root`` cannot be created.
    """

    def __init__(self, root: str | os.PathLike, max_mb: float | None = None,
                 min_free_mb: float = MIN_FREE_MB, prefix: str = "capture", *,
                 budget: SpaceBudget | None = None, base: str | os.PathLike | None = None,
                 source: str | None = None, model_version: str | None = None) -> None:
        self.root = Path(root)
        self.budget = budget if budget is not None else SpaceBudget(root, max_mb, min_free_mb)
        self.base = self.root if base is None else Path(base)
        self.index = self.root / data_root.INDEX
        self.prefix = prefix
        self.source = source
        self.model_version = model_version
        self.written_bytes = 0
        """Bytes of pictures this writer wrote."""
        self.saved: dict[str, int] = {}
        """Pictures saved by this writer, per label ("" for ``root`` itself)."""
        self._lock = threading.Lock()
        self._serial = 0
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CaptureError(f"cannot create {self.root}: {exc.strerror or exc}") from None

    def counts(self) -> dict[str, int]:
        """Pictures per label folder under ``root``, all of them (not only this writer's)."""
        found = {}
        for folder in sorted(p for p in self.root.iterdir()
                             if p.is_dir() and not p.name.startswith(".")):
            found[folder.name] = sum(1 for f in folder.iterdir()
                                     if f.is_file() and not f.name.startswith("."))
        return found

    def check_room(self, size: int = 0) -> None:
        """Raise :class:`CaptureLimit` when ``size`` more bytes would pass a limit."""
        self.budget.check(size)

    def save(self, frame_bgr: np.ndarray, label: str | None, data: bytes | None = None,
             suffix: str = ".jpg", *, record: dict | None = None,
             when: float | None = None) -> Path:
        """Save a frame as ``root/<label>/<prefix>-<time>-<n>.jpg`` (``root/…`` for label
        None), then append its index line; returns its path.

        Args:
            data: the encoded bytes, when the caller has them (else the frame is encoded).
            record: the line's fields after ``time`` and ``file`` (default: a capture's,
                ``{"label", "source", "model_version"}``).
            when: when the frame was taken, seconds since the epoch (default: now).

        Raises:
            CaptureError: a bad label or an unwritable folder.
            CaptureLimit: a limit would be passed (nothing is written).
        """
        when = time.time() if when is None else when
        if label is not None:
            check_label(label)
        data = encode_jpeg(frame_bgr) if data is None else data
        folder = self.root if label is None else self.root / label
        with self._lock:
            self.budget.check(len(data))
            try:
                folder.mkdir(exist_ok=True)
                path = self._write_new(folder, data, suffix)
                self.budget.spent(len(data))
                self.written_bytes += len(data)
                # the picture first, then its line: a crash between leaves a picture the
                # collection still takes (its folder says what it is), never a line without one
                fields = record if record is not None else {
                    "label": label, "source": self.source, "model_version": self.model_version}
                data_root.append_record(self.index, {
                    "time": data_root.utc_time(when),
                    "file": os.path.relpath(path, self.base).replace(os.sep, "/"), **fields})
            except CaptureError:
                raise
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise CaptureLimit(f"the disk of {self.root} is full: stopped saving") \
                        from None
                raise CaptureError(f"cannot write into {folder}: {exc.strerror or exc}") \
                    from None
            key = label or ""
            self.saved[key] = self.saved.get(key, 0) + 1
        return path

    def _write_new(self, folder: Path, data: bytes, suffix: str) -> Path:
        tmp = create_temp(folder, f".{self.prefix}.", ".part")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            fsync(tmp)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for _ in range(1000):
                self._serial += 1
                path = folder / f"{self.prefix}-{stamp}-{self._serial:04d}{suffix}"
                try:
                    os.link(tmp, path)  # fails, never replaces, when the name exists
                except FileExistsError:
                    continue
                except OSError as exc:  # no hard links here (FAT): claim the name, then rename
                    if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                        raise
                    try:
                        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                    except FileExistsError:
                        continue
                    os.replace(tmp, path)
                fsync(folder)
                return path
            raise CaptureError(f"no free file name in {folder}")
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
