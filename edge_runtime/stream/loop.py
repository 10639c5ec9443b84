"""The two ways edge-classify feeds a model: a list of files, and a stream of camera or video frames.

Both report through callbacks, so the command line decides how results are shown (a table,
JSON lines, a window) and the loops stay testable without a terminal.

The stream loop overlaps its three stages, each on its own thread: the source's thread
captures and decodes, a preprocessing thread turns each frame into an input tensor
(BGR → RGB, resize, quantize), and the calling thread runs the model. The stages hand
frames over through a :class:`~edge_runtime.sources.frame_source.FrameSlot`: a live camera's holds
only the newest frame (older ones are dropped), a recording's a few frames in order (none is
lost). Either way a frame costs about what the slowest stage costs, not their sum.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from edge_runtime.classifier import Classifier, FrameClassifier, Prediction
from edge_runtime.errors import ImageError
from edge_runtime.sources.frame_source import END, FrameSlot, FrameSource
from edge_runtime.stream.summary import StreamSummary

FrameCallback = Callable[[int, np.ndarray, list[Prediction], float], bool]
"""``(frame number, BGR frame, predictions, latency ms)`` → False to stop the stream."""


def classify_files(classifier: Classifier, paths: Sequence[Path], k: int, threshold: float,
                   on_result: Callable[[str, list[Prediction], float], None],
                   on_failure: Callable[[Path, ImageError], None]) -> int:
    """Classify image files one by one; an unreadable file is reported and skipped.

    Args:
        classifier: the model to run.
        paths: image files.
        k, threshold: passed to :meth:`Classifier.classify`.
        on_result: called with (source, predictions, latency ms) for each file read.
        on_failure: called with (path, error) for each file that is not a readable image.

    Returns:
        The number of files that could not be read.
    """
    failed = 0
    for path in paths:
        try:
            predictions, latency_ms = classifier.classify_file(path, k, threshold)
        except ImageError as exc:
            failed += 1
            on_failure(path, exc)
            continue
        on_result(str(path), predictions, latency_ms)
    return failed


class Preprocessor:
    """The stream's middle stage: frames from a source → ``(frame, input tensor)``, on a thread.

    It keeps the source's policy: every frame in order for a recording, only the
    newest for a live camera (a frame the model had no time for is dropped here too).

    Args:
        classifier: makes the tensors (:meth:`FrameClassifier.frame_tensor`).
        source: the frame source; this stage starts it, and stops it when it ends.
    """

    def __init__(self, classifier: FrameClassifier, source: FrameSource) -> None:
        self.classifier = classifier
        self.source = source
        self.error: BaseException | None = None
        """An exception preprocessing died of, if any."""
        self._slot = FrameSlot(source.keep_all)
        self._thread = threading.Thread(target=self._run, name=f"preprocess {source.name}",
                                        daemon=True)

    @property
    def dropped(self) -> int:
        """Frames dropped by the source or by this stage before the model saw them."""
        return self.source.dropped + self._slot.dropped

    def start(self) -> Preprocessor:
        """Start the source and this stage's thread; returns self."""
        self.source.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for number, frame in self.source.frames():
                made_by = self.classifier  # swapped between two frames by a model reload
                tensor = made_by.frame_tensor(frame)
                if not self._slot.put(number, (frame, tensor, made_by)):
                    break
        except BaseException as exc:  # reported by the consumer; a thread has no caller
            self.error = exc
        finally:
            self._slot.close()

    def items(self, poll_s: float = 0.1, should_stop: Callable[[], bool] = lambda: False
              ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(frame number, BGR frame, input tensor)`` until the source ends, :meth:`stop`,
        or ``should_stop()`` (asked between waits of ``poll_s`` seconds) says so."""
        while not should_stop():
            item = self._slot.take(timeout=poll_s)  # short waits: Ctrl-C reaches us promptly
            if item is END:
                return
            if item is not None:
                number, (frame, tensor, made_by) = item
                if made_by is not self.classifier:  # made for the model a reload replaced
                    tensor = self.classifier.frame_tensor(frame)
                yield number, frame, tensor

    def stop(self) -> None:
        """Stop this stage and the source (releasing the camera or file); safe to call twice."""
        self._slot.close()
        self.source.stop()  # ends the source's frames(), so the thread ends too
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)


def classify_stream(classifier: FrameClassifier, source: FrameSource, k: int = 3,
                    threshold: float = 0.0, max_frames: int | None = None,
                    on_frame: FrameCallback | None = None,
                    reload: Callable[[], FrameClassifier | None] | None = None
                    ) -> StreamSummary:
    """Classify frames from a frame source until it ends, its stages overlapped.

    Frames are preprocessed on a thread of their own while the model runs on the
    previous one (see the module docstring). Ctrl-C ends the run like the end of
    the video does: the summary is still returned. The source is stopped on every
    path; an error of the preprocessing stage is reported as the source's
    :attr:`~FrameSource.error` unless it already has one.

    Args:
        classifier: the model to run.
        source: an opened frame source (started here if it was not).
        k, threshold: passed to :meth:`Classifier.classify_tensor`.
        max_frames: stop after this many frames (None: until the source ends).
        on_frame: called after each frame; returning False stops the run.
        reload: asked before each frame; a classifier it returns replaces the running one
            from that frame on (:class:`~edge_runtime.stream.reload.ModelWatch`: hot reload),
            unless either of them needs a camera of its own (``camera`` not None: the AI
            Camera's network, uploaded as the camera opens): then the stream ends there, with
            ``ended_by`` "reload" and the new classifier in the summary's ``reloaded``, for the
            caller to open the camera again for it.

    Returns:
        The run's :class:`StreamSummary`.
    """
    summary = StreamSummary()
    stage = Preprocessor(classifier, source)
    started = time.perf_counter()
    try:
        _run_stream(stage, summary, k, threshold, max_frames, on_frame, reload)
    except KeyboardInterrupt:
        summary.ended_by = "interrupt"
    finally:
        summary.seconds = time.perf_counter() - started
        stage.stop()
        summary.dropped = stage.dropped
        if stage.error is not None and source.error is None:
            source.error = stage.error
    return summary


HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for the block; one that came meanwhile is raised after it.

    A frame's result going out and its being counted are one step: an interrupt landing in
    between would leave the summary short of a frame the user saw (the other stages' threads
    hold the GIL often enough to make that window real). Masking the signal would not do: the
    kernel hands it to any thread, and Python then interrupts the main thread all the same. So
    the handlers are swapped for one that takes note, and a noted signal is raised again, to the
    real handler, at the end. Only the main thread may set handlers (and only it is
    interrupted); elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: noted.append(signum))
                for signum in HELD_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if noted:
            signal.raise_signal(noted[0])


def _run_stream(stage: Preprocessor, summary: StreamSummary, k: int, threshold: float,
                max_frames: int | None, on_frame: FrameCallback | None,
                reload: Callable[[], FrameClassifier | None] | None) -> None:
    """The inference stage of :func:`classify_stream`: fills ``summary`` as frames are done."""
    stage.start()
    for number, frame, tensor in stage.items():
        new = reload() if reload is not None else None
        if new is not None and (new.camera is not None or stage.classifier.camera is not None):
            summary.ended_by, summary.reloaded = "reload", new  # the camera must open for it
            return
        if new is not None:  # between two frames: this one is the new model's first
            stage.classifier = new
            tensor = new.frame_tensor(frame)
        predictions, latency_ms = stage.classifier.classify_tensor(tensor, k, threshold)
        with signals_held():  # delivered ⇔ counted, whenever Ctrl-C or SIGTERM lands
            keep_going = on_frame is None or on_frame(number, frame, predictions, latency_ms)
            summary.add(predictions, latency_ms)
        if not keep_going:
            summary.ended_by = "stop"
            break
        if max_frames is not None and summary.frames >= max_frames:
            summary.ended_by = "max-frames"
            break
    else:
        summary.ended_by = "end"
