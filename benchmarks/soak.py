"""Soak: does a long camera run keep its memory and file descriptors flat?

    python -m benchmarks.soak --model runs/pets/export/model_int8.tflite            # 30 min
    python -m benchmarks.soak --model runs/pets/export/model_int8.tflite --minutes 3 --out soak.json

Runs ``edge-classify --camera VIDEO --loop --headless --serve 127.0.0.1:0`` (a recording replayed
forever at its own speed, as a kiosk does) with a client that watches ``/stream.mjpg`` and asks
``/predictions`` every second, reconnecting whenever the stream ends — as a browser left open
does. Every ``--interval`` seconds it samples the process's resident memory (``VmRSS``), open file
descriptors and threads from ``/proc``. The first ``--warmup`` seconds (interpreter arenas, JPEG
buffers, the first client) are left out of the fit; the least-squares slope of the rest is
reported per hour: the goal is flat. Without ``--video`` a 640x480 MJPG clip of moving shapes is
written to a temporary folder (the size a camera gives). TensorFlow-free (the ``edge`` extra).
Linux only (``/proc``).

Exit codes: 0 the soak ran (its verdict is in the report: ``flat`` or not); 1 edge-classify
ended early or did not exit 0 when stopped; 2 bad usage (no model, no /proc); 3 an internal
error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common.argtypes import Parser, parse_command_line, positive_float
from common.command import run_command, say
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError
from common.fileio import write_json

PROG = "python -m benchmarks.soak"
RSS_FLAT_MB_PER_HOUR = 2.0
"""Resident memory growing slower than this is flat (a service running a month: < 1.5 GB would
still be too much, but a fit over minutes cannot resolve less than about this on a busy host)."""
FDS_FLAT_PER_HOUR = 1.0
"""Open file descriptors: a leak of one per connection shows as tens an hour with the client."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("--model", required=True, metavar="FILE.tflite",
                        help="the model (its bundle's labels.txt and manifest.json beside it)")
    parser.add_argument("--video", metavar="FILE",
                        help="the recording to loop (default: a generated 640x480 MJPG clip)")
    parser.add_argument("--minutes", type=positive_float, default=30.0, metavar="M",
                        help="how long to soak")
    parser.add_argument("--interval", type=positive_float, default=5.0, metavar="SECONDS",
                        help="seconds between two samples")
    parser.add_argument("--warmup", type=positive_float, default=60.0, metavar="SECONDS",
                        help="seconds left out of the fit at the start (never more than a third "
                             "of the run)")
    parser.add_argument("--out", type=Path, metavar="FILE.json",
                        help="write the samples and the fit here (atomically)")
    return parser


