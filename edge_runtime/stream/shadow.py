"""A candidate model run beside the live one on the same frames, to see how often it agrees: the
shadow (``edge-classify --shadow CANDIDATE``, or the version ``edge-model stage`` staged).

The live loop offers every frame (:meth:`Shadow.offer`); the shadow takes one only when it is
free, on a thread of its own, and never queues: an offer while it works or rests is skipped
(counted), so the live loop never waits for it. After each frame it rests long enough that its
thread's CPU time stays within ``share`` of one core (``--shadow-share``), so on a busy Pi the
live model keeps at least 1 − share of its frame rate (``python -m benchmarks.camera_loop
--shadow CANDIDATE`` measures it: 0.95 at share 0.5 on a shared 2-core x86). The candidate
runs on the CPU with one interpreter thread, whatever runs the live model.

What is compared is the top-1 label, as the user would see it (``--threshold`` applied to both:
nothing above it on both sides is agreement). :class:`Agreement` counts frames and agreements,
overall and per live label, for the whole run and for each ``--summary-every`` period; a frame
where they disagree is saved into the data root's ``shadow/`` with its line
(:mod:`edge_runtime.capture.data_root`), within the run's per-minute limit and the root's
budget. The run's :class:`~edge_runtime.service_status.StatusReporter` is told the agreement
as it grows (it writes ``status.json`` at its own pace: ``edge-model promote`` reads it).

Which candidate runs is watched as the live model is (:class:`ShadowWatch`, through
:class:`~edge_runtime.stream.reload.ModelWatch`): a link switched underneath loads the new
candidate aside; a path that disappears (``edge-model stage --clear``) ends the shadow. A camera
run whose ``--model`` goes through a store's ``current`` link watches the store's ``staged``
link this way (:func:`staged_candidate`), so the service picks up what is staged within a
second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edge_runtime.capture.writer import CaptureError, PerMinute, PictureWriter
from edge_runtime.classifier import FrameClassifier, Prediction
from edge_runtime.errors import EdgeError
from edge_runtime.manifest import find_manifest
from edge_runtime.service_status import CURRENT, STAGED, VERSIONS, StatusReporter
from edge_runtime.stream.reload import POLL_S, ModelWatch
from edge_runtime.stream.results import shadow_words

SHARE = 0.5
"""``--shadow-share``'s default: the shadow's thread uses at most half of one core."""
CPU_MODEL = "model_int8.tflite"
"""The candidate's file when the live model is not a ``.tflite`` (the AI Camera's network):
the bundle's int8 variant, the one a service runs on the CPU (``deploy.checks.SERVICE_VARIANT``)."""

log = logging.getLogger(__name__)


def candidate_file(candidate: str | os.PathLike, live_model: str | os.PathLike) -> Path:
    """The model file ``--shadow`` names: a ``.tflite`` as given; in a bundle folder, the file
    of the live model's name (:data:`CPU_MODEL` for the AI Camera's network), else the
    bundle's int8 variant, else its first CPU variant.

    Raises:
        EdgeError: the folder holds no model the CPU runs.
    """
    path = Path(candidate)
    if not path.is_dir():
        return path
    name = Path(live_model).name
    if (path / name).is_file() and name.endswith(".tflite"):
        return path / name
    if (path / CPU_MODEL).is_file():
        return path / CPU_MODEL
    manifest = find_manifest(path / CPU_MODEL)
    variants = manifest.cpu_variants() if manifest is not None else {}
    if variants:
        return path / next(iter(variants.values())).file
    raise EdgeError(f"--shadow {candidate}: no {name} or {CPU_MODEL} in it, and no manifest "
                    "naming a CPU variant: give the candidate's .tflite file")


def staged_candidate(live_model: str | os.PathLike) -> Path | None:
    """``ROOT/staged/<the live model's path under current>`` when ``live_model`` goes through
    the ``current`` link of a store (``ROOT/current/model_int8.tflite``, as the service's
    ``--model`` does); :data:`CPU_MODEL` instead of a live model the CPU does not run. None
    for a model outside a store (nothing is staged for it)."""
    path = Path(os.path.abspath(live_model))
    for folder in path.parents:
        if (folder.name == CURRENT and folder.is_symlink()
                and (folder.parent / VERSIONS).is_dir()):
            relative = path.relative_to(folder)
            if relative.suffix != ".tflite":
                relative = Path(CPU_MODEL)
            return folder.parent / STAGED / relative
    return None


