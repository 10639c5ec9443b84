"""Stand-in for ``picamera2.devices.imx500`` (picamera2 0.3.36)."""

from .imx500 import IMX500, NetworkIntrinsics

__all__ = ["IMX500", "NetworkIntrinsics"]
