"""Hot reload of a running camera's model: a new model swapped in between two frames.

``edge-model activate`` switches the ``current`` link a service's ``--model`` goes through;
``systemctl reload edge-classify`` sends SIGHUP. Either way :class:`ModelWatch` loads the model
the path now names on a thread of its own while the old one keeps classifying, and the stream
loop (:func:`edge_runtime.stream.loop.classify_stream`) swaps it in before the next frame: the
camera stays open and the live view keeps streaming. A model that cannot be loaded leaves the
old one running, with one line in the log.

The AI Camera is the exception: its network is uploaded to the sensor as the camera opens, so
a watch made without a loader raises :class:`ModelSwitched` instead, and the caller opens the
camera again with the new network (seconds without frames, where a CPU model loses none).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from edge_runtime.classifier import Classifier

POLL_S = 1.0
"""How often the model path is resolved again (a few system calls: cheap)."""

log = logging.getLogger(__name__)


class ModelSwitched(Exception):
    """The model a watch without a loader watches changed (or SIGHUP came): the camera must
    open again to load it. ``args[0]`` is the path it now leads to."""


class ModelWatch:
    """Watches ``path`` (a link switched underneath, or SIGHUP) and loads what it names.

    Args:
        path: the ``--model`` path as given (through the ``current`` link on a device).
        load: the resolved model path → a :class:`Classifier` (raising on a bad model); None:
            nothing can be loaded between two frames, and a switch raises
            :class:`ModelSwitched` from the call that notices it.
        poll_s: seconds between two looks at where ``path`` leads.
    """

    def __init__(self, path: str | os.PathLike, load: Callable[[str], Classifier] | None,
                 poll_s: float = POLL_S) -> None:
        self.path = os.fspath(path)
        self.poll_s = poll_s
        self.reloads = 0
        """Models swapped in so far."""
        self._load = load
        self._resolved = os.path.realpath(self.path)
        self._requested = threading.Event()
        self._next_look = time.monotonic() + poll_s
        self._loading: threading.Thread | None = None
        self._loaded: Classifier | None = None

    def request(self) -> None:
        """Reload at the next frame, even if the path leads where it did (SIGHUP)."""
        self._requested.set()

    @contextmanager
    def sighup(self) -> Iterator[ModelWatch]:
        """SIGHUP requests a reload inside the block (main thread only; elsewhere nothing)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGHUP, lambda _signum, _frame: self.request())
        try:
            yield self
        finally:
            signal.signal(signal.SIGHUP, previous)

    def __call__(self) -> Classifier | None:
        """Asked between two frames: a newly loaded classifier to use from now on, else None.

        Raises:
            ModelSwitched: without a loader, once the model switched.
        """
        if self._loading is not None:
            if self._loading.is_alive():
                return None
            self._loading = None
            new, self._loaded = self._loaded, None
            if new is not None:
                self.reloads += 1
            return new
        now = time.monotonic()
        if not self._requested.is_set() and now < self._next_look:
            return None
        self._next_look = now + self.poll_s
        forced = self._requested.is_set()
        self._requested.clear()
        resolved = os.path.realpath(self.path)
        if resolved == self._resolved and not forced:
            return None
        # a target that failed is not tried again every second: only when the path changes
        # again, or on SIGHUP
        self._resolved = resolved
        if self._load is None:
            log.info(f"model switched: {resolved}")
            raise ModelSwitched(resolved)
        self._loading = threading.Thread(target=self._load_aside, args=(resolved,),
                                         name="model reload", daemon=True)
        self._loading.start()
        return None

    def _load_aside(self, resolved: str) -> None:
        try:
            self._loaded = self._load(resolved)
        except Exception as exc:  # the old model keeps running: one line says why
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.error(f"model reload failed, the running model stays: {resolved}: {reason}")
            return
        log.info(f"model reloaded: {resolved}")
