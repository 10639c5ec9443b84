"""Stand-in for ``picamera2.devices`` (picamera2 0.3.36): importing it imports the IMX500 helper,
as the real one does, so a dependency that helper lacks fails here too."""

from .imx500 import IMX500

__all__ = ["IMX500"]