def synthetic_video(path: Path, seconds: float = 10.0, fps: float = 30.0,
                    size: tuple[int, int] = (640, 480)) -> Path:
    """A clip of a coloured disc moving over a gradient: frames that differ, as a camera's do."""
    import cv2

    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise UsageError("OpenCV cannot write an MJPG video here: give --video FILE")
    ramp = np.linspace(0, 255, width, dtype=np.uint8)
    for i in range(int(seconds * fps)):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = ramp[None, :, None]
        frame[..., 1] = (i * 3) % 256
        cv2.circle(frame, (int((i * 7) % width), height // 2), 60,
                   ((i * 11) % 256, 40, 200), -1)
        writer.write(frame)
    writer.release()
    return path


def sample(pid: int) -> dict:
    """The process's resident memory (MB), open descriptors and threads, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kb = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    return {"rss_mb": rss_kb / 1024, "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": threads}


class Client:
    """A browser left open: the MJPEG stream read continuously, /predictions every second."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stop = threading.Event()
        self.stream_bytes = 0
        self.connections = 0
        self.last_frame = 0
        self._threads = [threading.Thread(target=self._stream, daemon=True),
                         threading.Thread(target=self._poll, daemon=True)]

    def start(self) -> Client:
        for thread in self._threads:
            thread.start()
        return self

    def _stream(self) -> None:
        while not self.stop.is_set():
            try:
                with urllib.request.urlopen(self.url + "/stream.mjpg", timeout=10) as stream:
                    self.connections += 1
                    started = time.monotonic()
                    # a new connection a minute: a leak per connection shows
                    while not self.stop.is_set() and time.monotonic() - started < 60:
                        chunk = stream.read(65536)
                        if not chunk:
                            break
                        self.stream_bytes += len(chunk)
            except OSError:
                self.stop.wait(1.0)

    def _poll(self) -> None:
        while not self.stop.wait(1.0):
            try:
                with urllib.request.urlopen(self.url + "/predictions", timeout=10) as answer:
                    self.last_frame = int(json.load(answer).get("frame") or 0)
            except (OSError, ValueError):
                pass

    def close(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def live_view_url(stderr, seen: list[str]) -> str | None:
    """The page a starting ``edge-classify --serve`` announces on ``stderr`` (its lines read up
    to that one, each kept in ``seen``), without the trailing slash; None when it ends first."""
    for line in stderr:
        seen.append(line)
        found = re.search(r"live view: (http://\S+)", line)
        if found:
            return found.group(1).rstrip("/")
    return None


def slope_per_hour(times: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``times`` (seconds), per hour."""
    if len(times) < 3:
        return 0.0
    return float(np.polyfit(np.asarray(times), np.asarray(values, float), 1)[0] * 3600)


def fit(samples: list[dict], warmup_s: float) -> dict:
    """Slopes and ranges over the samples after the warm-up, and the verdict."""
    end = samples[-1]["t"]
    start = min(warmup_s, end / 3)
    kept = [s for s in samples if s["t"] >= start]
    times = [s["t"] for s in kept]
    rss = slope_per_hour(times, [s["rss_mb"] for s in kept])
    fds = slope_per_hour(times, [s["fds"] for s in kept])
    flat = abs(rss) < RSS_FLAT_MB_PER_HOUR and abs(fds) < FDS_FLAT_PER_HOUR
    return {"fitted_from_s": round(start, 1), "samples": len(kept),
            "rss_mb": {"first": round(kept[0]["rss_mb"], 1), "last": round(kept[-1]["rss_mb"], 1),
                       "min": round(min(s["rss_mb"] for s in kept), 1),
                       "max": round(max(s["rss_mb"] for s in kept), 1),
                       "slope_per_hour": round(rss, 2)},
            "fds": {"min": min(s["fds"] for s in kept), "max": max(s["fds"] for s in kept),
                    "slope_per_hour": round(fds, 2)},
            "threads": {"min": min(s["threads"] for s in kept),
                        "max": max(s["threads"] for s in kept)},
            "verdict": "flat" if flat else "growing"}


def soak(args: argparse.Namespace) -> int:
    if not Path("/proc/self/status").is_file():
        raise UsageError("the soak reads /proc: Linux only")
    if not Path(args.model).is_file():
        raise UsageError(f"--model {args.model}: no such file")
    with tempfile.TemporaryDirectory(prefix="soak-") as folder:
        video = Path(args.video) if args.video else synthetic_video(Path(folder) / "clip.avi")
        command = [sys.executable, "-m", "edge_runtime.commands.classify",
                   "--model", str(args.model), "--camera", str(video), "--loop", "--headless",
                   "--summary-every", "60", "--serve", "127.0.0.1:0"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True)
        errors: list[str] = []
        url = live_view_url(process.stderr, errors)
        if url is None:
            process.wait()
            raise UsageError(f"edge-classify did not start (exit {process.returncode}): "
                             f"{''.join(errors)[-400:]}")
        drain = threading.Thread(target=lambda: errors.extend(process.stderr), daemon=True)
        drain.start()
        client = Client(url).start()
        samples: list[dict] = []
        started = time.monotonic()
        say(PROG, f"soaking pid {process.pid} for {args.minutes:g} min: {' '.join(command[3:])}")
        try:
            while time.monotonic() - started < args.minutes * 60 and process.poll() is None:
                samples.append({"t": round(time.monotonic() - started, 2), **sample(process.pid)})
                time.sleep(args.interval)
        finally:
            client.close()
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        ended_early = time.monotonic() - started < args.minutes * 60 - args.interval
    if len(samples) < 3:
        raise UsageError(f"too few samples ({len(samples)}): a longer --minutes or a shorter "
                         "--interval")
    report = {"command": command[3:], "minutes": args.minutes, "interval_s": args.interval,
              "frames": client.last_frame, "stream_connections": client.connections,
              "stream_mb": round(client.stream_bytes / 1e6, 1), "exit_code": code,
              **fit(samples, args.warmup), "all_samples": samples}
    if args.out is not None:
        write_json(args.out, report)
    rss, fds = report["rss_mb"], report["fds"]
    print(f"{report['frames']} frames in {samples[-1]['t'] / 60:.1f} min, "
          f"{report['stream_connections']} stream connections, {report['stream_mb']} MB "
          f"streamed; from {report['fitted_from_s']:g} s on: RSS {rss['first']}→{rss['last']} MB "
          f"(slope {rss['slope_per_hour']:+.2f} MB/h), fds {fds['min']}–{fds['max']} "
          f"(slope {fds['slope_per_hour']:+.2f}/h), threads {report['threads']['min']}–"
          f"{report['threads']['max']}: {report['verdict']}", flush=True)
    if ended_early or code != 0:
        say(PROG, f"edge-classify ended early or exited {code}: {''.join(errors)[-400:]}")
        return EXIT_CHECK_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_command_line(lambda: build_parser().parse_args(argv))
    if isinstance(args, int):
        return args
    return run_command(PROG, lambda: soak(args), needs_tensorflow=False)


if __name__ == "__main__":
    sys.exit(main())
