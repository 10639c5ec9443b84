"""edge-classify: classify pictures, folders, a video file or a camera with an exported model.

Runs on a Raspberry Pi without TensorFlow (numpy, Pillow, a TFLite interpreter, and OpenCV
for the camera only). The model's folder is the bundle: ``manifest.json`` and ``labels.txt``
beside the ``.tflite`` file give the input size, resize method and class names; models written
by edge-export also carry both in their own TFLite metadata, so the ``.tflite`` alone works too::

    edge-classify --model runs/demo/export/model_int8.tflite photos/ 'more/*.jpg' --top-k 3
    edge-classify --model runs/demo/export/model_int8.tflite --camera            # auto, window
    edge-classify --model runs/demo/export/model_int8.tflite --camera picam      # Pi camera module
    edge-classify --model runs/demo/export/imx500/packerOut.zip --camera imx500  # AI Camera
    edge-classify --list-cameras                                                 # what is there
    edge-classify --model runs/demo/export/model_int8.tflite --camera clip.mp4 --headless --json
    edge-classify --model runs/demo/export/model_int8.tflite --camera --headless --serve 8080
    edge-classify --model model.tflite --camera --headless --camera-wait 60 --summary-every 60
    edge-classify --model model.tflite --camera --headless --save-uncertain --below 0.6
    edge-classify --model model.tflite --camera --serve 8080 --capture-to photos/
    edge-classify --model model_int8.tflite --camera --headless --shadow candidate/model_int8.tflite
    edge-classify --model ~/edge-models/current/model_int8.tflite --camera --headless --monitor

What a camera run keeps on the device goes under the data root ($EDGE_DATA_ROOT, else
~/edge-data; edge-collect fetches it): --save-uncertain and --capture-to without a folder, the
frames where a --shadow candidate disagreed, and --monitor's record a minute. A --model that
goes through edge-model's store (ROOT/current/...) runs the version `edge-model stage` staged
as its shadow, by itself.

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
import sys
from collections.abc import Sequence

from common.argtypes import (
    Parser,
    non_negative_float,
    parse_command_line,
    positive_float,
    positive_fraction,
    positive_int,
    probability,
)
from common.command import run_command, say
from common.errors import EXIT_OK, UsageError
from edge_runtime.capture import data_root
from edge_runtime.capture.storage import MAX_PER_MINUTE
from edge_runtime.capture.uncertain import DEFAULT_BELOW, UncertainOptions
from edge_runtime.commands.camera_flags import (
    TOKEN_VARIABLE,
    camera_size,
    serve_address,
    serve_token,
)
from edge_runtime.commands.inputs import expand_inputs
from edge_runtime.interpreter import BACKENDS, stream_threads
from edge_runtime.sources.camera_spec import DEFAULT_SIZE, parse_camera
from edge_runtime.sources.listing import list_cameras
from edge_runtime.stream.camera_run import CAMERA_RETRY_S, CameraOptions, ServeOptions, run_camera
from edge_runtime.stream.loop import classify_files
from edge_runtime.stream.reload import ModelLoader, ModelWatch
from edge_runtime.stream.results import ResultWriter
from edge_runtime.stream.shadow import SHARE, ShadowWatch, candidate_file, staged_candidate
from edge_runtime.stream.upload_watch import DEFAULT_UPLOAD_WAIT_S

PROG = "edge-classify"

log = logging.getLogger("edge_runtime.commands.classify")

__all__ = ["build_parser", "camera_options", "camera_run", "main", "run"]


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
                        help="classify frames: no value or 'auto' (the AI Camera when the "
                             "bundle has its imx500 network and it is connected, else the Pi "
                             "camera module if Picamera2 lists one, else camera 0), 'picam' or "
                             "'picam:N' (Pi camera N via Picamera2), 'imx500' (the Raspberry Pi "
                             "AI Camera: the network runs on its sensor; --model "
                             "BUNDLE/imx500/packerOut.zip), N or /dev/videoN (V4L2/USB camera), a "
                             "video file, or an rtsp:// or http(s):// stream")
    inputs.add_argument("--camera-size", type=camera_size, default=DEFAULT_SIZE, metavar="WxH",
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
    inputs.add_argument("--upload-wait", type=positive_float, default=DEFAULT_UPLOAD_WAIT_S,
                        metavar="SECONDS",
                        help="with the AI Camera: its network upload (as the camera starts: "
                             "minutes, the first time after boot) tells systemd the service is "
                             "alive for this long at most; then systemd restarts it")
    inputs.add_argument("--loop", action="store_true",
                        help="with --camera VIDEO_FILE: replay the video forever (demos, kiosks)")
    serve = parser.add_argument_group("live view in a browser (with --camera)")
    serve.add_argument("--serve", type=serve_address, metavar="[HOST:]PORT",
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
    keep = parser.add_argument_group("keeping pictures (with --camera)")
    keep.add_argument("--save-uncertain", nargs="?", const="", metavar="DIR",
                      help="keep frames whose top score is below --below in the data root's "
                           "uncertain/<predicted label>/ (or DIR/<predicted label>/), with a "
                           "line each in its index.jsonl (time, top-k scores, model version), "
                           "for labelling and retraining; written on a thread that drops "
                           "frames rather than slow the camera")
    keep.add_argument("--below", type=probability, default=0.5, metavar="P",
                      help="with --save-uncertain: keep frames whose top score is below P")
    keep.add_argument("--margin", type=probability, metavar="M",
                      help="with --save-uncertain: also keep frames whose top two scores are "
                           "closer than M")
    keep.add_argument("--max-per-minute", type=positive_int, default=MAX_PER_MINUTE,
                      metavar="N",
                      help="with --save-uncertain or --shadow: keep at most N frames a minute "
                           "(uncertain ones and shadow disagreements together)")
    keep.add_argument("--capture-to", nargs="?", const="", metavar="DIR",
                      help="with --serve: a capture panel in the live view saves snapshots and "
                           "bursts into the data root's captures/<label>/ (or DIR/<label>/; "
                           "the model's labels, or a typed one); the server then always "
                           "requires its token")
    keep.add_argument("--max-mb", type=positive_float, metavar="MB",
                      help="stop keeping pictures when the data root holds MB in all "
                           "(captures, uncertain and shadow frames, monitoring); a DIR given "
                           "to --save-uncertain or --capture-to: when the run wrote MB there")
    keep.add_argument("--min-free-mb", type=non_negative_float, default=200.0, metavar="MB",
                      help="stop keeping pictures when the disk has less free space than this")
    keep.add_argument("--monitor", action="store_true",
                      help="a record a minute in the data root's monitor/monitor.jsonl: class "
                           "counts, mean top-1 score, share of uncertain frames (--below with "
                           "--save-uncertain, else 0.5), "
                           "fps, SoC temperature, model version (rotated: 2 MB at most)")
    shadow = parser.add_argument_group("shadow: a candidate beside the live model (with "
                                       "--camera)")
    shadow.add_argument("--shadow", metavar="CANDIDATE",
                        help="run a candidate model (a .tflite, or a bundle folder: its file "
                             "of the --model's name) on the same frames, on the CPU and a "
                             "thread of its own that takes the newest frame when free; report "
                             "how often its top-1 agrees (overall, per class) in the summary, "
                             "--json and the live view, and save the frames where it disagrees "
                             "in the data root's shadow/. Default: the store's staged version "
                             "when --model goes through ROOT/current/")
    shadow.add_argument("--shadow-share", type=positive_fraction, default=SHARE, metavar="F",
                        help="the most of one core's time the shadow uses (it rests between "
                             "frames to stay within it)")
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


def check_inputs(args: argparse.Namespace) -> None:
    """The combinations of flags argparse cannot refuse by itself.

    Raises:
        UsageError: the first wrong combination, in one line.
    """
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
    if args.camera is None and (args.save_uncertain is not None or args.capture_to is not None
                                or args.shadow is not None or args.monitor):
        raise UsageError("--save-uncertain, --capture-to, --shadow and --monitor apply to "
                         "--camera only")
    if args.capture_to is not None and args.serve is None:
        raise UsageError("--capture-to is the live view's capture panel: add --serve [HOST:]PORT")
    if args.save_uncertain is None and (args.margin is not None or args.below != DEFAULT_BELOW):
        raise UsageError("--below and --margin apply to --save-uncertain")
    if (args.save_uncertain is None and args.shadow is None
            and args.max_per_minute != MAX_PER_MINUTE):
        raise UsageError("--max-per-minute applies to --save-uncertain and --shadow")
    if (args.save_uncertain is None and args.capture_to is None and args.shadow is None
            and not args.monitor and (args.max_mb is not None or args.min_free_mb != 200.0)):
        raise UsageError("--max-mb and --min-free-mb apply to --save-uncertain, --capture-to, "
                         "--shadow and --monitor")
    if args.serve_token is not None and args.serve_token_file is not None:
        raise UsageError("give --serve-token or --serve-token-file, not both")
    if args.serve_token is not None and not args.serve_token.strip():
        raise UsageError("--serve-token is empty")


def camera_options(args: argparse.Namespace) -> CameraOptions:
    """The camera run a checked command line with ``--camera`` asks for.

    Raises:
        UsageError: ``--loop`` with a camera or stream; a token file or variable without a token.
        CameraError: a malformed ``--camera picam:N``.
    """
    serve = None
    if args.serve is not None:
        token, source = serve_token(args)
        serve = ServeOptions(*args.serve, token=token, token_source=source,
                             fps=args.serve_fps, max_clients=args.serve_max_clients)
    uncertain = None
    if args.save_uncertain is not None:
        uncertain = UncertainOptions(args.save_uncertain or None, args.below, args.margin,
                                     args.max_per_minute, args.max_mb, args.min_free_mb)
    if args.loop and parse_camera(args.camera).kind != "file":
        raise UsageError("--loop replays a video file; a camera or stream has no end to start "
                         "over from")
    return CameraOptions(camera=args.camera, size=args.camera_size, wait_s=args.camera_wait,
                         upload_wait_s=args.upload_wait, loop=args.loop, headless=args.headless,
                         max_frames=args.max_frames,
                         summary_every_s=args.summary_every, top_k=args.top_k,
                         threshold=args.threshold, json=args.json, verbose=args.verbose,
                         serve=serve,
                         save_uncertain=uncertain,
                         capture=args.capture_to is not None, capture_to=args.capture_to or None,
                         max_mb=args.max_mb, min_free_mb=args.min_free_mb,
                         max_per_minute=args.max_per_minute, shadow_share=args.shadow_share,
                         monitor=args.monitor, data_root=str(data_root.default_data_root()))


def camera_run(args: argparse.Namespace, options: CameraOptions) -> int:
    """The camera run a checked command line asks for: its model loaded by the run's
    :class:`ModelLoader` (on the AI Camera's sensor when the run uses it, else on the CPU), and
    loaded again the same way whenever the ``--model`` path is switched underneath
    (``edge-model activate``) or on SIGHUP."""
    # all cores but one: the capture and preprocessing threads need one
    load = ModelLoader(args.camera, args.labels, args.threads or stream_threads(),
                       args.backend, args.verbose)
    classifier = load(args.model)
    return run_camera(classifier, options, ModelWatch(args.model, load), shadow_watch(args))


def shadow_watch(args: argparse.Namespace) -> ShadowWatch | None:
    """The shadow's candidate: ``--shadow``'s (loaded now, so a bad one is a usage error), else
    the store's staged version when ``--model`` goes through ``ROOT/current`` (none staged yet
    is fine); None for neither. It runs on the CPU, one interpreter thread (its labels its own).

    Raises:
        UsageError, EdgeError: ``--shadow`` names no model, or one that does not load.
    """
    load = ModelLoader(None, None, 1, args.backend, args.verbose)
    if args.shadow is None:
        staged = staged_candidate(args.model)
        return ShadowWatch(staged, load) if staged is not None else None
    path = candidate_file(args.shadow, args.model)
    if not path.is_file():
        raise UsageError(f"--shadow {args.shadow}: no such model file ({path})")
    return ShadowWatch(path, load, initial=load(path))


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; returns the exit code.

    Raises:
        UserError (UsageError, and every ``EdgeError``): reported by :func:`main`, exit code 2.
    """
    if args.list_cameras:
        print("\n".join(list_cameras(quiet=not args.verbose)), flush=True)
        return 0
    check_inputs(args)
    if args.camera is not None:
        options = camera_options(args)
        # A camera runs until it is stopped: Ctrl-C or SIGTERM (`systemctl stop`) is its
        # normal end, whenever it comes (loading, waiting for the camera, streaming), so it
        # exits 0, after the summary once frames came. (Elsewhere an interrupt gives 130.)
        try:
            return camera_run(args, options)
        except KeyboardInterrupt:
            say(PROG, "stopped (Ctrl-C or SIGTERM)")
            return EXIT_OK
    files = expand_inputs(args.paths)
    classifier = ModelLoader(None, args.labels, args.threads, args.backend,
                             args.verbose).on_cpu(args.model)
    # no table column for more classes than the model has
    writer = ResultWriter(args.json, min(args.top_k, len(classifier.labels)),
                          max(len(str(p)) for p in files),
                          max(len(label) for label in classifier.labels))
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
