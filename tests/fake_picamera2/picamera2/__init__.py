"""A stand-in for Picamera2, put on ``sys.path`` by the tests: no camera, no libcamera.

It has the part of the real API that ``edge_runtime.sources.picamera`` uses (``Picamera2(num)``,
``global_camera_info()``, ``create_video_configuration()``, ``configure()``,
``camera_configuration()``, ``start()``, ``capture_array()``, ``capture_request()``, ``stop()``,
``close()``) and serves a known picture in the real byte orders: ``RGB888`` is B, G, R in memory,
``BGR888`` is R, G, B, ``XBGR8888`` is R, G, B, X and ``XRGB8888`` is B, G, R, X
(as the real ``Picamera2.helpers.make_image`` reads them: "BGR", "RGB", "RGBX", "BGRX").

The AI Camera (a camera whose ``Model`` is ``imx500``): ``picamera2.devices.IMX500`` is in
``devices/imx500/imx500.py``, as in the real package, with the real module's import-time
dependencies beside this folder (``Imath``, ``OpenEXR``, ``jsonschema``, ``libarchive``,
``libcamera``, ``videodev2``; tqdm is the real one). What it mirrors is picamera2 0.3.36
(``picamera2/devices/imx500/imx500.py``) and the driver under it, as read from their sources:

- the network is uploaded **inside** ``start()``: ``IMX500(file)`` only hands the firmware to
  the driver; libcamera's ``Camera::start()`` streams the sensor on, and the kernel driver
  (``imx500_start_streaming()``) uploads loader, main firmware and network before the first
  frame. libcamera's Python binding (``py_main.cpp``) calls ``Camera::start()`` without
  releasing the GIL, so no thread of the caller's runs meanwhile: here ``start()`` blocks in one
  C call (``nanosleep`` through ``ctypes.PyDLL``, which keeps the GIL) for
  ``FAKE_PICAMERA2_IMX500_UPLOAD_S``, and no frame comes meanwhile. A network the sensor has
  had before (the same bytes; the camera's flash keeps recent ones) starts at once;
- the upload's progress is the driver's debugfs state: here an anonymous shared memory map,
  so a forked child (Picamera2's own progress bar, or the caller's) reads it while the parent
  is blocked, as ``cat /sys/kernel/debug/...`` would.

Set through environment variables, so a child process sees the same camera:

    FAKE_PICAMERA2_CAMERAS  JSON list of global_camera_info() dicts (default: one imx708_wide)
    FAKE_PICAMERA2_IMAGE    an image file whose pixels every frame shows, resized to the
                            configured size if it differs (default: left half red, right blue)
    FAKE_PICAMERA2_FORMAT   the format the camera really gives, whatever was asked for
    FAKE_PICAMERA2_FAIL     "configure", "start" or "capture": that call raises RuntimeError
    FAKE_PICAMERA2_LOG      a file each call is appended to, one name a line
    FAKE_PICAMERA2_IMX500_SCORES  JSON list: the output tensor the AI Camera's sensor gives for
                            every frame once its network runs (default: 0.1, 0.7, 0.2)
    FAKE_PICAMERA2_IMX500_WAIT    frames without an answer after start() (2)
    FAKE_PICAMERA2_IMX500_UPLOAD_S  seconds start() blocks uploading a network the sensor has
                            not had (0.3)
    FAKE_PICAMERA2_IMX500_PROGRESS  how IMX500() reaches the upload's progress: "none" (its
                            debugfs files are root's and no sudo rule is set up: 0.3.35 and later
                            print a notice to stdout; the default), "direct" (readable), or
                            "denied" (picamera2 before 0.3.35: IMX500() raises PermissionError)

In-process, :data:`INSTANCES` holds every camera made, each with its ``calls``;
:data:`NETWORKS` the IMX500 each camera number has, :data:`UPLOADED` the networks (digests) the
sensor has had.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import mmap
import os
import struct
import time

import numpy as np

INSTANCES: list = []
"""Every Picamera2 made in this process, oldest first."""

NETWORKS: dict = {}
"""Camera number → the IMX500 that handed its network to the driver (this process)."""

UPLOADED: set = set()
"""The sha256 of each network the sensor has had (what its flash keeps: those start at once)."""

DEFAULT_CAMERAS = [{"Model": "imx708_wide", "Location": 2, "Rotation": 180,
                    "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "Num": 0}]

_MEMORY_ORDER = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}

FW_NETWORK_STAGE = 2
"""The driver's stage number for the network upload (``imx500.py``'s ``FW_NETWORK_STAGE``)."""

_DRIVER = mmap.mmap(-1, struct.calcsize("qqqq"))
"""The upload as the driver reports it in debugfs: stage, start (monotonic ns), duration (ns),
size (bytes). Anonymous and shared: a forked child sees the parent's writes."""


