"""A stand-in for Picamera2, put on ``sys.path`` by the tests: no camera, no libcamera.

It has the part of the real API that ``edge_runtime.picamera`` uses (``Picamera2(num)``,
``global_camera_info()``, ``create_video_configuration()``, ``configure()``,
``camera_configuration()``, ``start()``, ``capture_array()``, ``stop()``, ``close()``)
and serves a known picture in the real byte orders: ``RGB888`` is B, G, R in memory,
``BGR888`` is R, G, B, ``XBGR8888`` is R, G, B, X and ``XRGB8888`` is B, G, R, X
(as the real ``Picamera2.helpers.make_image`` reads them: "BGR", "RGB", "RGBX", "BGRX").

Set through environment variables, so a child process sees the same camera:

    FAKE_PICAMERA2_CAMERAS  JSON list of global_camera_info() dicts (default: one imx708_wide)
    FAKE_PICAMERA2_IMAGE    an image file whose pixels every frame shows, resized to the
                            configured size if it differs (default: left half red, right blue)
    FAKE_PICAMERA2_FORMAT   the format the camera really gives, whatever was asked for
    FAKE_PICAMERA2_FAIL     "configure", "start" or "capture": that call raises RuntimeError
    FAKE_PICAMERA2_LOG      a file each call is appended to, one name a line

In-process, :data:`INSTANCES` holds every camera made, each with its ``calls``.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

INSTANCES: list = []
"""Every Picamera2 made in this process, oldest first."""

DEFAULT_CAMERAS = [{"Model": "imx708_wide", "Location": 2, "Rotation": 180,
                    "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "Num": 0}]

_MEMORY_ORDER = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}


def scene_rgb(width: int, height: int) -> np.ndarray:
    """The picture served: FAKE_PICAMERA2_IMAGE's pixels, else left half red, right half blue."""
    path = os.environ.get("FAKE_PICAMERA2_IMAGE")
    if path:
        from PIL import Image

        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (width, height):
                image = image.resize((width, height))
            return np.asarray(image).copy()
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (220, 30, 20)
    rgb[:, width // 2:] = (20, 40, 210)
    return rgb


def in_memory_order(rgb: np.ndarray, fmt: str) -> np.ndarray:
    """An RGB picture laid out in memory as Picamera2's format ``fmt`` lays it out."""
    order = _MEMORY_ORDER[fmt]
    channels = {"R": rgb[..., 0], "G": rgb[..., 1], "B": rgb[..., 2],
                "X": np.full(rgb.shape[:2], 255, np.uint8)}
    return np.ascontiguousarray(np.stack([channels[c] for c in order], axis=-1))


class Picamera2:
    """One fake camera; records each call in :attr:`calls`."""

    @staticmethod
    def global_camera_info() -> list[dict]:
        text = os.environ.get("FAKE_PICAMERA2_CAMERAS")
        return json.loads(text) if text else [dict(c) for c in DEFAULT_CAMERAS]

    def __init__(self, camera_num: int = 0) -> None:
        numbers = [c.get("Num") for c in self.global_camera_info()]
        if camera_num not in numbers:
            raise IndexError("list index out of range")  # what the real one raises
        self.camera_num = camera_num
        self.calls: list[str] = []
        self.config: dict | None = None
        self.started = False
        self.closed = False
        self.frames_served = 0
        self._frame: np.ndarray | None = None
        INSTANCES.append(self)
        self._record("init")

    def _record(self, name: str) -> None:
        self.calls.append(name)
        log = os.environ.get("FAKE_PICAMERA2_LOG")
        if log:
            with open(log, "a", encoding="utf-8") as f:
                f.write(name + "\n")
        if os.environ.get("FAKE_PICAMERA2_FAIL") == name:
            raise RuntimeError(f"fake camera: {name} failed")

    def create_video_configuration(self, main=None, **kwargs) -> dict:
        main = dict(main or {})
        main.setdefault("size", (1280, 720))
        main.setdefault("format", "XBGR8888")
        return {"use_case": "video", "main": main,
                "controls": {"FrameDurationLimits": (33333, 33333)}, **kwargs}

    def configure(self, config: dict) -> None:
        self._record("configure")
        main = dict(config["main"])
        main["format"] = os.environ.get("FAKE_PICAMERA2_FORMAT", main["format"])
        self.config = {**config, "main": main}

    def camera_configuration(self) -> dict:
        return self.config

    def start(self) -> None:
        self._record("start")
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        self._record("capture")
        if not self.started:
            raise RuntimeError("camera not started")
        if self._frame is None:
            width, height = self.config[name]["size"]
            self._frame = in_memory_order(scene_rgb(width, height), self.config[name]["format"])
        time.sleep(0.002)  # a camera delivers at its own pace
        self.frames_served += 1
        return self._frame.copy()  # the real one copies out of the camera's buffer too

    def stop(self) -> None:
        self._record("stop")
        self.started = False

    def close(self) -> None:
        self._record("close")
        self.closed = True
