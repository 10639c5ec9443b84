"""How a picture becomes model input: the one definition used everywhere.

Training (through ``tf.numpy_function``), int8 calibration, the export checks, the
benchmarks and the device all call :func:`load_image` and :func:`to_model_pixels` (or
:func:`load_model_pixels`, both in one), so the pixels a model sees on the Pi are the pixels
it was trained on: uint8 RGB in [0, 255]. The model does its own normalisation in-graph;
Keras takes these pixels as float32, and the edge runtime quantizes them into the input
tensor (:meth:`edge_runtime.classifier.Classifier.tensor_from_pixels`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edge_runtime.errors import ImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
"""File suffixes (compared case-insensitively) that are treated as images."""

RESIZE_METHOD = "bilinear"
"""Resize filter name used in training, recorded in config.json and the export manifest."""

_PIL_FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}
RESIZE_METHODS = tuple(_PIL_FILTERS)
"""Every resize method a manifest may name."""


def is_image_file(path: str | os.PathLike) -> bool:
    """True when ``path`` has an image suffix and is not a hidden file."""
    name = Path(path).name
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    16-bit greyscale is scaled down (not clipped, which would turn it white),
    transparency is composited over white (the usual backdrop of cut-out
    photos; dropping alpha would expose whatever colour hides under it).
    """
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array * (255.0 / top), 0, 255).round().astype(np.uint8))
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        backdrop = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(backdrop, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def load_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as upright 8-bit RGB.

    The EXIF orientation tag is applied (phones store portrait photos
    sideways and set the tag), and animated files give their first frame.

    Raises:
        ImageError: the file is missing, truncated, or not an image.
    """
    try:
        with Image.open(path) as opened:
            opened.seek(0)
            opened.load()
            image = ImageOps.exif_transpose(opened)
            return to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc})") from exc


def resize(image: Image.Image, size: tuple[int, int], method: str = RESIZE_METHOD) -> Image.Image:
    """Resize to ``size`` = (height, width), ignoring aspect ratio as training does."""
    try:
        resample = _PIL_FILTERS[method]
    except KeyError:
        raise ValueError(f"resize method {method!r}: expected one of {sorted(_PIL_FILTERS)}") from None
    height, width = size
    if image.size == (width, height):
        return image
    return image.resize((width, height), resample=resample)


def to_model_pixels(image: Image.Image | np.ndarray, size: tuple[int, int],
                    method: str = RESIZE_METHOD) -> np.ndarray:
    """Turn an RGB picture into the model's input pixels: uint8 (H, W, 3) in [0, 255].

    This is the definition: Keras takes these pixels as float32, and the edge runtime
    quantizes these integers straight into the model's input tensor.

    Args:
        image: a Pillow image (any mode) or an RGB uint8 array (H, W, 3), e.g. a
            camera frame already converted from OpenCV's BGR.
        size: (height, width) of the model input.
        method: resize filter name; the manifest records the one used in training.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an RGB array of shape (H, W, 3), got {image.shape}")
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="RGB")
    else:
        image = to_rgb(image)
    return np.asarray(resize(image, size, method))


def load_model_pixels(path: str | os.PathLike, size: tuple[int, int],
                      method: str = RESIZE_METHOD) -> np.ndarray:
    """:func:`load_image` then :func:`to_model_pixels`: uint8 (H, W, 3); raises :class:`ImageError`."""
    return to_model_pixels(load_image(path), size, method)