def top1(predictions: list[Prediction]) -> Prediction | None:
    return predictions[0] if predictions else None


class Agreement:
    """Frames compared and how many the candidate's top-1 was the live model's, overall and per
    live label (a frame with nothing above ``--threshold`` counts overall only)."""

    def __init__(self) -> None:
        self.frames = 0
        self.agreed = 0
        self.per_class: dict[str, list[int]] = {}
        """Live label → [frames, agreed]."""

    def add(self, live: str | None, candidate: str | None) -> bool:
        """Count one frame; True when they agree."""
        same = live == candidate
        self.frames += 1
        self.agreed += same
        if live is not None:
            counts = self.per_class.setdefault(live, [0, 0])
            counts[0] += 1
            counts[1] += same
        return same

    @property
    def agreement(self) -> float | None:
        """The share of frames that agreed; None before the first."""
        return self.agreed / self.frames if self.frames else None

    def to_json(self, per_class: bool = True) -> dict:
        """``{"frames", "agreement", "per_class": {label: {"frames", "agreement"}}}``."""
        out = {"frames": self.frames,
               "agreement": None if self.agreement is None else round(self.agreement, 4)}
        if per_class:
            out["per_class"] = {label: {"frames": n, "agreement": round(agreed / n, 4)}
                                for label, (n, agreed) in sorted(self.per_class.items())}
        return out


