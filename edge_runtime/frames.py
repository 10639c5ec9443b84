"""Frames as every source hands them out (OpenCV's BGR uint8, (H, W, 3)) → RGB for the model.

OpenCV is imported inside :func:`to_rgb_frame` only: a BGR frame, the common case, needs none.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_rgb_frame(frame: np.ndarray) -> np.ndarray:
    """An OpenCV frame (BGR, BGRA or grey, uint8) → an RGB uint8 array (H, W, 3).

    Raises:
        ValueError: the array is not an image of 1, 3 or 4 channels.
    """
    import cv2

    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"expected a BGR, BGRA or grey frame, got shape {frame.shape}")


def frame_to_image(frame: np.ndarray) -> Image.Image:
    """An OpenCV frame (BGR, BGRA or grey, uint8) → an RGB Pillow image, for preprocessing.

    A BGR frame is unpacked by Pillow straight from OpenCV's byte order: one copy,
    no intermediate RGB array.

    Raises:
        ValueError: the array is not an image of 1, 3 or 4 channels.
    """
    if frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
        height, width = frame.shape[:2]
        return Image.frombuffer("RGB", (width, height), np.ascontiguousarray(frame),
                                "raw", "BGR", 0, 1)
    return Image.fromarray(to_rgb_frame(frame), mode="RGB")
