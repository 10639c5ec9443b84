"""TensorFlow-free inference for exported image classifiers.

Only numpy, Pillow and a TFLite interpreter are imported here; OpenCV is
imported by the camera path alone. A test proves that no module of this
package imports TensorFlow. The public API::

    from edge_runtime import Classifier
    classifier = Classifier("export/model_int8.tflite")
    predictions, latency_ms = classifier.classify_file("photo.jpg", k=3)
"""

from edge_runtime.classifier import Classifier, Prediction
from edge_runtime.errors import (
    BackendError,
    CameraError,
    EdgeError,
    ImageError,
    ManifestError,
    ModelError,
)
from edge_runtime.image import IMAGE_EXTENSIONS, RESIZE_METHOD
from edge_runtime.manifest import InputSpec, Manifest, Variant

__all__ = [
    "IMAGE_EXTENSIONS", "RESIZE_METHOD", "BackendError", "CameraError", "Classifier", "EdgeError",
    "ImageError", "InputSpec", "Manifest", "ManifestError", "ModelError", "Prediction", "Variant",
]
