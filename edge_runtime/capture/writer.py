"""Saving camera frames as labelled pictures on the device: ``OUT/<label>/*.jpg``.

Used by ``edge-capture``, the live view's capture panel and ``edge-classify
--save-uncertain``. Frames are saved as the camera gives them (full field of view, before
any resize the model does), as JPEG. A name is never reused: each file is written under a
temporary name, flushed, then hard-linked to its final name, which fails rather than
replaces when that name exists, so no picture is ever overwritten, and a crash leaves a
hidden temporary file, never a truncated picture. Every save first checks two limits: the
bytes this writer may still write (``max_mb``) and the disk's free space (``min_free_mb``,
kept for the system: a full SD card can take a Pi down). TensorFlow-free; OpenCV encodes.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from common.fileio import create_temp, fsync
from common.labels import label_problem
from edge_runtime.errors import EdgeError

JPEG_QUALITY = 95
"""OpenCV's JPEG quality for saved pictures: training material, so little is lost."""

MIN_FREE_MB = 200.0
"""Free disk space, in MB, a writer leaves alone by default (the system needs some)."""


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


class PictureWriter:
    """Writes pictures into ``root/<label>/``, within its limits; thread-safe.

    Args:
        root: the data folder (created when missing).
        max_mb: the most this writer writes, in MB (None: no limit but the disk's).
        min_free_mb: free space on the disk it leaves alone.
        prefix: the start of every file name (e.g. ``capture``, ``uncertain``).
    """

    def __init__(self, root: str | os.PathLike, max_mb: float | None = None,
                 min_free_mb: float = MIN_FREE_MB, prefix: str = "capture") -> None:
        self.root = Path(root)
        self.max_bytes = None if max_mb is None else int(max_mb * 1e6)
        self.min_free_bytes = int(min_free_mb * 1e6)
        self.prefix = prefix
        self.written_bytes = 0
        self.saved: dict[str, int] = {}
        """Pictures saved by this writer, per label."""
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
        if self.max_bytes is not None and self.written_bytes + size > self.max_bytes:
            raise CaptureLimit(f"--max-mb {self.max_bytes / 1e6:g} reached "
                               f"({self.written_bytes / 1e6:.1f} MB written)")
        free = shutil.disk_usage(self.root).free
        if free - size < self.min_free_bytes:
            raise CaptureLimit(f"the disk of {self.root} is nearly full ({free / 1e6:.0f} MB "
                               f"free; {self.min_free_bytes / 1e6:g} MB are left for the "
                               "system): stopped saving")

    def save(self, frame_bgr: np.ndarray, label: str, data: bytes | None = None,
             suffix: str = ".jpg") -> Path:
        """Save a frame as ``root/<label>/<prefix>-<time>-<n>.jpg``; returns its path.

        Args:
            data: the encoded bytes, when the caller has them (else the frame is encoded).

        Raises:
            CaptureError: a bad label or an unwritable folder.
            CaptureLimit: a limit would be passed (nothing is written).
        """
        check_label(label)
        data = encode_jpeg(frame_bgr) if data is None else data
        folder = self.root / label
        with self._lock:
            self.check_room(len(data))
            try:
                folder.mkdir(exist_ok=True)
                path = self._write_new(folder, data, suffix)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise CaptureLimit(f"the disk of {self.root} is full: stopped saving") \
                        from None
                raise CaptureError(f"cannot write into {folder}: {exc.strerror or exc}") \
                    from None
            self.written_bytes += len(data)
            self.saved[label] = self.saved.get(label, 0) + 1
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
