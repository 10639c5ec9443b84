"""One image classifier on a TFLite interpreter: float, float16, uint8 and int8 models alike;
and :class:`FrameClassifier`, what every way of classifying camera frames offers the stream loop."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

from common.labels import read_labels
from edge_runtime.errors import ModelError
from edge_runtime.image import RESIZE_METHOD, load_image, to_model_pixels
from edge_runtime.interpreter import available_cores, make_interpreter
from edge_runtime.manifest import InputSpec, Manifest, find_manifest
from edge_runtime.model_metadata import ModelMetadata, read_model_metadata


@dataclass(frozen=True)
class Prediction:
    """One class of a result: its name, output index and probability."""

    label: str
    index: int
    score: float


def quantize(values: np.ndarray, dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray:
    """Float values → the integer input of a quantized tensor (rounded, saturated)."""
    if scale == 0:  # not quantized: a float tensor
        return values.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """A quantized tensor's integers → float values (floats pass through)."""
    if scale == 0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * np.float32(scale)


def pixel_table(dtype: np.dtype, scale: float, zero_point: int) -> np.ndarray | None:
    """What each pixel value 0..255 becomes in an input tensor of ``dtype``, ``scale`` and
    ``zero_point``; None when every value stays itself (a uint8 input taking raw pixels).

    Pixels are integers, so quantizing them is a 256-entry lookup computed once with
    :func:`quantize` itself, from float32 (the pixels as Keras takes them): no float image per
    frame, and exactly the numbers quantizing each float32 image would give (from float64 some
    would differ: at scale 2/255, pixel 1 is 127.49999 steps in float32, 127.5 in float64).
    """
    table = quantize(np.arange(256, dtype=np.float32), dtype, scale, zero_point)
    if table.dtype == np.uint8 and np.array_equal(table, np.arange(256)):
        return None
    return table


def top_k(probabilities: np.ndarray, labels: list[str], k: int = 3,
          threshold: float = 0.0) -> list[Prediction]:
    """The ``k`` most probable classes at or above ``threshold``, best first."""
    order = np.argsort(-probabilities, kind="stable")[:max(1, k)]
    return [Prediction(labels[i], int(i), float(probabilities[i]))
            for i in order if probabilities[i] >= threshold]


@runtime_checkable
class FrameClassifier(Protocol):
    """Something that classifies camera frames, as the stream loop and a camera run use it: a
    model on the CPU (:class:`Classifier`) or the AI Camera's network on its sensor
    (:class:`~edge_runtime.sensor_classifier.SensorClassifier`)."""

    model_path: Path
    """The model file (its sha256 names it in ``--save-uncertain``'s journal)."""
    labels: list[str]
    """Class names, in output order."""
    camera: str | None
    """The ``--camera`` value its frames must come from, the camera opened anew for it (the AI
    Camera, with its network uploaded as it opens); None: any camera's frames."""

    def frame_tensor(self, frame: np.ndarray) -> np.ndarray:
        """The model's input for a camera frame (BGR); may run on another thread than
        :meth:`classify_tensor`."""

    def classify_tensor(self, tensor: np.ndarray, k: int = 3,
                        threshold: float = 0.0) -> tuple[list[Prediction], float]:
        """Top-``k`` predictions for a tensor from :meth:`frame_tensor`, and the inference ms."""


