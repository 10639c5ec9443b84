"""Small builders for test data: image files of every awkward kind, the demo set's images, videos."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from edge_runtime.image import is_image_file, load_image


def save_rgb(path: Path, size=(40, 30), colour=(200, 30, 30), fmt: str | None = None) -> Path:
    """A plain RGB picture; noise keeps JPEG encoders honest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # crc32, not hash(): str hashes change with every process (PYTHONHASHSEED)
    rng = np.random.default_rng(zlib.crc32(path.name.encode()))
    pixels = np.clip(np.array(colour) + rng.normal(0, 10, (size[1], size[0], 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(path, format=fmt)
    return path


def class_folder(root: Path, classes: dict[str, int], size=(40, 30)) -> Path:
    """``root/<class>/<n>.jpg`` with ``classes[name]`` images each."""
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    for c, (name, count) in enumerate(classes.items()):
        for n in range(count):
            save_rgb(root / name / f"{name}_{n:03d}.jpg", size, colours[c % len(colours)])
    return root


def demo_images(demo_dir: Path) -> list[Path]:
    """The demo data set's images, sorted (classes interleave in name order)."""
    return sorted(p for p in demo_dir.rglob("*") if is_image_file(p))


def write_video(path: Path, images: list[Path], frames: int, size=(64, 64), fps=30.0) -> Path:
    """An MJPG ``.avi`` of ``frames`` frames cycling through ``images`` (BGR, as cameras give)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for i in range(frames):
        rgb = np.asarray(load_image(images[i % len(images)]).resize(size))
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def solid_video(path: Path, rgb: tuple[int, int, int], frames: int, size=(64, 64)) -> Path:
    """A video whose every frame is one colour, given as RGB."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    frame[:] = rgb[::-1]  # OpenCV writes BGR
    for _ in range(frames):
        writer.write(frame)
    writer.release()
    return path
