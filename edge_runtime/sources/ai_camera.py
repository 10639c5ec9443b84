"""The Raspberry Pi AI Camera (Sony IMX500): the network runs on the sensor, the Pi reads answers.

``edge-export RUN --formats ...,imx500`` writes ``BUNDLE/imx500/packerOut.zip``. On the Pi,
``edge-classify --model BUNDLE/imx500/packerOut.zip --camera imx500``:

1. packages it once with ``imx500-package`` (apt ``imx500-tools``) into ``network.rpk``, cached
   beside it (:func:`network_file`);
2. hands that to the sensor through Picamera2's ``IMX500`` device and starts the camera: the
   driver uploads the network inside ``Picamera2.start()``, which blocks meanwhile (seconds;
   minutes for a first upload after boot) with no frame, the caller's ``uploading`` watch
   (:class:`~edge_runtime.stream.upload_watch.UploadWatch`) around it;
3. hands out each frame with the sensor's output for it
   (:class:`~edge_runtime.sensor_classifier.SensorFrame`, from :class:`Imx500Source`), which
   :class:`~edge_runtime.sensor_classifier.SensorClassifier` turns into the same predictions as
   any other model's, so top-k, threshold, JSON, summary, window and live view are the ones
   every camera uses.

The sensor makes the network's input itself from the whole sensor picture squashed to the
input size (no crop), the same resize the run was trained with; it feeds a signed input
``p - 128`` (export checks the network expects exactly that). A network whose intrinsics say
its output is logits (``cpu.softmax``, as Picamera2's classification demo reads them) gets
softmax on the CPU. Picamera2 and its ``IMX500`` device are imported only here, when the AI
Camera is used; what that helper needs and lacks, or a permission it lacks, is said with what
to do.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from common.fileio import write_bytes
from edge_runtime.errors import CameraError, ModelError
from edge_runtime.manifest import bundle_folder, find_manifest
from edge_runtime.sensor_classifier import SensorFrame
from edge_runtime.sources.camera_spec import DEFAULT_SIZE
from edge_runtime.sources.picamera import Picamera2Owner

log = logging.getLogger(__name__)

PACKED = "packerOut.zip"
"""What edge-export writes (``BUNDLE/imx500/packerOut.zip``)."""
RPK = "network.rpk"
"""What ``imx500-package`` makes of it; cached beside it."""
PACKAGER = "imx500-package"
TOOLS_HINT = "install the AI Camera's tools with `sudo apt install imx500-all imx500-tools`"
SENSOR_MODEL = "imx500"
"""How Picamera2's ``global_camera_info()`` names the AI Camera's sensor (``Model``)."""
FIRST_RESULT_FRAMES = 3000
"""Frames read after the camera's start while the sensor has no answer yet, before giving up."""
FW_NETWORK_STAGE = 2
"""The driver's stage number for the network upload (``imx500.py``'s ``FW_NETWORK_STAGE``)."""
APT_MODULES = {"Imath": "python3-openexr", "OpenEXR": "python3-openexr",
               "jsonschema": "python3-jsonschema", "libarchive": "python3-libarchive-c",
               "tqdm": "python3-tqdm", "videodev2": "python3-videodev2",
               "libcamera": "python3-libcamera"}
"""What Picamera2's IMX500 helper imports → the apt package that brings it (Raspberry Pi's
packaging of picamera2: ``debian/control``'s Depends and ``debian/py3dist-overrides``). Imath and
OpenEXR come in ``python3-openexr``, which python3-picamera2 0.3.32 on Trixie did not depend on
(picamera2 #1345; 0.3.33-1 does)."""
Uploading = Callable[[Callable[[], "float | None"]], AbstractContextManager]
"""A watch over the network upload: called with how far it is (0 to 1, None when unknown), it
returns the context ``Picamera2.start()`` runs in."""


def is_sensor_model(path: str | os.PathLike) -> bool:
    """True for a network the AI Camera's sensor runs (``packerOut.zip`` or a ``.rpk``)."""
    name = Path(path).name
    return name == PACKED or name.endswith(".rpk")


def is_sensor(info: dict) -> bool:
    """True for the AI Camera in Picamera2's ``global_camera_info()``."""
    return SENSOR_MODEL in str(info.get("Model", "")).lower()


def bundle_network(model: str | os.PathLike) -> Path | None:
    """The imx500 network of the bundle a ``.tflite`` ``model`` belongs to (its manifest names
    it), or None when the bundle has no imx500 variant."""
    folder = bundle_folder(model)
    try:
        manifest = find_manifest(model)
    except ModelError:
        return None
    found = manifest.sensor_variant() if manifest is not None else None
    if found is None:
        return None
    path = folder / found[1].file
    return path if path.is_file() else None


