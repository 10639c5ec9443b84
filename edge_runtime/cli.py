"""edge-classify: classify pictures, folders, a video file or a camera with an exported model.

Runs on a Raspberry Pi without TensorFlow (numpy, Pillow, a TFLite interpreter, and OpenCV
for the camera only). The model's folder is the bundle: ``manifest.json`` and ``labels.txt``
beside the ``.tflite`` file give the input size, resize method and class names; models written
by edge-export also carry both in their own TFLite metadata, so the ``.tflite`` alone works too::

    edge-classify --model runs/demo/export/model_int8.tflite photos/ 'more/*.jpg' --top-k 3
    edge-classify --model runs/demo/export/model_int8.tflite --camera            # auto, window
    edge-classify --model runs/demo/export/model_int8.tflite --camera picam      # Pi camera module
    edge-classify --list-cameras                                                 # what is there
    edge-classify --model runs/demo/export/model_int8.tflite --camera clip.mp4 --headless --json
    edge-classify --model runs/demo/export/model_int8.tflite --camera --headless --serve 8080
    edge-classify --model model.tflite --camera --headless --camera-wait 60 --summary-every 60

Exit codes: 0 success, and a --camera run ended by Ctrl-C or SIGTERM (`systemctl stop`), its
normal end, at any moment; 1 finished but some inputs could not be read (each one reported on
stderr), or the camera stopped delivering frames; 2 bad usage: an unusable model or labels
file, no input, a path that matches nothing, a camera or video that cannot be opened (after
--camera-wait), a --serve port in use; 3 an internal error (a bug: the traceback is saved to a
file, --verbose prints it); 130 a run over files interrupted by Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.argtypes import (
    Parser,
    non_negative_float,
    parse_command_line,
    positive_float,
    positive_int,
    probability,
)
from common.command import run_command, say
from common.errors import EXIT_OK, UsageError
from common.quiet import quiet_output
from edge_runtime.camera import FrameSource
from edge_runtime.classifier import Classifier, Prediction
from edge_runtime.errors import CameraError
from edge_runtime.inputs import expand_inputs
from edge_runtime.interpreter import BACKENDS, stream_threads
from edge_runtime.live_server import LiveServer, is_loopback, parse_address
from edge_runtime.loops import PeriodicSummary, classify_files, classify_stream
from edge_runtime.results import ResultWriter, result_json
from edge_runtime.sources import camera_size, list_cameras, open_source, parse_camera
from edge_runtime.window import open_window

PROG = "edge-classify"

CAMERA_RETRY_S = 1.0
"""Seconds between two tries to open a camera that is not there yet (``--camera-wait``)."""

TOKEN_VARIABLE = "EDGE_SERVE_TOKEN"
"""The environment variable the live view's token may come from (see :func:`serve_token`)."""

log = logging.getLogger("edge_runtime.cli")

__all__ = ["build_parser", "expand_inputs", "main", "run"]


def _writer(args: argparse.Namespace, classifier: Classifier, source_width: int) -> ResultWriter:
    # no table column for more classes than the model has
    return ResultWriter(args.json, min(args.top_k, len(classifier.labels)), source_width,
                        max(len(label) for label in classifier.labels))


def serve_token(args: argparse.Namespace) -> tuple[str | None, str]:
    """The live view's token and where it came from, to name instead of it in the log.

    ``--serve-token`` (where: ``""``, the user typed it), else ``--serve-token-file``'s first
    line (where: the file), else :data:`TOKEN_VARIABLE` (where: the variable), else none.

    Raises:
        UsageError: the file cannot be read, or the file or the variable holds no token.
    """
    if args.serve_token is not None:
        return args.serve_token, ""
    if args.serve_token_file is not None:
        path = Path(args.serve_token_file)
        try:
            lines = path.read_text(encoding="utf-8").strip().splitlines()
            token = lines[0].strip() if lines else ""
            mode = path.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise UsageError(f"--serve-token-file {path}: cannot read it ({reason})") from None
        if not token:
            raise UsageError(f"--serve-token-file {path} is empty")
        if mode & 0o077:
            log.warning(f"{path} can be read by other users: chmod 600 {path}")
        return token, str(path)
    token = os.environ.get(TOKEN_VARIABLE)
    if token is None:
        return None, ""
    if not token.strip():
        raise UsageError(f"{TOKEN_VARIABLE} is set but empty")
    return token.strip(), f"${TOKEN_VARIABLE}"