class Shadow:
    """One candidate on a thread of its own, offered the live loop's frames (see the module
    docstring); :meth:`close` ends it.

    Args:
        candidate: the candidate classifier (on the CPU; used by this thread only).
        version: the candidate's version (the records' and the reports' name for it).
        live_version: the live model's version; :meth:`restart` when it changes.
        share: the most of one core's time the thread uses, in (0, 1].
        threshold: ``--threshold``, applied to the candidate as to the live model.
        writer: where disagreeing frames go (the data root's ``shadow/``); None: not saved.
        rate: the per-minute limit the run's automatic writers share.
        status: told the overall agreement as it grows; None: nobody.
        cpu_clock: the thread's CPU seconds (tests pass a fake).
    """

    def __init__(self, candidate: FrameClassifier, version: str | None, live_version: str | None,
                 share: float = SHARE, threshold: float = 0.0,
                 writer: PictureWriter | None = None, rate: PerMinute | None = None,
                 status: StatusReporter | None = None,
                 cpu_clock: Callable[[], float] = time.thread_time) -> None:
        if not 0 < share <= 1:
            raise ValueError(f"share {share}: expected a fraction of one core in (0, 1]")
        self.candidate = candidate
        self.version = version
        self.live_version = live_version
        self.share = share
        self.threshold = threshold
        self.writer = writer
        self.rate = rate
        self.status = status
        self.cpu_clock = cpu_clock
        self.skipped = 0
        """Frames offered while the shadow was busy or resting (not compared)."""
        self.saved = 0
        """Disagreeing frames saved."""
        self.over_rate = 0
        """Disagreeing frames not saved because of the per-minute limit."""
        self.stopped: str | None = None
        """Why saving stopped (a limit reached, an error), None while it goes on."""
        self.error: str | None = None
        """Why the candidate stopped classifying, None while it runs."""
        self._total, self._period = Agreement(), Agreement()
        self._lock = threading.Lock()  # guards the tallies and the hand-over below
        self._item: tuple | None = None
        self._busy = False
        self._closing = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shadow", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the live loop's side

    def offer(self, frame_bgr: np.ndarray, live: list[Prediction], source: str) -> bool:
        """Hand the frame over if the shadow is free (copied: the loop may draw on its own);
        never waits. True when taken."""
        with self._lock:
            if self._busy or self._closing.is_set():
                self.skipped += 1
                return False
            self._busy = True
            live_version = self.live_version
        self._item = (time.time(), frame_bgr.copy(), top1(live), source, live_version)
        self._wake.set()
        return True

    def restart(self, live_version: str | None) -> None:
        """The live model changed: count afresh against ``live_version``."""
        with self._lock:
            self.live_version = live_version
            self._total, self._period = Agreement(), Agreement()
        self._report(force=True)

    def total(self, per_class: bool = True) -> dict:
        """The whole run's agreement: :meth:`Agreement.to_json` with ``candidate``, ``live``
        (versions) and ``skipped``."""
        with self._lock:
            return {"candidate": self.version, "live": self.live_version,
                    **self._total.to_json(per_class), "skipped": self.skipped}

    def period(self) -> dict:
        """The agreement since the last call (a ``--summary-every`` period), counted afresh."""
        with self._lock:
            done, self._period = self._period, Agreement()
        return {"candidate": self.version, **done.to_json()}

    def close(self) -> None:
        """End the thread after the frame in hand; the status gets the final agreement."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=10.0)
        self._report(force=True)

    # ------------------------------------------------------------------ the shadow's thread

    def _report(self, force: bool = False) -> None:
        if self.status is not None:
            with self._lock:
                report = {"version": self.version, "live": self.live_version,
                          **self._total.to_json(per_class=False)}
            self.status.shadow(report, force)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing.is_set():
                return
            item, self._item = self._item, None
            if item is None:
                continue
            started = self.cpu_clock()
            try:
                self._compare(*item)
            except Exception as exc:  # a thread has no caller: said once, and the shadow stops
                self.error = " ".join(str(exc).split()) or type(exc).__name__
                log.error(f"shadow {self.candidate.model_path}: stopped: {self.error}")
                with self._lock:
                    self._closing.set()
                return
            # rest so that this thread's CPU time stays within its share of one core
            spent = max(0.0, self.cpu_clock() - started)
            if self._closing.wait(spent * (1.0 - self.share) / self.share):
                return
            with self._lock:
                self._busy = False

    def _compare(self, when: float, frame: np.ndarray, live: Prediction | None, source: str,
                 live_version: str | None) -> None:
        tensor = self.candidate.frame_tensor(frame)
        predictions, _ = self.candidate.classify_tensor(tensor, 1, self.threshold)
        mine = top1(predictions)
        with self._lock:
            if live_version != self.live_version:
                return  # offered before the live model changed: not this tally's frame
            self._period.add(live and live.label, mine and mine.label)
            same = self._total.add(live and live.label, mine and mine.label)
        self._report()
        if not same and self.writer is not None and self.stopped is None:
            self._save(when, frame, live, mine, source, live_version)

    def _save(self, when: float, frame: np.ndarray, live: Prediction | None,
              mine: Prediction | None, source: str, live_version: str | None) -> None:
        if self.rate is not None and not self.rate.take():
            self.over_rate += 1
            return

        def side(p: Prediction | None, version: str | None) -> dict:
            return {"label": p and p.label, "score": p and round(float(p.score), 5),
                    "version": version}

        try:
            self.writer.save(frame, None, when=when, record={
                "live": side(live, live_version), "candidate": side(mine, self.version),
                "source": source})
            self.saved += 1
        except (CaptureError, OSError) as exc:
            self.stopped = str(exc)
            log.warning(f"shadow: saving disagreements stopped: {exc}")


class ShadowWatch:
    """Which candidate the shadow runs: the model ``path`` leads to, loaded aside by a
    :class:`~edge_runtime.stream.reload.ModelWatch` when the path is switched underneath; none
    while ``path`` does not exist.

    Args:
        path: the candidate's path as given (through ``ROOT/staged`` on a device).
        load: the resolved path → a classifier on the CPU (raising on a bad model).
        poll_s: seconds between two looks at ``path``.
        clock: seconds, monotonic (tests pass a fake).
        initial: the candidate ``path`` leads to now, already loaded (None: loaded aside).
    """

    def __init__(self, path: str | os.PathLike, load: Callable[[str], FrameClassifier],
                 poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic,
                 initial: FrameClassifier | None = None) -> None:
        self.path = os.fspath(path)
        self.poll_s = poll_s
        self._clock = clock
        self._watch = ModelWatch(self.path, load, poll_s, what="shadow model")
        self._initial = initial
        self._present = initial is not None
        self._next_look = clock()

    GONE = "gone"
    """:meth:`__call__`'s answer when the path no longer exists."""

    def __call__(self) -> FrameClassifier | str | None:
        """Asked between two frames: a newly loaded candidate, :data:`GONE` when the path
        disappeared, else None."""
        if self._initial is not None:
            initial, self._initial = self._initial, None
            return initial
        now = self._clock()
        if now >= self._next_look:
            self._next_look = now + self.poll_s
            present = os.path.exists(self.path)
            if present != self._present:
                self._present = present
                if not present:
                    return self.GONE
                self._watch.request()  # (again) there: load it, even if it leads where it did
        return self._watch() if self._present else None


