"""What edge-classify's camera loop costs per frame, against each of its stages alone.

    python -m benchmarks.camera_loop --model runs/demo/export/model_int8.tflite --video clip.avi

The loop is what ``edge-classify --camera VIDEO --headless`` runs, minus printing: the capture
thread decoding frames, the preprocessing thread (BGR→RGB, resize, quantize to the input
type) and ``invoke()`` + dequantize + top-k on the calling thread, overlapped. Each stage is
also timed alone, on the calling thread:

- decode: ``cv2.VideoCapture.read()`` over the video;
- preprocess: a decoded frame → the input tensor (:meth:`Classifier.input_tensor`);
- invoke: ``invoke()`` again and again on one input already set.

With the stages overlapped a frame should cost about what the slowest stage costs, and the
goal (issue 13) is loop ≤ 1.10 × max(decode, invoke).

With ``--shadow CANDIDATE`` one more row runs the loop with a candidate beside it, as
``edge-classify --shadow`` does (:class:`~edge_runtime.stream.shadow.Shadow`, offered every
frame, on one interpreter thread, resting to stay within ``--shadow-share`` of one core). The
stated bound: the live loop keeps at least 1 − share of its frame rate (where the loop and the
shadow share a single core, the shadow's share is all it can take); the row says how many
frames the shadow compared and how many it skipped. A video file is read frame by frame
(every frame classified), so every row covers the same frames; each is measured
``--repeats`` times, interleaved, and the median is reported because the machine may be
shared (the load average is reported with it). TensorFlow is never imported.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from common.argtypes import Parser, add_verbosity, positive_fraction, positive_int
from common.command import run_main
from common.fileio import write_json
from edge_runtime.classifier import Classifier
from edge_runtime.errors import CameraError
from edge_runtime.frames import frame_to_image
from edge_runtime.interpreter import BACKENDS, available_cores, stream_threads
from edge_runtime.sources.opencv_source import OpenCVSource
from edge_runtime.stream.loop import classify_stream
from edge_runtime.stream.shadow import SHARE, Shadow

PROG = "python -m benchmarks.camera_loop"

WARMUP = 10
"""Untimed invocations first: the first ones allocate and pack weights."""

HELD_FRAMES = 30
"""Decoded frames kept in memory for timing preprocessing (cycled)."""

GOAL = 1.10
"""Loop ms/frame may be at most this times max(decode alone, invoke alone)."""


@dataclass(frozen=True)
class StageTiming:
    """One row: frames run and median wall time per frame over the repeats."""

    name: str
    frames: int
    ms_per_frame: float
    runs_ms_per_frame: tuple[float, ...]

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms_per_frame if self.ms_per_frame > 0 else 0.0


def _open(video: str):
    import cv2

    capture = cv2.VideoCapture(video)
    if not capture.isOpened():
        raise CameraError(f"cannot open video file {video}")
    return capture


def time_decode(video: str, frames: int) -> tuple[int, float]:
    """``(frames decoded, ms per frame)`` of reading ``video`` on this thread."""
    capture = _open(video)
    try:
        count = 0
        started = time.perf_counter()
        while count < frames:
            ok, _frame = capture.read()
            if not ok:
                break
            count += 1
        elapsed = time.perf_counter() - started
    finally:
        capture.release()
    if count == 0:
        raise CameraError(f"video file {video}: no frame could be decoded")
    return count, elapsed * 1000.0 / count


def held_frames(video: str, count: int = HELD_FRAMES) -> list:
    """The first ``count`` decoded BGR frames of ``video``."""
    capture = _open(video)
    try:
        frames = []
        while len(frames) < count:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    if not frames:
        raise CameraError(f"video file {video}: no frame could be decoded")
    return frames


def time_preprocess(classifier: Classifier, frames: list, count: int) -> float:
    """Milliseconds per frame → input tensor, over ``count`` frames cycled from ``frames``."""
    started = time.perf_counter()
    for i in range(count):
        classifier.input_tensor(frame_to_image(frames[i % len(frames)]))
    return (time.perf_counter() - started) * 1000.0 / count


def time_invoke(classifier: Classifier, count: int) -> float:
    """Milliseconds per ``invoke()`` on the input already set, over ``count`` calls."""
    started = time.perf_counter()
    for _ in range(count):
        classifier.invoke()
    return (time.perf_counter() - started) * 1000.0 / count


def time_loop(classifier: Classifier, video: str, frames: int) -> tuple[int, float]:
    """``(frames classified, ms per frame)`` of the camera loop over ``video``."""
    summary = classify_stream(classifier, OpenCVSource(video, keep_all=True), max_frames=frames)
    return summary.frames, summary.seconds * 1000.0 / max(1, summary.frames)


def time_loop_with_shadow(classifier: Classifier, candidate: Classifier, share: float,
                          video: str, frames: int) -> tuple[int, float, dict]:
    """``(frames classified, ms per frame, the shadow's tally)`` of the camera loop with
    ``candidate`` offered every frame as its shadow."""
    shadow = Shadow(candidate, "candidate", "live", share=share)

    def offer(number, frame, predictions, latency_ms) -> bool:
        shadow.offer(frame, predictions, f"frame#{number}")
        return True

    try:
        summary = classify_stream(classifier, OpenCVSource(video, keep_all=True),
                                  max_frames=frames, on_frame=offer)
    finally:
        shadow.close()
    return (summary.frames, summary.seconds * 1000.0 / max(1, summary.frames),
            shadow.total(per_class=False))


def measure(classifier: Classifier, video: str, frames: int, repeats: int,
            shadow: Classifier | None = None,
            share: float = SHARE) -> tuple[dict[str, StageTiming], dict | None]:
    """Time decode, preprocess, invoke and the loop (and the loop with ``shadow`` beside it),
    ``repeats`` times each, interleaved; the timings and the shadow's tally of its last run."""
    held = held_frames(video)
    classifier.set_input_tensor(classifier.input_tensor(frame_to_image(held[0])))
    for _ in range(WARMUP):
        classifier.invoke()
    runs: dict[str, list[float]] = {"decode": [], "preprocess": [], "invoke": [], "loop": []}
    if shadow is not None:
        runs["shadow"] = []
    tally = None
    count = 0
    for _ in range(repeats):
        count, ms = time_decode(video, frames)
        runs["decode"].append(ms)
        runs["preprocess"].append(time_preprocess(classifier, held, count))
        classifier.set_input_tensor(classifier.input_tensor(frame_to_image(held[0])))
        runs["invoke"].append(time_invoke(classifier, count))
        looped, ms = time_loop(classifier, video, frames)
        runs["loop"].append(ms)
        if shadow is not None:
            _, ms, tally = time_loop_with_shadow(classifier, shadow, share, video, frames)
            runs["shadow"].append(ms)
    names = {"decode": "decode alone (cv2 read)",
             "preprocess": "preprocess alone (BGR→RGB, resize, quantize)",
             "invoke": "invoke alone (bare interpreter.invoke())",
             "loop": "camera loop (stages overlapped, headless)",
             "shadow": f"camera loop with a shadow (share {share:g})"}
    return {key: StageTiming(names[key], looped if key in ("loop", "shadow") else count,
                             statistics.median(values), tuple(values))
            for key, values in runs.items()}, tally


def build_parser() -> Parser:
    """The command-line parser."""
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("--model", required=True, metavar="FILE.tflite", help="the model")
    parser.add_argument("--video", required=True, metavar="FILE",
                        help="a video file OpenCV can read (its frames feed every row)")
    parser.add_argument("--frames", type=positive_int, default=200, metavar="N",
                        help="frames per row (fewer if the video is shorter)")
    parser.add_argument("--repeats", type=positive_int, default=5, metavar="N",
                        help="times each row is run; the median is reported")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="interpreter threads (default: what edge-classify --camera uses, "
                             "every usable core but one)")
    parser.add_argument("--backend", choices=BACKENDS, help="interpreter backend to force")
    parser.add_argument("--shadow", metavar="CANDIDATE.tflite",
                        help="also time the loop with this candidate beside it as its shadow "
                             "(edge-classify --shadow)")
    parser.add_argument("--shadow-share", type=positive_fraction, default=SHARE, metavar="F",
                        help="the most of one core's time the shadow uses")
    parser.add_argument("--out", metavar="FILE.json", help="also save the result as JSON")
    add_verbosity(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print it; the exit code (:mod:`common.errors`: 2 on a bad model
    or video)."""
    return run_main(build_parser(), argv, _measure_and_report)


def _measure_and_report(args) -> int:
    load_before = os.getloadavg()
    # a bad model, backend or video is a UserError (edge_runtime.errors): one line, exit 2
    classifier = Classifier(args.model, threads=args.threads or stream_threads(),
                            backend=args.backend)
    candidate = None if args.shadow is None else Classifier(args.shadow, threads=1)
    rows, tally = measure(classifier, args.video, args.frames, args.repeats, candidate,
                          args.shadow_share)
    load_after = os.getloadavg()
    height, width = classifier.input_size
    print(f"model {os.path.basename(args.model)}: backend {classifier.backend}, "
          f"{classifier.threads} threads ({available_cores()} cores usable), input "
          f"{height}x{width} {classifier.input_dtype}; {rows['loop'].frames} frames, median of "
          f"{args.repeats} runs; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after")
    for row in rows.values():
        print(f"  {row.name:<48} {row.ms_per_frame:8.3f} ms/frame {row.fps:9.1f} FPS   runs "
              + " ".join(f"{ms:.3f}" for ms in row.runs_ms_per_frame))
    bound = max(rows["decode"].ms_per_frame, rows["invoke"].ms_per_frame)
    slowest = max(rows[k].ms_per_frame for k in ("decode", "preprocess", "invoke"))
    ratio = rows["loop"].ms_per_frame / bound
    print(f"  loop / max(decode, invoke) = {ratio:.2f} (goal ≤ {GOAL:.2f}: "
          f"{'met' if ratio <= GOAL else 'NOT met'}); loop / slowest stage = "
          f"{rows['loop'].ms_per_frame / slowest:.2f}; loop / sum of stages = "
          f"{rows['loop'].ms_per_frame / sum(rows[k].ms_per_frame for k in ('decode', 'preprocess', 'invoke')):.2f}")
    kept = None
    if candidate is not None:
        kept = rows["loop"].ms_per_frame / rows["shadow"].ms_per_frame
        bound = 1.0 - args.shadow_share
        print(f"  with the shadow the loop keeps {kept:.2f} of its frame rate (bound ≥ "
              f"{bound:.2f}: {'met' if kept >= bound else 'NOT met'}); the shadow compared "
              f"{tally['frames']} frame(s) of its last run, skipped {tally['skipped']}, "
              f"agreement {tally['agreement']}")
    if args.out:
        write_json(args.out, {
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count(), "usable_cores": available_cores(),
                        "load_average_before": load_before, "load_average_after": load_after},
            "model": str(args.model), "video": str(args.video), "backend": classifier.backend,
            "threads": classifier.threads, "repeats": args.repeats,
            "rows": {key: dict(asdict(row), fps=row.fps) for key, row in rows.items()},
            "loop_over_max_decode_invoke": ratio, "goal": GOAL,
            "shadow": None if candidate is None else {
                "candidate": str(args.shadow), "share": args.shadow_share,
                "frame_rate_kept": kept, "bound": 1.0 - args.shadow_share, **tally},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
