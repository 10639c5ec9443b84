"""A camera or video run of edge-classify: open the source (waiting for it if asked), start
the live view and the window, classify until the end (the model switched while it runs, the
camera opened again when the new one needs it), write each result and the summary.

The command line (:mod:`edge_runtime.commands.classify`) turns its flags into a
:class:`CameraOptions`; nothing here reads a flag.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.quiet import quiet_output, stdout_aside
from edge_runtime.capture import data_root
from edge_runtime.capture.storage import MAX_PER_MINUTE, Storage
from edge_runtime.capture.uncertain import UncertainOptions
from edge_runtime.classifier import FrameClassifier, Prediction
from edge_runtime.errors import CameraError
from edge_runtime.live import LiveServer, is_loopback
from edge_runtime.service_status import StatusReporter
from edge_runtime.sources.camera_spec import DEFAULT_SIZE, CameraSpec, parse_camera
from edge_runtime.sources.frame_source import FrameSource
from edge_runtime.sources.open_source import open_source
from edge_runtime.stream.loop import classify_stream
from edge_runtime.stream.monitor import Monitor
from edge_runtime.stream.reload import ModelWatch
from edge_runtime.stream.results import ResultWriter, result_json
from edge_runtime.stream.sdnotify import Notifier
from edge_runtime.stream.shadow import SHARE, ShadowRun, ShadowWatch
from edge_runtime.stream.summary import PeriodicSummary
from edge_runtime.stream.upload_watch import DEFAULT_UPLOAD_WAIT_S, UploadWatch
from edge_runtime.stream.window import open_window

CAMERA_RETRY_S = 1.0
"""Seconds between two tries to open a camera that is not there yet (``--camera-wait``)."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """The live view in a browser (``--serve``)."""

    host: str
    """The address to listen on (127.0.0.1: this machine only)."""
    port: int
    """The TCP port (0: any free one)."""
    token: str | None = None
    """The token requests must carry; None: a random one off loopback, none on it."""
    token_source: str = ""
    """Where the token came from (a file, ``$VARIABLE``), named in the log instead of it;
    empty when the user typed it or there is none."""
    fps: int = 15
    """The most frames a second sent to each browser."""
    max_clients: int = 4
    """Browsers streaming at once; more get 503."""


@dataclass(frozen=True)
class CameraOptions:
    """What a camera or video run does, and how it reports."""

    camera: str = "auto"
    """The source, a ``--camera`` value (:mod:`edge_runtime.sources.camera_spec`)."""
    size: tuple[int, int] = DEFAULT_SIZE
    """(width, height) asked of a camera; files and streams keep theirs."""
    wait_s: float = 0.0
    """How long a camera or stream that is not there yet is tried again (not a video file)."""
    loop: bool = False
    """A video file starts over at its end."""
    upload_wait_s: float = DEFAULT_UPLOAD_WAIT_S
    """How long the AI Camera's network upload is waited for before systemd is no longer told
    the run is alive (``--upload-wait``)."""
    headless: bool = False
    """No preview window, even where one could open."""
    max_frames: int | None = None
    """Stop after this many frames (None: until the source ends or the run is stopped)."""
    summary_every_s: float | None = None
    """A line every this many seconds instead of a line per frame."""
    top_k: int = 3
    """Classes reported per frame."""
    threshold: float = 0.0
    """Predictions below this probability are dropped."""
    json: bool = False
    """JSON lines instead of a table."""
    verbose: bool = False
    """Say more on stderr, and let OpenCV's and libcamera's logs through."""
    serve: ServeOptions | None = None
    """The live view; None: none."""
    data_root: str | None = None
    """The device's data root, where what the run keeps goes unless a folder is named
    (:mod:`edge_runtime.capture.storage`); None: ``$EDGE_DATA_ROOT``, else ``~/edge-data``."""
    save_uncertain: UncertainOptions | None = None
    """Frames the model found hard, kept (``--save-uncertain``); None: none."""
    capture: bool = False
    """A capture panel in the live view (``--capture-to``), saving into :attr:`capture_to`."""
    capture_to: str | None = None
    """The capture panel's folder (a panel even without :attr:`capture`); None: the data
    root's ``captures/``."""
    max_mb: float | None = None
    """``--max-mb``: the data root's whole size; what the run writes into a folder given by
    name."""
    min_free_mb: float = 200.0
    """Free disk space every writer leaves alone (``--min-free-mb``)."""
    max_per_minute: int = MAX_PER_MINUTE
    """Uncertain frames and shadow disagreements saved in any minute, together."""
    shadow_share: float = SHARE
    """The most of one core the shadow's thread uses (``--shadow-share``)."""
    monitor: bool = False
    """A monitoring record a minute into the data root (``--monitor``)."""

    @property
    def spec(self) -> CameraSpec:
        """:attr:`camera` parsed (raises :class:`CameraError` on a malformed ``picam:N``)."""
        return parse_camera(self.camera)