def _start_server(args: argparse.Namespace, token: tuple[str | None, str]) -> LiveServer:
    host, port = args.serve
    secret, source = token
    server = LiveServer(host, port, token=secret, max_clients=args.serve_max_clients,
                        stream_fps=args.serve_fps, title=PROG).start()
    # a token from a file or the environment stays out of the journal
    for url in server.urls(hide_token=bool(source)):
        say(PROG, f"live view: {url}")
    if source:
        say(PROG, f"the token (…) is the one in {source}")
    if is_loopback(host):
        say(PROG, f"from another computer: ssh -L {server.port}:{host}:{server.port} "
                  "USER@THIS-HOST, then open the URL there")
    return server


def open_camera(args: argparse.Namespace) -> FrameSource:
    """Open ``--camera``'s source; one that is not there yet is tried again for ``--camera-wait``
    seconds (a camera that appears seconds after boot), saying so once.

    A video file is never waited for (a missing file is a mistake to fix, not a camera still
    starting), nor is Picamera2 for ``picam`` (a missing library does not appear by itself).

    Raises:
        CameraError: it could not be opened (after the wait, when one applies).
    """
    spec = parse_camera(args.camera)
    wait_s = args.camera_wait if spec.kind != "file" else 0.0
    if wait_s and spec.kind == "picam":
        from edge_runtime.picamera import import_picamera2

        import_picamera2(not args.verbose)
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        try:
            # FFmpeg logs decoding trouble of a file that is not a video straight to fd 2
            with quiet_output(not args.verbose):
                return open_source(args.camera, args.camera_size, quiet=not args.verbose,
                                   loop=args.loop)
        except CameraError as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                if wait_s:
                    raise CameraError(f"{exc} (after waiting {wait_s:g} s for it)") from None
                raise
            if not waiting:  # one line, not one per try
                waiting = True
                log.info(f"camera {args.camera} is not there yet ({exc}); trying again every "
                         f"{CAMERA_RETRY_S:g} s for up to {wait_s:g} s")
            time.sleep(min(CAMERA_RETRY_S, left))


def _run_camera(args: argparse.Namespace, classifier: Classifier,
                token: tuple[str | None, str]) -> int:
    grabber = open_camera(args)
    server = None
    try:
        if args.serve is not None:
            server = _start_server(args, token)
        # a recording plays at its own speed on screen; a camera delivers at its own pace
        window = open_window(args.headless, args.verbose,
                             grabber.fps if grabber.keep_all else 0.0)
    except BaseException:
        grabber.stop()
        if server is not None:
            server.close()
        raise
    # a recording served to a browser plays at its own speed too, as in the window
    pace_s = (1.0 / grabber.fps if server is not None and window is None and grabber.keep_all
              and grabber.fps > 0 else 0.0)
    due = 0.0
    if args.verbose:
        mode = "every frame" if grabber.keep_all else "newest frame only"
        rate = f", {grabber.fps:g} fps nominal" if grabber.fps else ""
        log.info(f"reading {grabber.name} ({mode}{rate}), "
               + ("showing a window" if window else "headless"))
    writer = _writer(args, classifier, len(grabber.name) + 7)
    periods = PeriodicSummary(args.summary_every) if args.summary_every else None

    def on_frame(number: int, frame: np.ndarray, predictions: list[Prediction],
                 latency_ms: float) -> bool:
        nonlocal due
        if pace_s:  # a recording plays at its own speed
            if due > time.perf_counter():
                time.sleep(due - time.perf_counter())
            due = max(due + pace_s, time.perf_counter())
        if periods is not None:  # a line a period instead of one a frame
            period = periods.add(predictions, latency_ms)
            if period is not None:
                writer.period(grabber.name, period)
        # JSON consumers get every frame even when a window shows them too
        elif window is None or args.json:
            writer.result(f"{grabber.name}#{number}", predictions, latency_ms)
        if server is not None:  # before the window draws on the frame
            server.publish(number, frame,
                           result_json(f"{grabber.name}#{number}", predictions, latency_ms))
        return window.show(frame, predictions) if window is not None else True

    try:
        # Ctrl-C and SIGTERM (run_command turns it into KeyboardInterrupt) end the stream
        # with its summary
        summary = classify_stream(classifier, grabber.start(), args.top_k, args.threshold,
                                  args.max_frames, on_frame)
    finally:
        if window is not None:
            window.close()
        if server is not None:
            server.close()
    writer.summary(grabber.name, summary)
    if grabber.error is not None:
        log.error(f"{grabber.name}: reading frames failed: {grabber.error}")
        return 1
    if summary.ended_by == "end" and not grabber.keep_all:
        log.error(f"{grabber.name} stopped delivering frames")
        return 1
    return 0


