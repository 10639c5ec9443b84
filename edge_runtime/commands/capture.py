"""edge-capture: take training pictures with the device's own camera, into the data root.

    edge-capture --camera --label cup --count 50 --every 0.5

Pictures go to the device's data root, captures/<label>/ ($EDGE_DATA_ROOT, else ~/edge-data:
where edge-collect fetches them), each with a line in captures/index.jsonl (time, label,
source); --out DIR puts them in DIR/<label>/ with DIR/index.jsonl instead. Frames are saved as JPEG as the camera gives them (its full field of view, before any resize
a model does), under new names that never overwrite a picture. Without a terminal (a service,
ssh without -t) a line a picture is printed, else one progress line. --serve adds the live
view with its capture panel (no model needed): pick or type a label in the browser and take a
snapshot or a burst; saving always needs the token the URL carries. The camera grammar is
edge-classify's (--camera auto|picam[:N]|N|/dev/videoN|VIDEO|URL). TensorFlow-free.

Exit codes: 0 --count pictures saved, the video ended, or stopped by Ctrl-C or SIGTERM (its
normal end, when no --count); 1 stopped early: --max-mb reached, the disk nearly full (under
--min-free-mb free), or the camera stopped delivering (what was saved stays); 2 bad usage: a
label with a path separator, '..' or a control character, a camera that cannot be opened,
an unwritable --out or data root; 3 internal error.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from common.argtypes import (
    Parser,
    add_verbosity,
    non_negative_float,
    positive_float,
    positive_int,
)
from common.command import run_main, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from edge_runtime.commands.camera_flags import camera_size, serve_address, serve_token
from edge_runtime.sources.camera_spec import DEFAULT_SIZE

PROG = "edge-capture"

log = logging.getLogger("edge_runtime.commands.capture")


def build_parser() -> argparse.ArgumentParser:
    """The ``edge-capture`` argument parser."""
    from edge_runtime.capture.writer import MIN_FREE_MB

    p = Parser(prog=PROG, description=__doc__.split("\n\n", 1)[1].split("\n\nExit codes")[0],
               epilog="Example: edge-capture --camera --label cup --count 50 --every 0.5   |   "
                      "in a browser: edge-capture --camera --serve 8080")
    p.add_argument("--camera", nargs="?", const="auto", default="auto", metavar="SOURCE",
                   help="as edge-classify --camera: auto, picam[:N], N or /dev/videoN, a video "
                        "file, an rtsp:// or http(s):// stream")
    p.add_argument("--camera-size", type=camera_size, default=DEFAULT_SIZE,
                   metavar="WxH", help="frame size asked of a camera (files and streams keep "
                                       "theirs)")
    p.add_argument("--camera-wait", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="try a camera that is not there yet again for this long")
    p.add_argument("--out", metavar="DIR",
                   help="a folder of your own: pictures go to DIR/<label>/, a line each in "
                        "DIR/index.jsonl (default: the data root's captures/<label>/: "
                        "$EDGE_DATA_ROOT, else ~/edge-data)")
    p.add_argument("--label", metavar="L",
                   help="the class of what the camera sees now (one folder name: no '/', "
                        "'..' or control character); required without --serve")
    p.add_argument("--count", type=positive_int, metavar="N",
                   help="stop after N pictures (default: until Ctrl-C or the video ends)")
    p.add_argument("--every", type=non_negative_float, default=1.0, metavar="SECONDS",
                   help="time between two pictures (a video file: its own time); 0: every "
                        "frame")
    p.add_argument("--max-mb", type=positive_float, metavar="MB",
                   help="stop when the data root holds this many MB in all (captures, "
                        "uncertain and shadow frames, monitoring); with --out, after writing "
                        "this many MB into DIR (default: no limit but the disk's)")
    p.add_argument("--min-free-mb", type=non_negative_float, default=MIN_FREE_MB, metavar="MB",
                   help="stop when the disk has less free space than this (an SD card must "
                        "never fill up)")
    serve = p.add_argument_group("capture panel in a browser")
    serve.add_argument("--serve", type=serve_address, metavar="[HOST:]PORT",
                       help="the live view with its capture panel at http://HOST:PORT/ "
                            "(always with a token: saving writes to this disk)")
    serve.add_argument("--serve-token", metavar="TOKEN",
                       help="the token (default: a random one, printed in the URL)")
    serve.add_argument("--serve-token-file", metavar="FILE",
                       help="read the token from FILE (its first line) instead")
    add_verbosity(p)
    return p


def check_args(args: argparse.Namespace) -> None:
    """The combinations argparse cannot refuse by itself, and the label.

    Raises:
        UsageError: in one line.
    """
    from edge_runtime.capture.writer import check_label

    if args.label is None and args.serve is None:
        raise UsageError("give --label L (the class the camera sees), or --serve to pick "
                         "labels in a browser")
    if args.label is not None:
        check_label(args.label)
    if args.serve is None and (args.serve_token or args.serve_token_file):
        raise UsageError("--serve-token and --serve-token-file apply to --serve only")
    if args.serve_token is not None and args.serve_token_file is not None:
        raise UsageError("give --serve-token or --serve-token-file, not both")
    if args.count is not None and args.label is None:
        raise UsageError("--count applies to --label")


class Progress:
    """One line updated in place on a terminal; a line a picture elsewhere (a journal)."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.tty = sys.stderr.isatty()

    def saved(self, n: int, path) -> None:
        of = f"/{self.count}" if self.count else ""
        line = f"{PROG}: saved {n}{of}: {path}"
        if self.tty:
            print(f"\r{line}\033[K", end="", file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=sys.stderr, flush=True)


