"""TensorFlow-free inference for exported image classifiers.

Only numpy, Pillow and a TFLite interpreter are imported here; OpenCV is
imported by the camera path alone. A test proves that no module of this
package imports TensorFlow.
"""

__all__ = ["IMAGE_EXTENSIONS", "RESIZE_METHOD"]

from edge_runtime.image import IMAGE_EXTENSIONS, RESIZE_METHOD