def _serve_address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The ``edge-classify`` argument parser."""
    parser = Parser(prog=PROG, description=__doc__)
    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="FILE.tflite",
                       help="the .tflite model; manifest.json and labels.txt are read from "
                            "its folder")
    model.add_argument("--labels", metavar="FILE",
                       help="class names, one per line (default: labels.txt beside the model, "
                            "else the model's own metadata, else the manifest's)")
    model.add_argument("--threads", type=positive_int, metavar="N",
                       help="interpreter CPU threads (default: every usable core for files; "
                            "all but one with --camera, which leaves a core to capture and "
                            "preprocess the next frame)")
    model.add_argument("--backend", choices=BACKENDS,
                       help="interpreter to use (default: the first of these that works)")
    inputs = parser.add_argument_group("input (image paths or --camera)")
    inputs.add_argument("paths", nargs="*", metavar="PATH",
                        help="image files, folders (searched recursively) or glob patterns "
                             "such as 'photos/**/*.jpg'")
    inputs.add_argument("--camera", nargs="?", const="auto", metavar="SOURCE",
                        help="classify frames: no value or 'auto' (the Pi camera module if "
                             "Picamera2 lists one, else camera 0), 'picam' or 'picam:N' (Pi "
                             "camera N via Picamera2), N or /dev/videoN (V4L2/USB camera), a "
                             "video file, or an rtsp:// or http(s):// stream")
    inputs.add_argument("--camera-size", type=camera_size, default=(640, 480), metavar="WxH",
                        help="frame size asked of a camera (files and streams keep theirs)")
    inputs.add_argument("--list-cameras", action="store_true",
                        help="list the Pi cameras (Picamera2) and /dev/video* devices here, "
                             "with the --camera value for each, and exit (needs no --model)")
    inputs.add_argument("--headless", action="store_true",
                        help="with --camera: print one line per frame instead of showing a "
                             "window (automatic on Linux without DISPLAY/WAYLAND_DISPLAY)")
    inputs.add_argument("--max-frames", type=positive_int, metavar="N",
                        help="with --camera: stop after N frames (default: until the video "
                             "ends, q/Esc in the window, or Ctrl-C)")
    inputs.add_argument("--camera-wait", type=non_negative_float, default=0.0,
                        metavar="SECONDS",
                        help="with --camera: a camera or stream that is not there yet (one "
                             "that appears seconds after boot) is tried again every "
                             f"{CAMERA_RETRY_S:g} s for this long before exit code 2; a "
                             "video file is never waited for")
    inputs.add_argument("--loop", action="store_true",
                        help="with --camera VIDEO_FILE: replay the video forever (demos, kiosks)")
    serve = parser.add_argument_group("live view in a browser (with --camera)")
    serve.add_argument("--serve", type=_serve_address, metavar="[HOST:]PORT",
                       help="serve the picture, the top-k, FPS and inference time at "
                            "http://HOST:PORT/ (HOST default 127.0.0.1: this machine only, "
                            "reach it with ssh -L; 0.0.0.0: the network, with a token); a "
                            "video file is then played at its own speed")
    serve.add_argument("--serve-token", metavar="TOKEN",
                       help="the token every request must carry as ?token= (default: a random "
                            "one when HOST is not loopback, none on loopback); ps shows a "
                            "command line to every user: a service uses --serve-token-file or "
                            f"${TOKEN_VARIABLE}")
    serve.add_argument("--serve-token-file", metavar="FILE",
                       help="read the token from FILE (its first line; keep it chmod 600) "
                            "instead of the command line, where ps shows it; the printed URL "
                            f"then hides it. Without either flag, ${TOKEN_VARIABLE} gives "
                            "the token when it is set (a systemd EnvironmentFile=)")
    serve.add_argument("--serve-fps", type=positive_int, default=15, metavar="N",
                       help="most frames a second sent to each browser")
    serve.add_argument("--serve-max-clients", type=positive_int, default=4, metavar="N",
                       help="browsers streaming at once; more get 503")
    output = parser.add_argument_group("output")
    output.add_argument("--top-k", type=positive_int, default=3, metavar="K",
                        help="classes reported per picture")
    output.add_argument("--threshold", type=probability, default=0.0, metavar="P",
                        help="drop predictions whose probability is below P")
    output.add_argument("--json", action="store_true",
                        help='one JSON object per line: {"source", "top_k": [{"label", "index", '
                             '"score"}], "latency_ms"}; a camera run ends with {"summary": ...}')
    output.add_argument("--summary-every", type=positive_float, metavar="SECONDS",
                        help="with --camera: instead of a line per frame, one line every "
                             "SECONDS: frames, fps, inference p50 and the label most often "
                             'first ({"period": ...} with --json), for a log that must stay '
                             "small, such as a service's journal (default: a line per frame)")
    output.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr which backend runs, with how many threads, and the "
                             "model's input; an internal error prints its traceback")
    return parser


def _load_classifier(args: argparse.Namespace) -> Classifier:
    with quiet_output(not args.verbose):
        threads = args.threads or (stream_threads() if args.camera is not None else None)
        classifier = Classifier(args.model, args.labels, threads, args.backend)
    if args.verbose:
        height, width = classifier.input_size
        log.info(f"backend {classifier.backend}, {classifier.threads} threads, input "
                 f"{height}x{width} {classifier.input_dtype}, {len(classifier.labels)} "
                 f"classes, model {classifier.model_path}")
    return classifier


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; returns the exit code.

    Raises:
        UserError (UsageError, and every ``EdgeError``): reported by :func:`main`, exit code 2.
    """
    if args.list_cameras:
        print("\n".join(list_cameras(quiet=not args.verbose)), flush=True)
        return 0
    if args.model is None:
        raise UsageError("the following arguments are required: --model")
    if args.camera is not None and args.paths:
        raise UsageError("give image paths or --camera, not both")
    if args.camera is None and not args.paths:
        raise UsageError("no input: give image files, folders or glob patterns, "
                         "or --camera [SOURCE]")
    for flag, value in (("--max-frames", args.max_frames), ("--camera-wait", args.camera_wait),
                        ("--summary-every", args.summary_every)):
        if args.camera is None and value:
            raise UsageError(f"{flag} applies to --camera only")
    if args.camera is None and (args.serve is not None or args.loop):
        raise UsageError("--serve and --loop apply to --camera only")
    if args.serve is None and (args.serve_token is not None
                               or args.serve_token_file is not None):
        raise UsageError("--serve-token and --serve-token-file apply to --serve only")
    if args.serve_token is not None and args.serve_token_file is not None:
        raise UsageError("give --serve-token or --serve-token-file, not both")
    if args.serve_token is not None and not args.serve_token.strip():
        raise UsageError("--serve-token is empty")
    token = serve_token(args) if args.serve is not None else (None, "")
    if args.loop and parse_camera(args.camera).kind != "file":
        raise UsageError("--loop replays a video file; a camera or stream has no end to start "
                         "over from")
    if args.camera is not None:
        # A camera runs until it is stopped: Ctrl-C or SIGTERM (`systemctl stop`) is its
        # normal end, whenever it comes (loading, waiting for the camera, streaming), so it
        # exits 0, after the summary once frames came. (Elsewhere an interrupt gives 130.)
        try:
            return _run_camera(args, _load_classifier(args), token)
        except KeyboardInterrupt:
            say(PROG, "stopped (Ctrl-C or SIGTERM)")
            return EXIT_OK
    files = expand_inputs(args.paths)
    classifier = _load_classifier(args)
    writer = _writer(args, classifier, max(len(str(p)) for p in files))
    failed = classify_files(classifier, files, args.top_k, args.threshold, writer.result,
                            lambda _path, exc: say(PROG, exc))
    if failed > 1:
        say(PROG, f"{failed} of {len(files)} inputs could not be read")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-classify``; returns the exit code (see the module doc)."""
    args = parse_command_line(lambda: build_parser().parse_intermixed_args(argv))
    if isinstance(args, int):
        return args
    # stdout carries the results (a table or JSON lines): every note goes to stderr
    return run_command(PROG, lambda: run(args), needs_tensorflow=False, verbose=args.verbose,
                       progress_to="stderr")


if __name__ == "__main__":
    sys.exit(main())
