"""The AI Camera's row of ``edge-bench BUNDLE``: the network on the IMX500 sensor, timed on the Pi.

The sensor classifies every frame itself; what the Pi pays is reading frames and answers. So the
row holds what can be measured from the Pi's side of the ribbon cable, over ``frames`` frames of
the camera loop's own source (:class:`edge_runtime.sources.ai_camera.Imx500Source`) after the
network is on the sensor: the rate answers arrive at, the sensor's own inference time per
frame (from each frame's metadata), and the CPU time this process spends per frame (capture
thread included), beside the ``.tflite`` variants' latency on the same Pi.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from edge_runtime.errors import CameraError, EdgeError

log = logging.getLogger(__name__)

SENSOR_FRAMES = 100
"""Frames timed (after the first answer: the firmware upload is not timed)."""


def sensor_bench(bundle: Path, manifest, frames: int = SENSOR_FRAMES,
                 size: tuple[int, int] = (640, 480), quiet: bool = True) -> dict | None:
    """The sensor's row, or None when the bundle has no imx500 variant.

    Returns ``{"model", "file", "frames", "fps", "dnn_ms_p50", "cpu_ms_per_frame"}``, or
    ``{"model", "skipped": reason}`` when no AI Camera can be opened here (no Picamera2, none
    connected, no ``imx500-package``): a bench on a Pi without the camera still runs.
    """
    from edge_runtime.sources.ai_camera import Imx500Source, is_sensor, network_file
    from edge_runtime.stream.sdnotify import Notifier
    from edge_runtime.stream.upload_watch import UploadWatch

    variant = manifest.sensor_variant()
    if variant is None:
        return None
    name, entry = variant
    try:
        from edge_runtime.sources.picamera import picamera_cameras

        if not any(is_sensor(info) for info in picamera_cameras(quiet)):
            raise CameraError("no AI Camera connected (Picamera2 lists none)")
        # the network upload's progress on a terminal; no systemd to tell
        source = Imx500Source(network_file(bundle / entry.file), size, quiet,
                              UploadWatch(Notifier(environ={})))
    except EdgeError as exc:
        log.warning("%s: not timed on the sensor: %s", name, exc)
        return {"model": name, "skipped": str(exc)}
    dnn_ms = []
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _, frame in source.frames():
            dnn_ms.append(float(frame.dnn_ms))
            if len(dnn_ms) >= frames:
                break
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        source.stop()
    if not dnn_ms:
        return {"model": name, "skipped": "the AI Camera gave no frame"}
    return {"model": name, "file": entry.file, "frames": len(dnn_ms),
            "fps": round(len(dnn_ms) / wall, 2),
            "dnn_ms_p50": round(float(np.median(dnn_ms)), 3),
            "cpu_ms_per_frame": round(1000 * cpu / len(dnn_ms), 3)}


def sensor_line(row: dict, cpu_p50_ms: dict[str, float]) -> str:
    """One line for people: the sensor's rate and the Pi's CPU per frame, against the
    ``.tflite`` variants' median latency here (``cpu_p50_ms``: variant → ms)."""
    if "skipped" in row:
        return f"{row['model']}: not timed on the sensor ({row['skipped']})"
    others = ", ".join(f"{n} {ms:.1f} ms" for n, ms in cpu_p50_ms.items())
    return (f"{row['model']} on the AI Camera: {row['fps']:.1f} answers/s, the sensor's inference "
            f"{row['dnn_ms_p50']:.1f} ms, the Pi's CPU {row['cpu_ms_per_frame']:.1f} ms a frame"
            + (f" (CPU variants' inference here: {others})" if others else ""))
