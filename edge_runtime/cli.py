"""edge-classify: classify pictures, folders, a video file or a camera with an exported model.

Runs on a Raspberry Pi without TensorFlow (numpy, Pillow, a TFLite interpreter, and OpenCV
for the camera only). The model's folder is the bundle: ``manifest.json`` and ``labels.txt``
beside the ``.tflite`` file give the input size, resize method and class names::

    edge-classify --model runs/demo/export/model_int8.tflite photos/ 'more/*.jpg' --top-k 3
    edge-classify --model runs/demo/export/model_int8.tflite --camera            # camera 0, window
    edge-classify --model runs/demo/export/model_int8.tflite --camera clip.mp4 --headless --json

Exit codes: 0 success; 1 finished but some inputs could not be read (each one reported on
stderr); 2 bad usage: an unusable model or labels file, no input, a path that matches
nothing, a camera or video that cannot be opened.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from edge_runtime.camera import (
    CameraError,
    FrameGrabber,
    display_available,
    parse_source,
    to_rgb_frame,
    window_supported,
)
from edge_runtime.classifier import Classifier, Prediction
from edge_runtime.image import IMAGE_EXTENSIONS, ImageError, is_image_file
from edge_runtime.interpreter import BACKENDS, BackendError, ModelError
from edge_runtime.quiet import quiet_output

PROG = "edge-classify"
WINDOW_TITLE = "edge-classify (q or Esc to quit)"

FrameCallback = Callable[[int, np.ndarray, list[Prediction], float], bool]
"""``(frame number, BGR frame, predictions, latency ms)`` → False to stop the stream."""


class UsageError(ValueError):
    """The command line asks for something that cannot be done (exit code 2)."""


# ----------------------------------------------------------------------------- inputs

def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and is_image_file(p) and not _is_hidden(p, root))


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Turn command-line inputs into the image files to classify, in order, without repeats.

    A file is taken as given (even without an image suffix: reading it decides);
    a folder gives its image files recursively; anything else is a glob pattern,
    expanded here so that quoted patterns work too (``**`` recurses), keeping the
    image files and the images inside matched folders.

    Raises:
        UsageError: an input matches no file, or a folder holds no image file.
    """
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = folder_images(path)
            if not images:
                raise UsageError(f"folder {pattern} holds no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
            found.extend(images)
        elif glob.has_magic(pattern):
            images = []
            for match in sorted(glob.glob(pattern, recursive=True)):
                match_path = Path(match)
                if match_path.is_dir():
                    images.extend(folder_images(match_path))
                elif match_path.is_file() and is_image_file(match_path):
                    images.append(match_path)
            if not images:
                raise UsageError(f"pattern {pattern!r} matches no image file")
            found.extend(images)
        else:
            raise UsageError(f"{pattern}: no such file or folder")
    return list(dict.fromkeys(found))


# ----------------------------------------------------------------------------- output

def result_json(source: str, predictions: list[Prediction], latency_ms: float) -> dict:
    """The ``--json`` object for one classified picture or frame."""
    return {"source": source,
            "top_k": [{"label": p.label, "index": p.index, "score": round(p.score, 6)}
                      for p in predictions],
            "latency_ms": round(latency_ms, 3)}


class ResultWriter:
    """Writes results as JSON lines or as an aligned table with a header.

    Args:
        as_json: one JSON object per line instead of a table.
        k: the ``--top-k`` asked for (the table gets a column per extra class).
        source_width: width of the source column: the longest name, so every path is shown
            whole (to open or copy) and the columns stay aligned.
        label_width: width of a label (the longest class name).
        stream: where to write (stdout by default).
    """

    def __init__(self, as_json: bool, k: int, source_width: int, label_width: int,
                 stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.k = k
        self.source_width = max(6, source_width)
        self.label_width = max(5, label_width)
        self.stream = stream
        self._header_done = False

    def _write(self, line: str) -> None:
        # flushed per line: a camera run or a long folder is read while it runs
        print(line, file=self.stream or sys.stdout, flush=True)

    def result(self, source: str, predictions: list[Prediction], latency_ms: float) -> None:
        """Write one picture's or frame's predictions."""
        if self.as_json:
            self._write(json.dumps(result_json(source, predictions, latency_ms)))
            return
        if not self._header_done:
            self._write(self._row("SOURCE", "LABEL", "SCORE", "MS",
                                  [f"TOP-{i}" for i in range(2, self.k + 1)]))
            self._header_done = True
        best = predictions[0] if predictions else None
        others = [f"{p.label} {p.score:.3f}" for p in predictions[1:]]
        others += ["-"] * (self.k - 1 - len(others))
        self._write(self._row(source, best.label if best else "-",
                              f"{best.score:.3f}" if best else "-", f"{latency_ms:.2f}", others))

    def _row(self, source: str, label: str, score: str, ms: str, others: list[str]) -> str:
        cells = [source.ljust(self.source_width), label.ljust(self.label_width),
                 score.rjust(5), ms.rjust(8)]
        cells += [cell.ljust(self.label_width + 6) for cell in others]
        return "  ".join(cells).rstrip()

    def summary(self, name: str, summary: StreamSummary) -> None:
        """Write the closing line of a camera or video run."""
        if self.as_json:
            self._write(json.dumps(summary.to_json()))
            return
        p50 = summary.inference_ms_p50
        line = (f"{name}: {summary.frames} frames in {summary.seconds:.1f} s, "
                f"{summary.fps:.1f} fps, inference p50 "
                + (f"{p50:.2f} ms" if p50 is not None else "-"))
        if summary.dropped:
            line += f" ({summary.dropped} older frames skipped to stay live)"
        self._write(line)


def _writer(args: argparse.Namespace, classifier: Classifier, source_width: int) -> ResultWriter:
    # no table column for more classes than the model has
    return ResultWriter(args.json, min(args.top_k, len(classifier.labels)), source_width,
                        max(len(label) for label in classifier.labels))


def _say(message: object) -> None:
    """One line on stderr (an error or a note), whatever the message holds."""
    text = " ".join(str(message).split()) or type(message).__name__
    print(f"{PROG}: {text}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- files

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


# ----------------------------------------------------------------------------- camera

@dataclass
class StreamSummary:
    """What a camera or video run did."""

    frames: int = 0
    """Frames classified."""
    seconds: float = 0.0
    """Wall time from the first frame taken to the last one classified."""
    latencies_ms: list[float] = field(default_factory=list)
    """Inference time of each frame (set input, invoke, read output)."""
    dropped: int = 0
    """Camera frames replaced by a newer one before they could be classified."""
    ended_by: str = ""
    """Why it ended: "end" (source exhausted), "max-frames", "stop" (window) or "interrupt"."""

    @property
    def fps(self) -> float:
        """Frames classified per second of wall time (capture, preprocess, inference, output)."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def inference_ms_p50(self) -> float | None:
        """Median inference time, None when no frame was classified."""
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    def to_json(self) -> dict:
        """The ``{"summary": ...}`` object that ends a ``--json`` camera run."""
        p50 = self.inference_ms_p50
        return {"summary": {"frames": self.frames, "fps": round(self.fps, 3),
                            "inference_ms_p50": round(p50, 3) if p50 is not None else None}}


def classify_stream(classifier: Classifier, grabber: FrameGrabber, k: int = 3,
                    threshold: float = 0.0, max_frames: int | None = None,
                    on_frame: FrameCallback | None = None) -> StreamSummary:
    """Classify frames from a running :class:`FrameGrabber` until it ends.

    Each frame is the newest one captured (see :mod:`edge_runtime.camera`),
    converted from OpenCV's BGR to RGB before preprocessing. Ctrl-C ends the
    run like the end of the video does: the summary is still returned.

    Args:
        classifier: the model to run.
        grabber: an opened frame source.
        k, threshold: passed to :meth:`Classifier.classify`.
        max_frames: stop after this many frames (None: until the source ends).
        on_frame: called after each frame; returning False stops the run.

    Returns:
        The run's :class:`StreamSummary`.
    """
    summary = StreamSummary()
    started = time.perf_counter()
    try:
        for number, frame in grabber.frames():
            predictions, latency_ms = classifier.classify(to_rgb_frame(frame), k, threshold)
            # count a frame once its result is out: Ctrl-C in between must not leave the
            # summary claiming a frame nobody saw
            keep_going = on_frame is None or on_frame(number, frame, predictions, latency_ms)
            summary.frames += 1
            summary.latencies_ms.append(latency_ms)
            if not keep_going:
                summary.ended_by = "stop"
                break
            if max_frames is not None and summary.frames >= max_frames:
                summary.ended_by = "max-frames"
                break
        else:
            summary.ended_by = "end"
    except KeyboardInterrupt:
        summary.ended_by = "interrupt"
    finally:
        summary.seconds = time.perf_counter() - started
        grabber.stop()
        summary.dropped = grabber.dropped
    return summary


class PreviewWindow:
    """An OpenCV window showing each frame with its top label, score and the frame rate.

    Args:
        title: the window title.
        pace_fps: show at most this many frames a second (a video file's own rate,
            so it plays at normal speed instead of as fast as it decodes); 0: no limit.

    Raises:
        cv2.error: this OpenCV build has no GUI support (opencv-python-headless).
    """

    def __init__(self, title: str = WINDOW_TITLE, pace_fps: float = 0.0) -> None:
        import cv2

        self.title = title
        self._interval = 1.0 / pace_fps if pace_fps > 0 else 0.0
        self._times: deque[float] = deque(maxlen=30)
        self._shown = 0.0  # when the previous frame went on screen
        # the pip wheels' Qt warns at length about fonts it does not need (text is drawn by OpenCV)
        os.environ.setdefault("QT_LOGGING_RULES", "default.warning=false")
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def fps(self) -> float:
        """Frame rate over the last 30 frames."""
        if len(self._times) < 2:
            return 0.0
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])

    def show(self, frame: np.ndarray, predictions: list[Prediction]) -> bool:
        """Draw and show ``frame`` (BGR); False when the user pressed q/Esc or closed it."""
        import cv2

        self._times.append(time.perf_counter())
        best = predictions[0] if predictions else None
        lines = [f"{best.label} {best.score:.2f}" if best else "-", f"{self.fps():.1f} FPS"]
        scale = max(0.5, frame.shape[0] / 480)
        for i, text in enumerate(lines):
            origin = (10, int((30 + 32 * i) * scale))
            # a dark outline under white text stays legible on any background
            cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale, (0, 0, 0),
                        int(4 * scale), cv2.LINE_AA)
            cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                        (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
        cv2.imshow(self.title, frame)
        wait_s = self._shown + self._interval - time.perf_counter()
        key = cv2.waitKey(max(1, round(wait_s * 1000))) & 0xFF  # waiting keeps the window live
        self._shown = time.perf_counter()
        if key in (ord("q"), 27):
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        """Close the window."""
        import cv2

        cv2.destroyWindow(self.title)
        cv2.waitKey(1)  # lets the GUI backend process the close


def _open_window(headless: bool, verbose: bool, pace_fps: float) -> PreviewWindow | None:
    if headless:
        return None
    if not display_available():
        if verbose:
            _say("no display (DISPLAY/WAYLAND_DISPLAY unset): printing one line per frame")
        return None
    if not window_supported():
        _say("OpenCV cannot open a window on this display: printing one line per frame "
               "(pass --headless to skip this check)")
        return None
    import cv2

    try:
        return PreviewWindow(pace_fps=pace_fps)
    except cv2.error as exc:
        _say(f"cannot open a window ({exc}): printing one line per frame")
        return None


def _run_camera(args: argparse.Namespace, classifier: Classifier) -> int:
    source = parse_source(args.camera)
    # FFmpeg logs decoding trouble of a file that is not a video straight to fd 2
    with quiet_output(not args.verbose):
        grabber = FrameGrabber(source, quiet=not args.verbose)
    try:
        # a recording plays at its own speed on screen; a camera delivers at its own pace
        window = _open_window(args.headless, args.verbose,
                              grabber.fps if grabber.keep_all else 0.0)
    except BaseException:
        grabber.stop()
        raise
    if args.verbose:
        mode = "every frame" if grabber.keep_all else "newest frame only"
        rate = f", {grabber.fps:g} fps nominal" if grabber.fps else ""
        _say(f"reading {grabber.name} ({mode}{rate}), "
               + ("showing a window" if window else "headless"))
    writer = _writer(args, classifier, len(grabber.name) + 7)

    def on_frame(number: int, frame: np.ndarray, predictions: list[Prediction],
                 latency_ms: float) -> bool:
        # JSON consumers get every frame even when a window shows them too
        if window is None or args.json:
            writer.result(f"{grabber.name}#{number}", predictions, latency_ms)
        return window.show(frame, predictions) if window is not None else True

    try:
        summary = classify_stream(classifier, grabber.start(), args.top_k, args.threshold,
                                  args.max_frames, on_frame)
    finally:
        if window is not None:
            window.close()
    writer.summary(grabber.name, summary)
    if grabber.error is not None:
        _say(f"{grabber.name}: reading frames failed: {grabber.error}")
        return 1
    if summary.ended_by == "end" and isinstance(source, int):
        _say(f"{grabber.name} stopped delivering frames")
        return 1
    return 0


# ----------------------------------------------------------------------------- command line

class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows real defaults; None/False/[] defaults are described in the help text instead."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.default == []:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``edge-classify`` argument parser."""
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=_Formatter)
    model = parser.add_argument_group("model")
    model.add_argument("--model", required=True, metavar="FILE.tflite",
                       help="the .tflite model; manifest.json and labels.txt are read from "
                            "its folder")
    model.add_argument("--labels", metavar="FILE",
                       help="class names, one per line (default: labels.txt beside the model, "
                            "else the manifest's)")
    model.add_argument("--threads", type=_positive_int, metavar="N",
                       help="interpreter CPU threads (default: every core)")
    model.add_argument("--backend", choices=BACKENDS,
                       help="interpreter to use (default: the first of these that works)")
    inputs = parser.add_argument_group("input (image paths or --camera)")
    inputs.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files, folders (searched recursively) or glob patterns "
                             "such as 'photos/**/*.jpg'")
    inputs.add_argument("--camera", nargs="?", const="0", metavar="INDEX|VIDEO_FILE",
                        help="classify a live camera (an index; no value: camera 0) or a "
                             "video file, frame by frame")
    inputs.add_argument("--headless", action="store_true",
                        help="with --camera: print one line per frame instead of showing a "
                             "window (automatic on Linux without DISPLAY/WAYLAND_DISPLAY)")
    inputs.add_argument("--max-frames", type=_positive_int, metavar="N",
                        help="with --camera: stop after N frames (default: until the video "
                             "ends, q/Esc in the window, or Ctrl-C)")
    output = parser.add_argument_group("output")
    output.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                        help="classes reported per picture")
    output.add_argument("--threshold", type=_probability, default=0.0, metavar="P",
                        help="drop predictions whose probability is below P")
    output.add_argument("--json", action="store_true",
                        help='one JSON object per line: {"source", "top_k": [{"label", "index", '
                             '"score"}], "latency_ms"}; a camera run ends with {"summary": ...}')
    output.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr which backend runs, with how many threads, and the "
                             "model's input")
    return parser


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; returns the exit code.

    Raises:
        UsageError, ModelError, BackendError, CameraError: reported by :func:`main`.
    """
    if args.camera is not None and args.paths:
        raise UsageError("give image paths or --camera, not both")
    if args.camera is None and not args.paths:
        raise UsageError("no input: give image files, folders or glob patterns, "
                         "or --camera [INDEX|VIDEO_FILE]")
    if args.camera is None and args.max_frames is not None:
        raise UsageError("--max-frames applies to --camera only")
    files = expand_inputs(args.paths) if args.paths else []
    with quiet_output(not args.verbose):
        classifier = Classifier(args.model, args.labels, args.threads, args.backend)
    if args.verbose:
        height, width = classifier.input_size
        _say(f"backend {classifier.backend}, {classifier.threads} threads, input "
               f"{height}x{width} {classifier.input_dtype}, {len(classifier.labels)} classes, "
               f"model {classifier.model_path}")
    if args.camera is not None:
        return _run_camera(args, classifier)
    writer = _writer(args, classifier, max(len(str(p)) for p in files))
    failed = classify_files(classifier, files, args.top_k, args.threshold, writer.result,
                            lambda _path, exc: _say(exc))
    if failed > 1:
        _say(f"{failed} of {len(files)} inputs could not be read")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-classify``; returns the exit code (see the module doc)."""
    parser = build_parser()
    try:
        args = parser.parse_intermixed_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return run(args)
    except BrokenPipeError:
        # the reader (e.g. `| head`) went away: stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except (UsageError, ModelError, BackendError, CameraError) as exc:
        _say(exc)
        return 2
    except (ValueError, RuntimeError, OSError) as exc:
        # a bundle or interpreter problem outside the checks above (an unknown
        # resize method in the manifest, a model op the interpreter lacks)
        _say(f"{type(exc).__name__}: {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