class ShadowRun:
    """The camera run's shadow: the candidate :class:`ShadowWatch` names, started, replaced
    and ended as it changes; never the live model itself.

    Args:
        watch: which candidate.
        version_of: a model path → its version (the store's, else its sha256[:12]).
        live_model: the live model's path.
        make_writer: the data root's ``shadow/`` writer, made when the first shadow starts
            (None: disagreements are not saved).
        rate, status, share, threshold: as :class:`Shadow`'s.
    """

    def __init__(self, watch: ShadowWatch, version_of: Callable[[str], str | None],
                 live_model: str | os.PathLike, share: float = SHARE, threshold: float = 0.0,
                 make_writer: Callable[[], PictureWriter] | None = None,
                 rate: PerMinute | None = None, status: StatusReporter | None = None) -> None:
        self.watch = watch
        self.version_of = version_of
        self.live_version = version_of(os.fspath(live_model))
        self.share = share
        self.threshold = threshold
        self.make_writer = make_writer
        self.rate = rate
        self.status = status
        self.shadow: Shadow | None = None
        self.ended: list[Shadow] = []
        """Shadows replaced or ended during the run, for the closing line."""
        self._writer: PictureWriter | None = None

    def frame(self, frame_bgr: np.ndarray, live: list[Prediction], source: str) -> None:
        """A classified frame (the live loop's thread): the watch asked, the frame offered."""
        found = self.watch()
        if found is ShadowWatch.GONE:
            self._end("its path is gone")
        elif found is not None:
            self._start(found)
        if self.shadow is not None:
            if self.shadow.error is not None:
                self._end("it failed")
            else:
                self.shadow.offer(frame_bgr, live, source)

    def live_changed(self, live_model: str | os.PathLike) -> None:
        """A reload swapped a new live model in: the agreement is counted afresh against it
        (and a candidate that is now the live model itself ends)."""
        self.live_version = self.version_of(os.fspath(live_model))
        if self.shadow is None:
            return
        if self.shadow.version == self.live_version:
            self._end("it is the live model now")
        else:
            self.shadow.restart(self.live_version)

    def _start(self, candidate: FrameClassifier) -> None:
        version = self.version_of(os.fspath(candidate.model_path))
        self._end("a new candidate replaces it")
        if version is not None and version == self.live_version:
            log.info(f"shadow: {candidate.model_path} is the live model's version {version}: "
                     "nothing to compare")
            return
        if self._writer is None and self.make_writer is not None:
            try:
                self._writer = self.make_writer()
            except CaptureError as exc:
                log.warning(f"shadow: disagreeing frames will not be saved: {exc}")
                self.make_writer = None
        self.shadow = Shadow(candidate, version, self.live_version, self.share, self.threshold,
                             self._writer, self.rate, self.status)
        log.info(f"shadow: {candidate.model_path} (version {version}) runs beside the live "
                 f"model (version {self.live_version}), on at most {self.share:.0%} of a core")

    def _end(self, why: str) -> None:
        if self.shadow is None:
            return
        shadow, self.shadow = self.shadow, None
        shadow.close()
        self.ended.append(shadow)
        if self.status is not None:
            self.status.shadow(None, force=True)
        log.info(f"shadow {shadow.version} ended ({why}): {shadow_words(shadow.total())}")

    def total(self) -> dict | None:
        """The running shadow's whole agreement (:meth:`Shadow.total`), None without one."""
        return self.shadow.total() if self.shadow is not None else None

    def period(self) -> dict | None:
        """The running shadow's agreement over the period, None without one."""
        return self.shadow.period() if self.shadow is not None else None

    def latest(self) -> dict | None:
        """For the live view: ``{"candidate", "frames", "agreement"}``, None without a shadow."""
        if self.shadow is None:
            return None
        total = self.shadow.total(per_class=False)
        return {key: total[key] for key in ("candidate", "frames", "agreement")}

    def close(self) -> str | None:
        """End the shadow; the closing line (the disagreeing frames saved), None if none ran."""
        if self.shadow is not None:
            self.shadow.close()
            self.ended.append(self.shadow)
            self.shadow = None
        if not self.ended:
            return None
        saved = sum(s.saved for s in self.ended)
        over = sum(s.over_rate for s in self.ended)
        skipped = sum(s.skipped for s in self.ended)
        stopped = next((s.stopped for s in self.ended if s.stopped), None)
        where = f" in {self._writer.root}" if self._writer is not None else ""
        line = (f"shadow: {saved} disagreeing frame(s) saved{where}, {over} over "
                f"--max-per-minute; {skipped} frame(s) offered while it was busy")
        return line + (f"; stopped saving: {stopped}" if stopped else "")
