"""The Raspberry Pi AI Camera's classifier: the network runs on the sensor, which hands each frame
over with its answer (:class:`SensorFrame`); :class:`SensorClassifier` turns that answer into the
same predictions as any model's, so top-k, threshold, JSON, summary, window and live view are the
ones every camera uses. The frames come from
:class:`~edge_runtime.sources.ai_camera.Imx500Source`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_runtime.classifier import Prediction, top_k
from edge_runtime.errors import CameraError, ModelError
from edge_runtime.manifest import find_manifest


class SensorFrame(np.ndarray):
    """A BGR frame with the sensor's answer for it: ``outputs`` (the class scores, float32),
    ``dnn_ms`` (the sensor's inference time, 0 when it did not say) and ``logits`` (the
    network's intrinsics say its outputs are logits, softmax to be applied on the CPU)."""

    outputs: np.ndarray
    dnn_ms: float
    logits: bool

    @classmethod
    def of(cls, frame: np.ndarray, outputs: np.ndarray, dnn_ms: float,
           logits: bool = False) -> SensorFrame:
        made = np.asarray(frame).view(cls)
        made.outputs, made.dnn_ms, made.logits = outputs, dnn_ms, logits
        return made

    def __array_finalize__(self, obj) -> None:
        self.outputs = getattr(obj, "outputs", None)
        self.dnn_ms = getattr(obj, "dnn_ms", 0.0)
        self.logits = getattr(obj, "logits", False)


class SensorClassifier:
    """A :class:`~edge_runtime.classifier.FrameClassifier` for a network that runs on the
    sensor: the tensor of a frame is the sensor's answer for it.

    Args:
        model: ``packerOut.zip`` or a ``.rpk``; labels and the input size come from the
            bundle's ``manifest.json`` (:func:`~edge_runtime.manifest.find_manifest`: beside it
            or in the folder above ``imx500/``), else ``labels``.
        labels: a labels file, when there is no manifest.

    Raises:
        ModelError: no labels (no manifest above it and no ``--labels``).
    """

    backend = "imx500 sensor"
    threads = 0

    def __init__(self, model: str | os.PathLike, labels: str | os.PathLike | None = None):
        self.model_path = Path(model)
        manifest = find_manifest(self.model_path)
        self.manifest = manifest
        if labels is not None:
            from common.labels import read_labels

            self.labels = read_labels(Path(labels))
        elif manifest is not None and manifest.labels:
            self.labels = list(manifest.labels)
        else:
            raise ModelError(f"{self.model_path}: no manifest.json in the bundle above it to "
                             "read the labels from; pass --labels FILE")
        self.input_size = manifest.input.size if manifest else (0, 0)
        self.input_dtype = np.dtype(np.int8)

    @property
    def camera(self) -> str:
        """The AI Camera with this network: the camera opens anew for it, as the network is
        uploaded to the sensor as the camera opens."""
        return f"imx500:{self.model_path}"

    def frame_tensor(self, frame: np.ndarray) -> np.ndarray:
        """The sensor's answer for ``frame`` (a :class:`SensorFrame`)."""
        if getattr(frame, "outputs", None) is None:
            raise CameraError("the AI Camera's network classifies the sensor's own frames only")
        return frame

    def input_tensor(self, image) -> np.ndarray:
        raise ModelError("the AI Camera's network runs on its sensor: it classifies camera "
                         "frames (--camera imx500), not files")

    def classify_tensor(self, tensor: SensorFrame, k: int = 3,
                        threshold: float = 0.0) -> tuple[list[Prediction], float]:
        """Top-``k`` predictions from the sensor's scores (softmax of them for a network that
        outputs logits), and the sensor's inference ms."""
        scores = np.asarray(tensor.outputs, np.float32).reshape(-1)
        if scores.size != len(self.labels):
            raise CameraError(f"the sensor gave {scores.size} scores for {len(self.labels)} "
                              "labels: is the network on the sensor this bundle's?")
        if getattr(tensor, "logits", False):
            scores = softmax(scores)
        return top_k(scores, self.labels, k, threshold), float(tensor.dnn_ms)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities from logits (shifted by their maximum first: no overflow)."""
    exp = np.exp(logits - np.max(logits))
    return exp / exp.sum()
