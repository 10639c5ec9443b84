"""A stand-in for Picamera2, put on ``sys.path`` by the tests: no camera, no libcamera.

It has the part of the real API that ``edge_runtime.sources.picamera`` uses (``Picamera2(num)``,
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
    FAKE_PICAMERA2_IMX500_SCORES  JSON list: the class scores the AI Camera's sensor answers
                            for every frame once a network is loaded (default: 0.1, 0.7, 0.2)
    FAKE_PICAMERA2_IMX500_WAIT    frames without an answer while the network "uploads" (2)

The AI Camera: ``picamera2.devices.IMX500`` and ``picamera2.devices.imx500.NetworkIntrinsics``
(the part edge_runtime uses: ``IMX500(network_file)``, ``camera_num``,
``network_intrinsics``, ``show_network_fw_progress_bar()``, ``get_outputs(metadata)``,
``get_kpi_info(metadata)``), for a camera whose ``Model`` is ``imx500``; a camera it loaded a
network for answers through ``capture_request()``'s metadata (``CnnOutputTensor``,
``CnnKpiInfo``), as the real sensor does. The submodules are made here, in this one file, so
that pi-check's apt package of it has them too.

In-process, :data:`INSTANCES` holds every camera made, each with its ``calls``.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
import types

import numpy as np

INSTANCES: list = []
"""Every Picamera2 made in this process, oldest first."""

DEFAULT_CAMERAS = [{"Model": "imx708_wide", "Location": 2, "Rotation": 180,
                    "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "Num": 0}]

_MEMORY_ORDER = {"RGB888": "BGR", "BGR888": "RGB", "XBGR8888": "RGBX", "XRGB8888": "BGRX"}


def _record(calls: list[str], name: str) -> None:
    """Note a call in ``calls`` and, with FAKE_PICAMERA2_LOG, in that file."""
    calls.append(name)
    log = os.environ.get("FAKE_PICAMERA2_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(name + "\n")


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
        self._record("start")
        self.started = True

    def capture_request(self) -> CompletedRequest:
        """A frame and its metadata (with the sensor's answer once a network is loaded)."""
        frame = self.capture_array("main")
        metadata = {"SensorTimestamp": time.monotonic_ns()}
        network = NETWORKS.get(self.camera_num)
        if network is not None:
            network.frames += 1
            if network.frames > int(os.environ.get("FAKE_PICAMERA2_IMX500_WAIT", "2")):
                metadata["CnnOutputTensor"] = json.loads(
                    os.environ.get("FAKE_PICAMERA2_IMX500_SCORES") or "[0.1, 0.7, 0.2]")
                metadata["CnnKpiInfo"] = struct.pack("II", 4200, 900)  # µs: dnn, dsp
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


NETWORKS: dict = {}
"""Camera number → the IMX500 that loaded a network onto it (this process)."""


class NetworkIntrinsics:
    """The network's description Picamera2 keeps (task, labels, rates)."""

    def __init__(self) -> None:
        self.task = None
        self.labels = None
        self.inference_rate = None

    def update_with_defaults(self) -> None:
        if self.inference_rate is None:
            self.inference_rate = 30.0


class IMX500:
    """The AI Camera's sensor: a network file uploaded to it, its answers read from metadata."""

    def __init__(self, network_file: str, camera_id: str = "") -> None:
        sensors = [c for c in Picamera2.global_camera_info()
                   if "imx500" in str(c.get("Model", "")).lower()]
        if not sensors:
            raise RuntimeError("IMX500: Requested camera dev-node not found")  # the real words
        if not os.path.isfile(network_file):
            raise RuntimeError(f"Firmware file {network_file} does not exist.")
        self.network_file = network_file
        self.camera_num = sensors[0].get("Num", 0)
        self.network_intrinsics = None  # an .rpk without network_info.txt
        self.calls: list[str] = []
        self.frames = 0
        NETWORKS[self.camera_num] = self
        self._record("imx500:" + os.path.basename(network_file))

    def _record(self, name: str) -> None:
        _record(self.calls, name)

    def show_network_fw_progress_bar(self) -> None:
        self._record("fw_progress")

    def set_auto_aspect_ratio(self) -> None:
        self._record("auto_aspect_ratio")

    def get_outputs(self, metadata: dict, add_batch: bool = False):
        tensor = metadata.get("CnnOutputTensor")
        if not tensor:
            return None
        output = np.asarray(tensor, np.float32)
        return [output[None] if add_batch else output]

    @staticmethod
    def get_kpi_info(metadata: dict):
        kpi = metadata.get("CnnKpiInfo")
        if kpi is None:
            return None
        dnn, dsp = struct.unpack("II", bytes(kpi))
        return dnn / 1000, dsp / 1000


def _submodule(name: str, **members) -> types.ModuleType:
    module = types.ModuleType(f"{__name__}.{name}")
    module.__dict__.update(members)
    sys.modules[module.__name__] = module
    return module


devices = _submodule("devices", IMX500=IMX500)
devices.imx500 = _submodule("devices.imx500", IMX500=IMX500,
                            NetworkIntrinsics=NetworkIntrinsics)