def open_camera(options: CameraOptions, alive: Callable[[], None] | None = None,
                uploading: UploadWatch | None = None) -> FrameSource:
    """Open the source; one that is not there yet is tried again for ``options.wait_s``
    seconds (a camera that appears seconds after boot), saying so once. ``alive``,
    ``uploading``: see :func:`~edge_runtime.sources.open_source.open_source`.

    A video file is never waited for (a missing file is a mistake to fix, not a camera still
    starting), nor is Picamera2 for ``picam`` (a missing library does not appear by itself).

    Raises:
        CameraError: it could not be opened (after the wait, when one applies).
    """
    spec = options.spec
    wait_s = options.wait_s if spec.kind != "file" else 0.0
    if wait_s and spec.kind == "picam":
        from edge_runtime.sources.picamera import import_picamera2

        import_picamera2(not options.verbose)
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        try:
            # FFmpeg logs decoding trouble of a file that is not a video straight to fd 2;
            # Picamera2's AI Camera helper print()s to stdout, and its upload shows on stderr
            with (stdout_aside(not options.verbose) if spec.kind == "imx500"
                  else quiet_output(not options.verbose)):
                return open_source(spec, options.size, quiet=not options.verbose,
                                   loop=options.loop, alive=alive, uploading=uploading)
        except CameraError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait_s:
                    raise CameraError(f"{exc} (after waiting {wait_s:g} s for it)") from None
                raise
            if not waiting:  # one line, not one per try
                waiting = True
                log.info(f"camera {options.camera} is not there yet ({exc}); trying again every "
                         f"{CAMERA_RETRY_S:g} s for up to {wait_s:g} s")
            time.sleep(min(CAMERA_RETRY_S, left))


def start_live_view(serve: ServeOptions, capture=None) -> LiveServer:
    """Start the live view and say where to open it (a token from a file or the environment
    stays out of the log); ``capture``: its capture panel
    (:class:`~edge_runtime.live.capture_panel.CapturePanel`), None for none.

    Raises:
        ServeError: the port is in use, or the address is not this machine's.
    """
    server = LiveServer(serve.host, serve.port, token=serve.token,
                        max_clients=serve.max_clients, stream_fps=serve.fps,
                        capture=capture).start()
    for url in server.urls(hide_token=bool(serve.token_source)):
        log.info(f"live view: {url}")
    if serve.token_source:
        log.info(f"the token (…) is the one in {serve.token_source}")
    if is_loopback(serve.host):
        log.info(f"from another computer: ssh -L {server.port}:{serve.host}:{server.port} "
                 "USER@THIS-HOST, then open the URL there")
    return server


def _capture_panel(options: CameraOptions, classifier: FrameClassifier, storage: Storage,
                   source: str):
    """The live view's capture panel for ``--capture-to`` (the model's labels offered), or None."""
    if not options.capture and options.capture_to is None:
        return None
    from edge_runtime.live.capture_panel import CapturePanel

    return CapturePanel(storage.writer(data_root.CAPTURES, options.capture_to, source=source,
                                       model_version=data_root.model_version(
                                           classifier.model_path)),
                        classifier.labels)


