"""Stand-in for ``OpenEXR`` (Raspberry Pi OS: apt ``python3-openexr``), imported at import time by
picamera2's IMX500 helper since 0.3.32 (its annotations name ``OpenEXR.InputFile``)."""


class InputFile:
    """An EXR file to read: the stand-in has none to offer."""

    def __init__(self, path: str) -> None:
        raise OSError(f"{path}: the OpenEXR stand-in reads no EXR files")