def sensor_camera(model: str, camera: str | None, quiet: bool = True) -> str | None:
    """The ``--camera`` value naming the AI Camera with its network (``imx500:NETWORK``) when
    this run uses the sensor, else None (another camera, or the CPU model).

    ``--camera imx500``: ``model`` is the network (``packerOut.zip`` or ``.rpk``), or a
    ``.tflite`` of a bundle with an imx500 variant (then that variant's network is used).
    ``--camera``/``auto``: the AI Camera when the bundle has that variant and Picamera2 lists
    the sensor.

    Raises:
        ModelError: ``--camera imx500`` with a model that has no sensor network.
    """
    from edge_runtime.sources.camera_spec import parse_camera

    spec = parse_camera(camera)
    if spec.kind == "imx500":
        if spec.target:
            return f"imx500:{spec.target}"
        network = Path(model) if is_sensor_model(model) else bundle_network(model)
        if network is None:
            raise ModelError(f"--camera imx500: {model} is not the AI Camera's network and its "
                             "bundle has no imx500 variant; export one with edge-export RUN "
                             f"--formats ...,imx500 and pass --model BUNDLE/imx500/{PACKED}")
        return f"imx500:{network}"
    if spec.kind != "auto":
        return None
    network = Path(model) if is_sensor_model(model) else bundle_network(model)
    if network is None:
        return None
    from edge_runtime.sources.picamera import listed_cameras

    if not any(is_sensor(info) for info in listed_cameras(quiet)):
        return None
    log.info("--camera auto: the AI Camera is connected and the bundle has its network: "
             "running %s on the sensor", network)
    return f"imx500:{network}"


def network_file(model: str | os.PathLike, packager: str = PACKAGER) -> Path:
    """The ``.rpk`` to upload for ``model``: itself, or ``network.rpk`` beside a
    ``packerOut.zip``, packaged now when missing or older than the zip.

    Raises:
        ModelError: not a sensor network, no such file, no ``imx500-package`` or it failed.
    """
    path = Path(model)
    if not path.is_file():
        raise ModelError(f"{path} does not exist")
    if path.name.endswith(".rpk"):
        return path
    if path.name != PACKED:
        raise ModelError(f"--camera imx500 runs the AI Camera's network (BUNDLE/imx500/{PACKED} "
                         f"or a .rpk), not {path.name}; export one with edge-export RUN "
                         "--formats ...,imx500")
    rpk = path.with_name(RPK)
    if rpk.is_file() and rpk.stat().st_mtime >= path.stat().st_mtime:
        return rpk
    tool = shutil.which(packager)
    if tool is None:
        raise ModelError(f"{packager} is not installed, and it makes {RPK} from {path.name} "
                         f"(once); {TOOLS_HINT}")
    log.info("packaging %s for the sensor with %s (once) ...", path, packager)
    with tempfile.TemporaryDirectory(prefix="edge-imx500-") as work:
        done = subprocess.run([tool, "-i", str(path), "-o", work], capture_output=True,
                              text=True)
        made = Path(work) / RPK
        if done.returncode != 0 or not made.is_file():
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise ModelError(f"{packager} could not package {path}: "
                             f"{lines[-1] if lines else f'exit code {done.returncode}'}")
        # flushed, then renamed: whole or not at all for the next run, across a power cut too
        write_bytes(rpk, made.read_bytes())
    return rpk