class Classifier:
    """Classify pictures with a ``.tflite`` model and the bundle beside it.

    The input size and resize method come from ``manifest.json``, else from the
    model's own TFLite metadata (or, without either, from its input tensor).
    Labels come from ``labels_path``, else ``labels.txt`` beside the model, else
    the model's metadata, else the manifest, else output indices. Inputs are quantized and
    outputs dequantized with the tensors' own parameters, so scores are
    probabilities whatever the model's I/O type.

    Raises:
        ModelError: missing or invalid model, labels that do not match its outputs.
        BackendError: no interpreter backend works.
    """

    camera: str | None = None
    """Any camera's frames (see :class:`FrameClassifier`)."""

    def __init__(self, model_path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                 threads: int | None = None, backend: str | None = None) -> None:
        self.model_path = Path(model_path)
        self.interpreter, self.backend = make_interpreter(self.model_path, threads, backend)
        self.threads = threads or available_cores()
        self.manifest: Manifest | None = find_manifest(self.model_path)
        """The manifest of the bundle the model belongs to, None for a lone ``.tflite``."""
        inputs = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.model_path}: expected 1 input and 1 output tensor, "
                             f"got {len(inputs)} and {len(outputs)}")
        self._input, self._output = inputs[0], outputs[0]
        shape = self._input["shape"]
        if len(shape) != 4 or shape[3] != 3:
            raise ModelError(f"{self.model_path}: expected an image input (1, H, W, 3), "
                             f"got {tuple(shape)}")
        self.input_size = (int(shape[1]), int(shape[2]))
        spec, said = self._input_spec()
        if spec and spec.size != self.input_size:
            raise ModelError(f"{said} says {spec.height}x{spec.width} input "
                             f"but {self.model_path.name} takes {self.input_size[0]}x"
                             f"{self.input_size[1]}")
        self.resize_method = spec.resize if spec else RESIZE_METHOD
        self.labels = self._labels(labels_path)
        n_out = int(self._output["shape"][-1])
        if len(self.labels) != n_out:
            raise ModelError(f"{len(self.labels)} labels but the model has {n_out} outputs")
        self._pixel_table = pixel_table(self.input_dtype, *self.input_quantization)

    def _input_spec(self) -> tuple[InputSpec | None, str]:
        """The input contract and where it came from: the bundle's manifest, else the
        model's own metadata (a lone ``.tflite``), else none (the tensor's size, default resize)."""
        if self.manifest is not None:
            return self.manifest.input, "manifest.json"
        contract = self.metadata.input_contract if self.metadata is not None else None
        if contract:
            return InputSpec.from_json(contract), "the model's metadata"
        return None, ""

    @cached_property
    def metadata(self) -> ModelMetadata | None:
        """The TFLite metadata embedded in the model (None without), read on first use."""
        return read_model_metadata(self.model_path)

    def _labels(self, labels_path) -> list[str]:
        beside = self.model_path.with_name("labels.txt")
        try:
            if labels_path is not None:
                return read_labels(labels_path)
            if beside.is_file():
                return read_labels(beside)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise ModelError(f"cannot read labels: {exc}") from None
        if self.metadata is not None and self.metadata.labels:
            return list(self.metadata.labels)
        if self.manifest and self.manifest.labels:
            return list(self.manifest.labels)
        n_out = int(self.interpreter.get_output_details()[0]["shape"][-1])
        return [str(i) for i in range(n_out)]

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_dtype(self) -> np.dtype:
        return np.dtype(self._output["dtype"])

    @property
    def input_quantization(self) -> tuple[float, int]:
        return tuple(self._input["quantization"])  # type: ignore[return-value]

    @property
    def output_quantization(self) -> tuple[float, int]:
        return tuple(self._output["quantization"])  # type: ignore[return-value]

    def tensor_from_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Model pixels, uint8 (H, W, 3) at the input size (what
        :func:`~edge_runtime.image.to_model_pixels` makes), → the input tensor (1, H, W, 3) in
        the input's dtype, ready to set: the one way every caller feeds the model.

        Safe to call on another thread than the one invoking the model (the camera loop
        prepares the next frame while the current one runs).

        Raises:
            ValueError: not uint8, or not the model's input size.
        """
        if pixels.dtype != np.uint8 or pixels.shape != (*self.input_size, 3):
            raise ValueError(f"expected uint8 model pixels of shape {(*self.input_size, 3)}, "
                             f"got {pixels.dtype} {pixels.shape}")
        if self._pixel_table is not None:
            pixels = self._pixel_table[pixels]
        return pixels[np.newaxis]

    def input_tensor(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """A picture (a Pillow image or an RGB uint8 array of any size) → the input tensor:
        :func:`~edge_runtime.image.to_model_pixels` then :meth:`tensor_from_pixels`."""
        return self.tensor_from_pixels(to_model_pixels(image, self.input_size,
                                                       self.resize_method))

    def frame_tensor(self, frame: np.ndarray) -> np.ndarray:
        """The input tensor of a camera or video frame (OpenCV's BGR order)."""
        from edge_runtime.frames import frame_to_image

        return self.input_tensor(frame_to_image(frame))

    def set_input_tensor(self, tensor: np.ndarray) -> None:
        """Load a tensor made by :meth:`tensor_from_pixels` or :meth:`input_tensor`."""
        self.interpreter.set_tensor(self._input["index"], tensor)

    def invoke(self) -> None:
        """Run the model on the input already set (what latency benchmarks time)."""
        self.interpreter.invoke()

    def output(self) -> np.ndarray:
        """The class probabilities of the last invocation, float32 (num_classes,)."""
        scale, zero_point = self.output_quantization
        return dequantize(self.interpreter.get_tensor(self._output["index"])[0], scale, zero_point)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Class probabilities for a tensor made by :meth:`tensor_from_pixels`."""
        self.set_input_tensor(tensor)
        self.invoke()
        return self.output()

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, num_classes) for model pixels uint8 (N, H, W, 3), one
        invocation each through :meth:`tensor_from_pixels` (export verification, the eval set's
        answers)."""
        if images.ndim != 4:
            raise ValueError(f"expected a batch of model pixels (N, H, W, 3), got {images.shape}")
        probs = [self.run(self.tensor_from_pixels(pixels)) for pixels in images]
        return np.stack(probs) if probs else np.zeros((0, len(self.labels)), np.float32)

    def classify_tensor(self, tensor: np.ndarray, k: int = 3,
                        threshold: float = 0.0) -> tuple[list[Prediction], float]:
        """Top-``k`` predictions for a tensor from :meth:`input_tensor`, and the inference ms."""
        started = time.perf_counter()
        probabilities = self.run(tensor)
        latency_ms = (time.perf_counter() - started) * 1000
        return top_k(probabilities, self.labels, k, threshold), latency_ms

    def classify(self, image: Image.Image | np.ndarray, k: int = 3,
                 threshold: float = 0.0) -> tuple[list[Prediction], float]:
        """Top-``k`` predictions for a picture, and the inference time in milliseconds."""
        return self.classify_tensor(self.input_tensor(image), k, threshold)

    def classify_file(self, path: str | os.PathLike, k: int = 3,
                      threshold: float = 0.0) -> tuple[list[Prediction], float]:
        """:meth:`classify` on an image file; raises ``ImageError`` when it is unreadable."""
        return self.classify(load_image(path), k, threshold)
