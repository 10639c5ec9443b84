"""The status file a camera run keeps in edge-model's store: which version classifies frames.

A camera run whose model lies in a store (``--model ROOT/current/model_int8.tflite``, resolved
to ``ROOT/versions/<version>/…``) writes ``ROOT/status.json`` after the first frame each model
it loads classifies (the one it starts with, and each one a reload swaps in)::

    {"version": "3f9c0a51e2b4", "pid": 812, "frames": 1, "time": 1764829502.1,
     "model": "/home/pi/edge-models/versions/3f9c0a51e2b4/model_int8.tflite",
     "shadow": {"version": "9b21d0c4e7aa", "live": "3f9c0a51e2b4", "frames": 812,
                "agreement": 0.962}}

``shadow`` (null without one) is the staged candidate running beside it (``edge-model stage``;
:mod:`edge_runtime.stream.shadow`): how many live frames of version ``live`` it was compared on
and how often its top-1 was the live model's. It is written again as the shadow goes on, every
:data:`SHADOW_EVERY_FRAMES` frames compared or :data:`SHADOW_EVERY_S` seconds, whichever comes
first, and when it ends; ``edge-model promote`` reads it.

``edge-model activate`` reads it (through :func:`read_status`, the one reader) to know whether
a service runs on the store and whether the version it switched to *committed*: reached the
service and classified a frame there. The file is written atomically (written aside, flushed,
renamed), once per model loaded and at the shadow's pace above, never once per frame: a Pi's
card wears. Outside a store nothing is written. Standard library only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

STATUS_FILE = "status.json"
"""In the store's root, beside ``current``."""
VERSIONS, CURRENT = "versions", "current"
"""The store's folder of versions and its link to the current one (``deploy.store`` lays the
store out)."""
STAGED = "staged"
"""The store's link to the version staged as the running service's shadow
(``edge-model stage``), beside ``current``."""
SHADOW_EVERY_FRAMES = 100
"""The shadow's agreement is written again after this many more frames compared…"""
SHADOW_EVERY_S = 30.0
"""…or this many seconds, whichever comes first."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceStatus:
    """What the status file says."""

    version: str
    """The version whose model classified the frame."""
    pid: int
    """The process classifying."""
    frames: int
    """Frames the process had classified when it wrote this."""
    time: float
    """When it wrote this (seconds since the epoch)."""
    model: str
    """The model file, resolved (inside ``versions/<version>/``)."""
    shadow: dict | None = None
    """The shadow's agreement so far: ``{"version" (the candidate's), "live" (the version
    it was compared with), "frames", "agreement"}``; None without a shadow."""

    @property
    def alive(self) -> bool:
        """Whether process :attr:`pid` still runs (a process of another user counts)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def store_of(model: str | os.PathLike) -> tuple[Path, str] | None:
    """``(store root, version)`` when ``model`` resolves into ``ROOT/versions/<version>/``
    (directly, or in a folder of it such as ``imx500/``) of a store (``ROOT/current`` is a
    link), else None."""
    resolved = Path(os.path.realpath(model))
    for folder in resolved.parents:
        root = folder.parent.parent
        if folder.parent.name == VERSIONS and (root / CURRENT).is_symlink():
            return root, folder.name
    return None


def read_status(root: str | os.PathLike) -> ServiceStatus | None:
    """The status file of the store at ``root``; None when there is none or it is unreadable
    (a status file is a report, never a reason to fail)."""
    try:
        data = json.loads((Path(root) / STATUS_FILE).read_text(encoding="utf-8"))
        shadow = data.get("shadow")
        return ServiceStatus(version=str(data["version"]), pid=int(data["pid"]),
                             frames=int(data["frames"]), time=float(data["time"]),
                             model=str(data["model"]),
                             shadow=shadow if isinstance(shadow, dict) else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_status(root: str | os.PathLike, status: ServiceStatus) -> None:
    """Write the status file atomically.

    Raises:
        OSError: the store's root is not writable.
    """
    from common.fileio import write_json

    write_json(Path(root) / STATUS_FILE, asdict(status))


class StatusReporter:
    """The camera run's side: tells the store which version classifies frames, and how its
    shadow agrees. Thread-safe: the shadow reports from a thread of its own.

    Args:
        model: the model the run starts with (any path; resolved here).
        clock: seconds, monotonic, for the shadow's pace (tests pass a fake).
    """

    def __init__(self, model: str | os.PathLike,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._frames = 0
        self._failed = False
        self._pending: tuple[Path, str, str] | None = None
        self._committed: tuple[Path, str, str] | None = None  # what the file says runs
        self._shadow: dict | None = None
        self._shadow_written: tuple[float, int] | None = None  # (when, frames compared)
        self.loaded(model)

    def loaded(self, model: str | os.PathLike) -> None:
        """A model was loaded (a reload swapped it in): report it at its first frame."""
        found = store_of(model)
        with self._lock:
            self._pending = (*found, os.path.realpath(model)) if found else None
            if found is None:
                self._committed = None  # a model outside a store: nothing more is written

    def frame_classified(self) -> None:
        """A frame was classified: the first one of a model in a store writes the status file.
        A store that cannot be written is said once, and the camera goes on."""
        self._frames += 1
        if self._pending is None:
            return
        with self._lock:
            if self._pending is None:
                return
            self._committed, self._pending = self._pending, None
            self._write()

    def shadow(self, report: dict | None, force: bool = False) -> None:
        """The shadow's agreement so far (``ServiceStatus.shadow``'s keys; None: no shadow
        now). Written with the status every :data:`SHADOW_EVERY_FRAMES` frames compared or
        :data:`SHADOW_EVERY_S` seconds, whichever comes first; ``force``: now (a shadow
        that ends or changes)."""
        with self._lock:
            self._shadow = report
            if self._committed is None:
                return
            now, frames = self._clock(), (report or {}).get("frames", 0)
            last = self._shadow_written
            if not force and last is not None and (frames - last[1] < SHADOW_EVERY_FRAMES
                                                   and now - last[0] < SHADOW_EVERY_S):
                return
            self._shadow_written = (now, frames)
            self._write()

    def _write(self) -> None:
        """Write what runs and the shadow's report (the lock held)."""
        root, version, model = self._committed
        try:
            write_status(root, ServiceStatus(version, os.getpid(), self._frames, time.time(),
                                             model, self._shadow))
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning(f"cannot write {Path(root) / STATUS_FILE} ({exc.strerror or exc}): "
                            "edge-model activate cannot see this service commit a version")
