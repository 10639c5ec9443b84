"""The edge runtime's errors: one base class, so a command catches them in one place.

Each is also the built-in exception it refines (``ModelError`` is a ``ValueError``, ...), so
code that caught those before keeps working. ``edge-classify`` maps them to exit code 2.
"""

from __future__ import annotations

from common.errors import UserError


class EdgeError(UserError):
    """Anything the device side cannot do with the model, bundle, camera or input it was given."""


class ModelError(EdgeError, ValueError):
    """The model file is missing, truncated, not TFLite, or does not fit its bundle."""


class ManifestError(ModelError):
    """``manifest.json`` is unreadable or describes an input the runtime cannot produce."""


class BackendError(EdgeError, RuntimeError):
    """No interpreter backend could be used."""


class CameraError(EdgeError, RuntimeError):
    """A camera or video file could not be opened or gave no frame."""


class ImageError(EdgeError, ValueError):
    """A file could not be read as an image (corrupt, truncated, not an image)."""