def _record(calls: list[str], name: str) -> None:
    """Note a call in ``calls`` and, with FAKE_PICAMERA2_LOG, in that file."""
    calls.append(name)
    log = os.environ.get("FAKE_PICAMERA2_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")


def driver_progress() -> tuple[int, int, int]:
    """What the driver's ``fw_progress`` file says: ``(stage, bytes sent, size)``."""
    stage, started, duration, size = struct.unpack_from("qqqq", _DRIVER)
    if duration <= 0:
        return stage, size, size
    done = min(1.0, (time.monotonic_ns() - started) / duration)
    return stage, int(size * done), size


def _hold_the_gil(seconds: float) -> None:
    """Block in one C call that keeps the GIL, as libcamera's ``Camera.start()`` binding does."""
    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    libc = ctypes.PyDLL(None)  # PyDLL: the GIL is not released around the call
    wanted, left = Timespec(int(seconds), int(seconds % 1 * 1e9)), Timespec()
    while libc.nanosleep(ctypes.byref(wanted), ctypes.byref(left)) != 0:  # EINTR: the rest
        wanted = left


def _upload(network_file: str) -> None:
    """The driver at stream-on: the network uploaded unless the sensor has had it."""
    with open(network_file, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest in UPLOADED:
        struct.pack_into("qqqq", _DRIVER, 0, FW_NETWORK_STAGE, 0, 0, len(data))
        return
    seconds = float(os.environ.get("FAKE_PICAMERA2_IMX500_UPLOAD_S", "0.3"))
    struct.pack_into("qqqq", _DRIVER, 0, FW_NETWORK_STAGE, time.monotonic_ns(),
                     max(1, int(seconds * 1e9)), len(data))
    _hold_the_gil(seconds)
    UPLOADED.add(digest)


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
        _record(self.calls, name)
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
        """Stream on: the AI Camera's network is uploaded first, blocking (see the module)."""
        self._record("start")
        network = NETWORKS.get(self.camera_num)
        if network is not None:
            _upload(network.network_file)
        self.started = True

    def capture_request(self) -> CompletedRequest:
        """A frame and its metadata (with the sensor's answer once its network runs)."""
        frame = self.capture_array("main")
        metadata = {"SensorTimestamp": time.monotonic_ns()}
        network = NETWORKS.get(self.camera_num)
        if network is not None:
            network.frames += 1
            if network.frames > int(os.environ.get("FAKE_PICAMERA2_IMX500_WAIT", "2")):
                metadata.update(network.answer())
        return CompletedRequest(frame, metadata)

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


class CompletedRequest:
    """What ``capture_request()`` gives: the frame and its metadata, until released."""

    def __init__(self, frame: np.ndarray, metadata: dict) -> None:
        self._frame, self._metadata, self.released = frame, metadata, False

    def make_array(self, name: str = "main") -> np.ndarray:
        if self.released:
            raise RuntimeError("request already released")
        return self._frame.copy()

    def get_metadata(self) -> dict:
        return dict(self._metadata)

    def release(self) -> None:
        self.released = True