class Imx500Source(Picamera2Owner):
    """Frames from the AI Camera, each with the sensor's answer for it, newest only.

    The network is handed to the sensor, the camera configured for video at ``size`` and
    started, under ``uploading`` (the driver uploads the network inside ``start()``); frames
    without an answer (the first ones after the start) are skipped, ``alive()`` called for each
    (systemd's watchdog is fed).

    Raises:
        CameraError: Picamera2, its IMX500 device or a module it needs is missing, no AI
            Camera is connected or it may not be opened (a permission), or it cannot be
            configured or started, or gives no answer.
    """

    keep_all = False

    def __init__(self, network: str | os.PathLike, size: tuple[int, int] = DEFAULT_SIZE,
                 quiet: bool = True, uploading: Uploading | None = None,
                 alive: Callable[[], None] | None = None) -> None:
        from edge_runtime.sources.picamera import REQUESTED_FORMAT, import_picamera2, to_bgr

        picamera2 = import_picamera2(quiet)
        try:
            from picamera2.devices import IMX500
        except ImportError as exc:
            raise CameraError(helper_missing(exc)) from None
        self._to_bgr, self._format_asked = to_bgr, REQUESTED_FORMAT
        self.name = SENSOR_MODEL
        self._camera = None
        self._running = False
        try:
            self._device = IMX500(str(network))
        except PermissionError as exc:
            raise CameraError(permission_denied(exc)) from None
        except Exception as exc:  # the device raises RuntimeError with its reason
            raise CameraError(f"cannot open the AI Camera: {exc} (is it connected? "
                              "edge-classify --list-cameras)") from None
        intrinsics = getattr(self._device, "network_intrinsics", None)
        self._logits = bool(getattr(intrinsics, "softmax", False))
        if self._logits:
            log.info(f"{Path(network).name} outputs logits (its intrinsics say softmax): "
                     "softmax is applied to its scores")
        try:
            self._camera = picamera2(self._device.camera_num)
            config = self._camera.create_video_configuration(
                main={"size": tuple(size), "format": REQUESTED_FORMAT}, buffer_count=12)
            self._camera.configure(config)
            self._format = self._camera.camera_configuration()["main"]["format"]
            with uploading(self._upload_progress) if uploading else nullcontext():
                self._camera.start()
            self._running = True
            first = self._read(FIRST_RESULT_FRAMES, alive)
            if first is None:
                raise CameraError(f"the AI Camera gave no answer in {FIRST_RESULT_FRAMES} "
                                  "frames: the network did not load onto the sensor")
        except CameraError:
            self._close_camera()
            raise
        except Exception as exc:
            self._close_camera()
            raise CameraError(f"cannot start the AI Camera: {type(exc).__name__}: {exc}") \
                from None
        self._begin(first)

    def _upload_progress(self) -> float | None:
        """How far the driver is with the network (0 to 1), None when Picamera2 cannot read it
        (its ``fw_progress`` is ``FwProgressType.NONE``, 0, from 0.3.35; an open debugfs file
        before) or the upload is not at the network yet (loader and main firmware first)."""
        if not getattr(self._device, "fw_progress", None):
            return None
        done, total = self._device.get_fw_upload_progress(FW_NETWORK_STAGE)
        return done / total if total else None

    def _read(self, tries: int = 1_000_000,
              alive: Callable[[], None] | None = None) -> SensorFrame | None:
        """The next frame that has the sensor's answer (the first ones after the start have
        none: ``alive()`` is called for each)."""
        for _ in range(tries):
            request = self._camera.capture_request()
            try:
                frame = request.make_array("main")
                metadata = request.get_metadata()
            finally:
                request.release()
            outputs = self._device.get_outputs(metadata)
            if not outputs:  # None without a tensor; [] without its shape (CnnOutputTensorInfo)
                if alive is not None:
                    alive()
                continue
            kpi = self._device.get_kpi_info(metadata)
            return SensorFrame.of(self._to_bgr(frame, self._format),
                                  np.asarray(outputs[0], np.float32), kpi[0] if kpi else 0.0,
                                  self._logits)
        return None


def helper_missing(exc: ImportError) -> str:
    """Why ``picamera2.devices.IMX500`` does not import, in one line with what to do: a module it
    needs named with the apt package that brings it (:data:`APT_MODULES`)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and name in APT_MODULES:
        return (f"Picamera2's AI Camera helper (picamera2.devices.imx500) needs the Python module "
                f"{name}, which is not installed: sudo apt install {APT_MODULES[name]}")
    return (f"this Picamera2 has no IMX500 device ({type(exc).__name__}: {exc}); {TOOLS_HINT} "
            "and `sudo apt install --only-upgrade python3-picamera2`")


def permission_denied(exc: PermissionError) -> str:
    """What a PermissionError from ``IMX500()`` means, in one line with what to do."""
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    where = exc.filename or ""
    if where.startswith("/sys/kernel/debug"):
        return (f"cannot open the AI Camera: permission denied: user {user} may not read {where}, "
                "which Picamera2 before 0.3.35 opens in IMX500() for its upload progress bar; "
                "upgrade Picamera2 (`sudo apt update && sudo apt install --only-upgrade "
                "python3-picamera2`: 0.3.35 and later go on without it) or run as a user who may "
                "read /sys/kernel/debug")
    return (f"cannot open the AI Camera: permission denied{f' on {where}' if where else ''} "
            f"({exc.strerror or exc}): the camera's devices belong to the video group: "
            f"`sudo usermod -aG video {user}`, then log in again")
