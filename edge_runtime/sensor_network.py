"""The AI Camera's network as a file: ``packerOut.zip`` opened whole and its ``dnnParams.xml``
read, the input the converter made held to the input the sensor feeds.

``edge-export`` checks the converter's output with it before the file enters a bundle, and
``edge-model activate`` checks the bundle's copy with it on the device (where the network
cannot run on the CPU): one definition of what a sensor network must be. Standard library only.

The sensor's ISP puts ``p - 128`` into a *signed* input (``p`` into an unsigned one) and
ignores the input's quantization scale, so only a signed input of scale 1/128 sees
``(p - 128) / 128``, our ``p / 127.5 - 1`` within one step (:func:`check_input`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import ModelError

PACKED = "packerOut.zip"
"""The converter's output, what ``imx500-package`` takes on the Pi."""
DNN_PARAMS = "dnnParams.xml"
SENSOR_OFFSET, SENSOR_SCALE = -128.0, 1 / 128
"""What the sensor feeds a signed input: ``(p - 128) / 128`` in the network's terms."""
SCALE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Tensor:
    """One input or output of the converted network, as ``dnnParams.xml`` describes it."""

    signed: bool
    scale: float
    shape: tuple[int, ...]
    """Dimensions in ordinal order: (height, width, channels) for the input."""


@dataclass(frozen=True)
class DnnParams:
    """The converted network's input and output (``dnnParams.xml``, inside ``packerOut.zip``)."""

    input: Tensor
    output: Tensor


def _tensor(element, where: str) -> Tensor:
    try:
        dims = sorted(element.iter("dimension"), key=lambda d: int(d.get("ordinal")))
        return Tensor(signed=element.get("format", "").lower() == "signed",
                      scale=float(element.get("scale")),
                      shape=tuple(int(d.get("size")) for d in dims))
    except (TypeError, ValueError):
        raise ModelError(f"imx500: {where} in {DNN_PARAMS} has no readable scale, format or "
                         "dimensions; the converter's output changed") from None


def read_dnn_params(text: str) -> DnnParams:
    """Parse ``dnnParams.xml``: the first network's first input and output tensors.

    Raises:
        ModelError: not XML, or no input or output tensor in it.
    """
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ModelError(f"imx500: {DNN_PARAMS} is not XML ({exc})") from None
    found = root.find(".//inputTensor"), root.find(".//outputTensor")
    if found[0] is None or found[1] is None:
        raise ModelError(f"imx500: {DNN_PARAMS} names no input or output tensor; the "
                         "converter's output changed: cannot check what the sensor will feed")
    return DnnParams(_tensor(found[0], "the input"), _tensor(found[1], "the output"))


def read_packed(packed: Path) -> DnnParams:
    """Open ``packerOut.zip`` whole (every member's CRC) and read its ``dnnParams.xml``.

    Raises:
        ModelError: not a zip, a damaged member, no dnnParams.xml inside.
    """
    try:
        with zipfile.ZipFile(packed) as archive:
            bad = archive.testzip()
            if bad is not None:
                raise ModelError(f"imx500: {packed}: {bad} is damaged")
            return read_dnn_params(archive.read(DNN_PARAMS).decode("utf-8", "replace"))
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ModelError(f"imx500: {packed} is not a converter output ({exc})") from None


def check_input(sensor: Tensor) -> None:
    """Refuse a converted input the sensor would mis-scale (see the module docstring).

    Raises:
        ModelError: naming what the converter chose and what the sensor feeds.
    """
    if sensor.signed and abs(sensor.scale - SENSOR_SCALE) <= SCALE_TOLERANCE:
        return
    kind = "signed" if sensor.signed else "unsigned"
    feeds = "(p - 128) / 128" if sensor.signed else "p / 256"
    raise ModelError(
        f"imx500: the converted input is {kind} with scale {sensor.scale:g}, but the sensor "
        f"feeds it {feeds} whatever the scale, while the model expects p / 127.5 - 1 (a signed "
        f"input of scale 1/128 = 0.0078125): on the camera every picture would be mis-scaled")


def check_shapes(params: DnnParams, height: int, width: int, classes: int) -> None:
    """The converted network takes the model's input size and gives one score per class.

    Raises:
        ModelError: another shape.
    """
    if params.input.shape != (height, width, 3) or params.output.shape != (classes,):
        raise ModelError(f"imx500: the network takes {params.input.shape} and gives "
                         f"{params.output.shape}; the model takes ({height}, {width}, 3) and "
                         f"has {classes} classes")


def check_network(packed: Path, height: int, width: int, classes: int) -> DnnParams:
    """:func:`read_packed`, :func:`check_input` and :func:`check_shapes` in one: what a device
    knows of a sensor network before the sensor runs it.

    Raises:
        ModelError: the first check that fails.
    """
    params = read_packed(packed)
    check_input(params.input)
    check_shapes(params, height, width, classes)
    return params
