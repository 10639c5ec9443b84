"""Which model a run uses, and hot reload: a new model swapped in between two frames.

:class:`ModelLoader` is the one way a run loads its model, at the start and at every switch:
the AI Camera's network on its sensor when the run uses the AI Camera, else a
:class:`~edge_runtime.classifier.Classifier` on the CPU.

``edge-model activate`` switches the ``current`` link a service's ``--model`` goes through;
``systemctl reload edge-classify`` sends SIGHUP. Either way :class:`ModelWatch` loads the model
the path now names, through the run's loader, on a thread of its own while the old one keeps
classifying, and the stream loop (:func:`edge_runtime.stream.loop.classify_stream`) swaps it in
before the next frame: the camera stays open and the live view keeps streaming. A model that
cannot be loaded leaves the old one running, with one line in the log. A network that runs on
the AI Camera's sensor is uploaded as the camera opens, so there the same swap ends the stream
and the camera run (:func:`edge_runtime.stream.camera_run.run_camera`) opens the camera again
for it (seconds without frames, where a CPU model loses none).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from common.quiet import quiet_output
from edge_runtime.classifier import Classifier, FrameClassifier
from edge_runtime.sensor_classifier import SensorClassifier
from edge_runtime.sources.ai_camera import sensor_camera
from edge_runtime.sources.camera_spec import parse_camera

POLL_S = 1.0
"""How often the model path is resolved again (a few system calls: cheap)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelLoader:
    """Loads a ``--model`` path as a run's classifier: the same way at the start and at every
    switch (:class:`ModelWatch`), so a switched model runs where a fresh start would run it.

    With a ``camera`` that names the AI Camera, or is ``auto`` with the AI Camera connected and
    the bundle holding its network (:func:`~edge_runtime.sources.ai_camera.sensor_camera`), the
    network runs on the sensor (:class:`~edge_runtime.sensor_classifier.SensorClassifier`);
    otherwise the model runs on the CPU (:class:`~edge_runtime.classifier.Classifier`, its
    native start-up log silenced; ``verbose`` says what was loaded).

    Raises (from a call):
        EdgeError: the model, its labels or, for ``--camera imx500``, its network is unusable.
    """

    camera: str | None = None
    """The ``--camera`` value; None: no camera (the CPU)."""
    labels: str | None = None
    """``--labels``: a labels file instead of the bundle's."""
    threads: int | None = None
    """Interpreter threads (None: every usable core)."""
    backend: str | None = None
    """The interpreter backend (None: the first that works)."""
    verbose: bool = False
    """Say which backend runs with how many threads, and the model's input."""

    def __call__(self, path: str | os.PathLike) -> FrameClassifier:
        if self.camera is not None:
            sensor = sensor_camera(os.fspath(path), self.camera, quiet=not self.verbose)
            if sensor is not None:  # the AI Camera: the network runs on its sensor
                return SensorClassifier(parse_camera(sensor).target, self.labels)
        return self.on_cpu(path)

    def on_cpu(self, path: str | os.PathLike) -> Classifier:
        """The model on the CPU, whatever the camera (files are classified this way)."""
        with quiet_output(not self.verbose):
            classifier = Classifier(path, self.labels, self.threads, self.backend)
        if self.verbose:
            height, width = classifier.input_size
            log.info(f"backend {classifier.backend}, {classifier.threads} threads, input "
                     f"{height}x{width} {classifier.input_dtype}, {len(classifier.labels)} "
                     f"classes, model {classifier.model_path}")
        return classifier


class ModelWatch:
    """Watches ``path`` (a link switched underneath, or SIGHUP) and loads what it names.

    Args:
        path: the ``--model`` path as given (through the ``current`` link on a device).
        load: the resolved model path → a classifier (raising on a bad model): the run's
            :class:`ModelLoader`.
        poll_s: seconds between two looks at where ``path`` leads.
        what: what the log lines call the model (the shadow's candidate watches this way too).
    """

    def __init__(self, path: str | os.PathLike, load: Callable[[str], FrameClassifier],
                 poll_s: float = POLL_S, what: str = "model") -> None:
        self.path = os.fspath(path)
        self.poll_s = poll_s
        self.what = what
        self.reloads = 0
        """Models swapped in so far."""
        self._load = load
        self._resolved = os.path.realpath(self.path)
        self._requested = threading.Event()
        self._next_look = time.monotonic() + poll_s
        self._loading: threading.Thread | None = None
        self._loaded: FrameClassifier | None = None

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

    def __call__(self) -> FrameClassifier | None:
        """Asked between two frames: a newly loaded classifier to use from now on, else None."""
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
        self._loading = threading.Thread(target=self._load_aside, args=(resolved,),
                                         name="model reload", daemon=True)
        self._loading.start()
        return None

    def _load_aside(self, resolved: str) -> None:
        try:
            self._loaded = self._load(resolved)
        except Exception as exc:  # the old model keeps running: one line says why
            reason = " ".join(str(exc).split()) or type(exc).__name__
            log.error(f"{self.what} reload failed, the running {self.what} stays: {resolved}: "
                      f"{reason}")
            return
        log.info(f"{self.what} reloaded: {resolved}")
