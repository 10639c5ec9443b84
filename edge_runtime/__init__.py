"""TensorFlow-free inference for exported image classifiers.

Only numpy, Pillow and a TFLite interpreter are needed; OpenCV and Picamera2 are imported by the
camera path alone. A test proves that no module of this package imports TensorFlow. The public
API::

    from edge_runtime import Classifier
    classifier = Classifier("export/model_int8.tflite")
    predictions, latency_ms = classifier.classify_file("photo.jpg", k=3)

The names below are imported on first use: importing this package (as every
``edge_runtime.…`` import does first) costs neither numpy nor Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from edge_runtime.errors import (
    BackendError,
    CameraError,
    EdgeError,
    ImageError,
    ManifestError,
    ModelError,
)

if TYPE_CHECKING:
    from edge_runtime.classifier import Classifier, FrameClassifier, Prediction
    from edge_runtime.image import IMAGE_EXTENSIONS, RESIZE_METHOD
    from edge_runtime.manifest import InputSpec, Manifest, Variant, find_manifest

_LAZY = {
    "Classifier": "edge_runtime.classifier", "FrameClassifier": "edge_runtime.classifier",
    "Prediction": "edge_runtime.classifier", "IMAGE_EXTENSIONS": "edge_runtime.image",
    "RESIZE_METHOD": "edge_runtime.image", "InputSpec": "edge_runtime.manifest",
    "Manifest": "edge_runtime.manifest", "Variant": "edge_runtime.manifest",
    "find_manifest": "edge_runtime.manifest",
}
"""Public name → the module that defines it, imported when the name is first asked for."""

__all__ = [
    "IMAGE_EXTENSIONS", "RESIZE_METHOD", "BackendError", "CameraError", "Classifier", "EdgeError",
    "FrameClassifier", "ImageError", "InputSpec", "Manifest", "ManifestError", "ModelError",
    "Prediction", "Variant", "find_manifest",
]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edge_runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # asked once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