def capture(args: argparse.Namespace) -> int:
    """Carry out a checked command line; returns the exit code."""
    from edge_runtime.capture import data_root
    from edge_runtime.capture.storage import Storage
    from edge_runtime.capture.writer import CaptureLimit
    from edge_runtime.stream.camera_run import (
        CameraOptions,
        ServeOptions,
        open_camera,
        start_live_view,
    )

    storage = Storage(data_root.default_data_root(), args.max_mb, args.min_free_mb)
    writer = storage.writer(data_root.CAPTURES, args.out)
    source = open_camera(CameraOptions(camera=args.camera, size=args.camera_size,
                                       wait_s=args.camera_wait, headless=True,
                                       verbose=args.verbose))
    writer.source = source.name
    server = panel = None
    progress = Progress(args.count)
    saved, ended, limit = 0, "end", None
    try:
        if args.serve is not None:
            from edge_runtime.live.capture_panel import CapturePanel

            token, where = serve_token(args)
            panel = CapturePanel(writer, [args.label] if args.label else [])
            server = start_live_view(ServeOptions(*args.serve, token=token, token_source=where),
                                     panel)
        log.info(f"{source.name} → {writer.root}" + (f"/{args.label}/" if args.label else "/")
                 + (f", a picture every {args.every:g} s" if args.label else ""))
        due = 0.0
        started = time.monotonic()
        for number, frame in source.start().frames():
            if server is not None:
                server.publish(number, frame, {"source": f"{source.name}#{number}",
                                               "top_k": [], "latency_ms": None})
            if args.label is None:
                continue
            # a recording's own time (its frames come as fast as they decode), else the clock
            now = (number / source.fps if source.keep_all and source.fps
                   else time.monotonic() - started)
            if now < due:
                continue
            due = now + args.every
            path = writer.save(frame, args.label)
            saved += 1
            progress.saved(saved, path)
            if args.count is not None and saved >= args.count:
                ended = "count"
                break
    except KeyboardInterrupt:
        ended = "stopped"
    except CaptureLimit as exc:
        ended, limit = "limit", exc
    finally:
        source.stop()
        if server is not None:
            server.close()
        progress.end()
    total = sum(writer.saved.values())
    kept = f"{total} picture(s) saved in {writer.root}" + (
        " (" + ", ".join(f"{k} {v}" for k, v in sorted(writer.saved.items())) + ")"
        if writer.saved else "")
    if limit is not None:
        say(PROG, f"stopped: {limit}; {kept}")
        return EXIT_CHECK_FAILED
    if source.error is not None or (ended == "end" and not source.keep_all):
        reason = f": {source.error}" if source.error is not None else ""
        say(PROG, f"error: {source.name} stopped delivering frames{reason}; {kept}")
        return EXIT_CHECK_FAILED
    log.info(kept)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``edge-capture``; returns the exit code (see the module doc)."""
    def work(args) -> int:
        check_args(args)
        return capture(args)

    return run_main(build_parser(), argv, work, progress_to="stderr")


if __name__ == "__main__":
    sys.exit(main())
