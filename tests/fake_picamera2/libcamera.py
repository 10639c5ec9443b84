"""Stand-in for libcamera's Python binding (apt ``python3-libcamera``): the geometry types
picamera2's IMX500 helper imports."""

from __future__ import annotations


class Size:
    """A width and height."""

    def __init__(self, width: int = 0, height: int = 0) -> None:
        self.width, self.height = int(width), int(height)

    def to_tuple(self) -> tuple[int, int]:
        return self.width, self.height


class Rectangle:
    """A rectangle: its top-left corner and size."""

    def __init__(self, x: int = 0, y: int = 0, width: int = 0, height: int = 0) -> None:
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    @property
    def size(self) -> Size:
        return Size(self.width, self.height)

    def to_tuple(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height