def _camera_for(classifier: FrameClassifier, options: CameraOptions) -> CameraOptions:
    """The options with the camera ``classifier`` needs (the AI Camera with its network), if any."""
    if classifier.camera is None:
        return options
    return dataclasses.replace(options, camera=classifier.camera)


def run_camera(classifier: FrameClassifier, options: CameraOptions,
               watch: ModelWatch | None = None, shadow: ShadowWatch | None = None) -> int:
    """Classify the source's frames until it ends or the run is stopped; returns the exit code:
    0, or 1 when reading frames failed or a live source stopped delivering.

    The camera opened is ``options.camera``, or the one ``classifier.camera`` names (the AI
    Camera with its network). With ``watch``, a model switched underneath (or SIGHUP) is swapped
    in between two frames; when the old or the new model needs a camera of its own (a network
    on the AI Camera's sensor, uploaded as the camera opens), the camera is opened again for
    the new one, the live view, window and writers going on (to systemd, a reload), and
    ``--max-frames`` counts again from there. With ``shadow``, the candidate it names runs
    beside the model on the same frames (:mod:`edge_runtime.stream.shadow`). Under systemd
    (``NOTIFY_SOCKET``) each classified frame notifies its watchdog, as does each frame the AI Camera gives before its sensor's
    first answer, and while the AI Camera uploads its network (no frames) an
    :class:`~edge_runtime.stream.upload_watch.UploadWatch` does.

    Raises:
        CameraError, ServeError: the source or the live view cannot be opened (the source
            again, after a switch).
        KeyboardInterrupt: Ctrl-C or SIGTERM before the first frame, or while the camera opens
            again (after a first frame, the run ends with its summary).
    """
    notifier = Notifier()  # fed from the first frame, even before the AI Camera answers
    uploading = UploadWatch(notifier, options.upload_wait_s)  # and while it uploads
    try:
        source = open_camera(_camera_for(classifier, options), notifier.camera_alive, uploading)
    except BaseException:
        notifier.close()
        raise
    server = miner = panel = None
    storage = Storage(options.data_root or data_root.default_data_root(), options.max_mb,
                      options.min_free_mb, options.max_per_minute)
    try:
        if options.serve is not None:
            panel = _capture_panel(options, classifier, storage, source.name)
            server = start_live_view(options.serve, panel)
        if options.save_uncertain is not None:
            from edge_runtime.capture.uncertain import UncertainSaver

            miner = UncertainSaver(options.save_uncertain,
                                   data_root.model_version(classifier.model_path),
                                   writer=storage.writer(data_root.UNCERTAIN,
                                                         options.save_uncertain.folder,
                                                         prefix="uncertain"),
                                   rate=storage.rate)
        # a recording plays at its own speed on screen; a camera delivers at its own pace
        window = open_window(options.headless, options.verbose,
                             source.fps if source.keep_all else 0.0)
    except BaseException:
        source.stop()
        notifier.close()
        if server is not None:
            server.close()
        if miner is not None:
            miner.close()
        raise

    def pace(source: FrameSource) -> float:
        # a recording served to a browser plays at its own speed too, as in the window
        return (1.0 / source.fps if server is not None and window is None and source.keep_all
                and source.fps > 0 else 0.0)

    pace_s = pace(source)
    due = 0.0
    if options.verbose:
        mode = "every frame" if source.keep_all else "newest frame only"
        rate = f", {source.fps:g} fps nominal" if source.fps else ""
        log.info(f"reading {source.name} ({mode}{rate}), "
                 + ("showing a window" if window else "headless"))
    # no table column for more classes than the model has
    writer = ResultWriter(options.json, min(options.top_k, len(classifier.labels)),
                          len(source.name) + 7, max(len(label) for label in classifier.labels))
    periods = PeriodicSummary(options.summary_every_s) if options.summary_every_s else None
    # a model in edge-model's store: its first classified frame commits its version
    status = StatusReporter(classifier.model_path)
    shadows = None if shadow is None else ShadowRun(
        shadow, data_root.model_version, classifier.model_path, options.shadow_share,
        options.threshold, lambda: storage.writer(data_root.SHADOW, prefix="shadow"),
        storage.rate, status)
    uncertain = options.save_uncertain or UncertainOptions(None)
    monitor = None if not options.monitor else Monitor(
        storage.root, data_root.model_version(classifier.model_path), uncertain.below,
        uncertain.margin)

    def on_frame(number: int, frame: np.ndarray, predictions: list[Prediction],
                 latency_ms: float) -> bool:
        nonlocal due
        notifier.frame_classified()  # a frozen camera stops this: systemd's watchdog restarts
        status.frame_classified()
        if pace_s:  # a recording plays at its own speed
            if due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            due = max(due + pace_s, time.perf_counter())
        if shadows is not None:  # never waits: a busy shadow skips the frame
            shadows.frame(frame, predictions, f"{source.name}#{number}")
        if monitor is not None:
            monitor.add(predictions, latency_ms)
        if periods is not None:  # a line a period instead of one a frame
            period = periods.add(predictions, latency_ms)
            if period is not None:
                period.shadow = shadows.period() if shadows is not None else None
                writer.period(source.name, period)
        # JSON consumers get every frame even when a window shows them too
        elif window is None or options.json:
            writer.result(f"{source.name}#{number}", predictions, latency_ms)
        if miner is not None:  # never waits: a busy writer drops the frame
            miner.offer(frame, predictions, f"{source.name}#{number}")
        if server is not None:  # before the window draws on the frame
            result = result_json(f"{source.name}#{number}", predictions, latency_ms)
            if shadows is not None and shadows.shadow is not None:
                result["shadow"] = shadows.latest()
            server.publish(number, frame, result)
        return window.show(frame, predictions) if window is not None else True

    def switched() -> FrameClassifier | None:
        """The watch, and what a new model changes besides the classifier: the model named in
        the journal of kept frames, the labels the capture panel offers, the version the
        store is told of at its first frame."""
        new = watch()
        if new is not None:
            status.loaded(new.model_path)
            version = data_root.model_version(new.model_path)
            if miner is not None:
                miner.model_version = version
            if panel is not None:
                panel.labels = list(new.labels)
                panel.writer.model_version = version
            if shadows is not None:
                shadows.live_changed(new.model_path)
            if monitor is not None:
                monitor.model_changed(version)
        return new

    try:
        # Ctrl-C and SIGTERM (run_command turns it into KeyboardInterrupt) end the stream
        # with its summary
        with watch.sighup() if watch is not None else contextlib.nullcontext():
            while True:
                summary = classify_stream(classifier, source.start(), options.top_k,
                                          options.threshold, options.max_frames, on_frame,
                                          switched if watch is not None else None)
                if summary.ended_by != "reload":
                    break
                # the stream stopped the old source; the new model's camera opens
                classifier = summary.reloaded
                notifier.reloading()
                log.info(f"the model changed ({classifier.model_path}): opening the camera "
                         "again (the AI Camera's network is uploaded as it opens)")
                source = open_camera(_camera_for(classifier, options), notifier.camera_alive,
                                     uploading)
                pace_s, due = pace(source), 0.0
    finally:
        notifier.stopping()
        notifier.close()
        if window is not None:
            window.close()
        if server is not None:
            server.close()
        mined = miner.close() if miner is not None else None
        if monitor is not None:
            monitor.close()
        shadowed = (shadows.total(), shadows.close()) if shadows is not None else (None, None)
    summary.shadow = shadowed[0]
    writer.summary(source.name, summary)
    for line in (mined, shadowed[1]):
        if line:
            log.info(line)
    if source.error is not None:
        log.error(f"{source.name}: reading frames failed: {source.error}")
        return 1
    if summary.ended_by == "end" and not source.keep_all:
        log.error(f"{source.name} stopped delivering frames")
        return 1
    return 0
