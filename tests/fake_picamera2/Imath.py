"""Stand-in for ``Imath`` (Raspberry Pi OS: apt ``python3-openexr``), which picamera2's IMX500
helper imports at import time since 0.3.32; the helper uses it only for tensor injection from
EXR files, which the stand-in does not do."""


class PixelType:
    """A pixel type of an EXR channel."""

    UINT, HALF, FLOAT = 0, 1, 2

    def __init__(self, v: int) -> None:
        self.v = v


class Channel:
    """An EXR channel's description."""

    def __init__(self, type: PixelType | None = None) -> None:
        self.type = type or PixelType(PixelType.HALF)
