"""What edge-classify's camera loop costs per frame, against a bare ``interpreter.invoke()`` loop.

    python -m benchmarks.camera_loop --model runs/demo/export/model_int8.tflite --video clip.avi --frames 200

The camera loop is what ``edge-classify --camera VIDEO --headless`` runs, minus printing: the
capture thread decoding frames, BGR→RGB, resizing, quantizing the input, ``invoke()``,
dequantizing and top-k. The bare loop calls ``invoke()`` again and again on one input already
set. Their difference is what the loop adds to the model. A video file is read frame by frame
(every frame classified), so both loops run the same number of frames; each is measured
``--repeats`` times, interleaved, and the median is reported because the machine may be shared.
TensorFlow is never imported.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass

from edge_runtime.camera import CameraError, FrameGrabber, to_rgb_frame
from edge_runtime.classifier import Classifier
from edge_runtime.fileio import write_json
from edge_runtime.interpreter import BACKENDS, BackendError, ModelError
from edge_runtime.loops import classify_stream

WARMUP = 10
"""Untimed invocations first: the first ones allocate and pack weights."""


@dataclass(frozen=True)
class LoopTiming:
    """One loop's result: frames run and median wall time per frame over the repeats."""

    name: str
    frames: int
    ms_per_frame: float
    runs_ms_per_frame: tuple[float, ...]

    @property
    def fps(self) -> float:
        return 1000.0 / self.ms_per_frame if self.ms_per_frame > 0 else 0.0


def time_camera_loop(classifier: Classifier, video: str, frames: int) -> tuple[int, float]:
    """Run the camera loop over ``video`` for up to ``frames`` frames.

    Returns:
        ``(frames classified, ms per frame)``.

    Raises:
        CameraError: the video cannot be opened.
    """
    grabber = FrameGrabber(video, keep_all=True)
    summary = classify_stream(classifier, grabber, max_frames=frames)
    return summary.frames, summary.seconds * 1000.0 / max(1, summary.frames)


def time_bare_invoke(classifier: Classifier, frames: int) -> float:
    """Milliseconds per ``invoke()`` on the input already set, over ``frames`` calls."""
    started = time.perf_counter()
    for _ in range(frames):
        classifier.invoke()
    return (time.perf_counter() - started) * 1000.0 / frames


def first_frame(video: str):
    """The first frame of ``video`` as an RGB array (the bare loop's input)."""
    grabber = FrameGrabber(video, keep_all=True)
    try:
        for _number, frame in grabber.frames():
            return to_rgb_frame(frame)
    finally:
        grabber.stop()
    raise CameraError(f"video file {video}: no frame could be decoded")


def compare(classifier: Classifier, video: str, frames: int,
            repeats: int) -> tuple[LoopTiming, LoopTiming]:
    """Time the camera loop and the bare invoke loop, ``repeats`` times each, interleaved."""
    classifier.set_input(classifier.preprocess(first_frame(video)))
    for _ in range(WARMUP):
        classifier.invoke()
    loop_runs, bare_runs = [], []
    loop_frames = 0
    for _ in range(repeats):
        loop_frames, ms = time_camera_loop(classifier, video, frames)
        loop_runs.append(ms)
        # the camera loop left its last frame in the input tensor: same work either way
        bare_runs.append(time_bare_invoke(classifier, loop_frames))
    loop = LoopTiming("camera loop (capture thread + preprocess + invoke, headless)",
                      loop_frames, statistics.median(loop_runs), tuple(loop_runs))
    bare = LoopTiming("bare interpreter.invoke()", loop_frames, statistics.median(bare_runs),
                      tuple(bare_runs))
    return loop, bare


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.camera_loop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, metavar="FILE.tflite", help="the model")
    parser.add_argument("--video", required=True, metavar="FILE",
                        help="a video file OpenCV can read (its frames feed the camera loop)")
    parser.add_argument("--frames", type=_positive_int, default=200, metavar="N",
                        help="frames per loop (default: 200; fewer if the video is shorter)")
    parser.add_argument("--repeats", type=_positive_int, default=3, metavar="N",
                        help="times each loop is run; the median is reported (default: 3)")
    parser.add_argument("--threads", type=_positive_int, metavar="N",
                        help="interpreter threads (default: every core)")
    parser.add_argument("--backend", choices=BACKENDS, help="interpreter backend to force")
    parser.add_argument("--out", metavar="FILE.json", help="also save the result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print it; returns the exit code (2 on a bad model or video)."""
    args = build_parser().parse_args(argv)
    try:
        classifier = Classifier(args.model, threads=args.threads, backend=args.backend)
        loop, bare = compare(classifier, args.video, args.frames, args.repeats)
    except (ModelError, BackendError, CameraError) as exc:
        print(f"camera_loop: {exc}", file=sys.stderr)
        return 2
    height, width = classifier.input_size
    print(f"model {os.path.basename(args.model)}: backend {classifier.backend}, "
          f"{classifier.threads} threads, input {height}x{width} {classifier.input_dtype}; "
          f"{loop.frames} frames, median of {args.repeats} runs")
    for timing in (loop, bare):
        print(f"  {timing.name:<62} {timing.ms_per_frame:8.3f} ms/frame {timing.fps:9.1f} FPS")
    print(f"  {'loop overhead over invoke()':<62} "
          f"{loop.ms_per_frame - bare.ms_per_frame:8.3f} ms/frame")
    if args.out:
        write_json(args.out, {
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count()},
            "model": str(args.model), "video": str(args.video), "backend": classifier.backend,
            "threads": classifier.threads, "repeats": args.repeats,
            "rows": [dict(asdict(t), fps=t.fps) for t in (loop, bare)],
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
