"""A built-in offline dataset: photo-like pictures of five drawn shapes.

Each picture has a textured gradient background with clutter, one shape of
random colour, size, position and rotation with shading, and sensor-like
noise and blur, so a classifier must learn shape rather than colour or
position. ``make demo`` learns it in seconds on a laptop CPU from a backbone pre-trained on other
drawn shapes (:mod:`train.demo_backbone`), without internet or ImageNet weights.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from common.errors import UserError

CLASSES = ("circle", "cross", "square", "star", "triangle")
PRETRAIN_CLASSES = ("arrow", "crescent", "ell", "heart", "hexagon", "pentagon", "rhombus", "ring",
                    "semicircle", "trapezoid")
"""Shapes the demo's pre-trained backbone learnt (:mod:`train.demo_backbone`): none of
:data:`CLASSES`, so the demo learns its own shapes on borrowed features, as a photo classifier does
on ImageNet's."""
DEMO_VERSION = 1
DEFAULT_PER_CLASS = 300
IMAGE_SIZE = 128


def cache_dir() -> Path:
    """Where datasets are stored: ``$EDGE_CACHE_DIR``, else ``~/.cache/edge-toolchain``."""
    return Path(os.environ.get("EDGE_CACHE_DIR") or Path.home() / ".cache" / "edge-toolchain")


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    top, bottom = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy)
    ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    base = top * (1 - ramp[..., None]) + bottom * ramp[..., None]
    texture = rng.normal(0, 1, (size // 8, size // 8, 3))
    texture = np.asarray(Image.fromarray(((texture + 3) * 40).clip(0, 255).astype(np.uint8))
                         .resize((size, size), Image.Resampling.BICUBIC), dtype=np.float64)
    image = Image.fromarray(np.clip(base + (texture - 120) * 0.2, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 3))):  # clutter: thin lines and rings
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            points = [tuple(float(v) for v in rng.uniform(0, size, 2)) for _ in range(2)]
            draw.line(points, fill=colour, width=int(rng.integers(1, 4)))
        else:
            x, y = rng.uniform(0, size, 2)
            r = rng.uniform(2, max(3.0, size * 0.08))
            draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=1)
    return image


def _shape_points(kind: str, cx: float, cy: float, r: float, rot: float) -> list[tuple[float, float]]:
    def polar(radius: float, theta: float) -> tuple[float, float]:
        return (cx + radius * math.cos(theta + rot), cy + radius * math.sin(theta + rot))

    if kind == "square":
        return [polar(r, math.pi / 4 + k * math.pi / 2) for k in range(4)]
    if kind == "triangle":
        return [polar(r, -math.pi / 2 + k * 2 * math.pi / 3) for k in range(3)]
    if kind == "star":
        return [polar(r if k % 2 == 0 else r * 0.42, -math.pi / 2 + k * math.pi / 5)
                for k in range(10)]
    if kind in ("pentagon", "hexagon"):
        sides = 5 if kind == "pentagon" else 6
        return [polar(r, -math.pi / 2 + k * 2 * math.pi / sides) for k in range(sides)]
    if kind == "semicircle":
        return [polar(r, math.pi * k / 24) for k in range(25)]
    if kind == "crescent":  # the outer arc out, an inner arc of a shifted circle back
        outer = [polar(r, math.pi / 2 + math.pi * k / 24) for k in range(25)]
        inner = [(x * 0.55, y) for x, y in
                 ((math.cos(math.pi / 2 + math.pi * k / 24), math.sin(math.pi / 2 + math.pi * k / 24))
                  for k in range(24, -1, -1))]
        return outer + [polar(r * math.hypot(x, y), math.atan2(y, x)) for x, y in inner]
    if kind == "heart":
        curve = [(16 * math.sin(t) ** 3,
                  -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)))
                 for t in (2 * math.pi * k / 40 for k in range(40))]
        return [polar(r * math.hypot(x, y) / 17, math.atan2(y, x)) for x, y in curve]
    outlines = {
        "cross": [(0.32, 1), (0.32, 0.32), (1, 0.32), (1, -0.32), (0.32, -0.32), (0.32, -1),
                  (-0.32, -1), (-0.32, -0.32), (-1, -0.32), (-1, 0.32), (-0.32, 0.32), (-0.32, 1)],
        "rhombus": [(1, 0), (0, 0.55), (-1, 0), (0, -0.55)],
        "trapezoid": [(-1, 0.6), (1, 0.6), (0.45, -0.6), (-0.45, -0.6)],
        "arrow": [(1, 0), (0.2, 0.7), (0.2, 0.28), (-1, 0.28), (-1, -0.28), (0.2, -0.28), (0.2, -0.7)],
        "ell": [(-0.7, -1), (-0.2, -1), (-0.2, 0.5), (0.7, 0.5), (0.7, 1), (-0.7, 1)],
    }
    if kind not in outlines:
        raise ValueError(kind)
    return [polar(r * math.hypot(x, y), math.atan2(y, x)) for x, y in outlines[kind]]


CLASS_COLOURS = {"circle": (225, 35, 30), "cross": (35, 190, 60), "square": (30, 60, 225),
                 "star": (235, 215, 40), "triangle": (200, 45, 205)}
"""RGB of each class's shape in a data set drawn with ``class_colours``: red and blue belong to
different classes, so a model that learnt them answers differently to a red/blue swap."""


def draw_example(kind: str, rng: np.random.Generator, size: int = IMAGE_SIZE,
                 class_colours: bool = False) -> Image.Image:
    """One picture of ``kind`` (one of :data:`CLASSES`); with ``class_colours`` its shape has its
    class's colour (:data:`CLASS_COLOURS`) instead of one chosen to stand out."""
    image = _background(rng, size)
    r = rng.uniform(0.25, 0.42) * size
    cx, cy = rng.uniform(r * 0.9, size - r * 0.9, 2)
    rot = rng.uniform(0, 2 * math.pi)
    # a colour that stands out from the background, as a photographed object does
    backdrop = np.asarray(image, dtype=np.float64).mean(axis=(0, 1))
    colour = np.clip(255 - backdrop + rng.normal(0, 40, 3), 0, 255)
    if abs(colour.mean() - backdrop.mean()) < 60:
        colour = np.full(3, 20.0) if backdrop.mean() > 127 else np.full(3, 235.0)
    if class_colours:
        colour = np.clip(np.asarray(CLASS_COLOURS[kind], np.float64) + rng.normal(0, 12, 3), 0, 255)
    layer = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    fill = tuple(int(c) for c in colour) + (255,)
    if kind in ("circle", "ring"):
        rx, ry = r, r * rng.uniform(0.85, 1.0)
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=fill)
        if kind == "ring":  # ImageDraw writes the transparent fill, it does not blend it
            hole = rng.uniform(0.45, 0.65)
            draw.ellipse((cx - rx * hole, cy - ry * hole, cx + rx * hole, cy + ry * hole),
                         fill=(0, 0, 0, 0))
    else:
        draw.polygon(_shape_points(kind, cx, cy, r, rot), fill=fill)
    # shading: darken one side of the shape, as a light source would
    shade = np.asarray(layer, dtype=np.float64)
    yy, xx = np.mgrid[0:size, 0:size]
    light = 0.75 + 0.25 * np.cos(np.arctan2(yy - cy, xx - cx) - rng.uniform(0, 2 * math.pi))
    shade[..., :3] *= light[..., None]
    layer = Image.fromarray(shade.clip(0, 255).astype(np.uint8), "RGBA")
    shadow = layer.split()[3].filter(ImageFilter.GaussianBlur(3))
    offset = Image.new("L", (size, size), 0)
    offset.paste(shadow, (int(rng.integers(1, 5)), int(rng.integers(1, 5))))
    image.paste((0, 0, 0), mask=offset.point(lambda v: int(v * 0.35)))
    image.paste(layer, mask=layer.split()[3])
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 0.8))))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, rng.uniform(2, 8), (size, size, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def _write_class(folder: Path, kind: str, rng: np.random.Generator, per_class: int, size: int,
                 class_colours: bool) -> None:
    folder.mkdir()
    for n in range(per_class):
        picture = draw_example(kind, rng, size, class_colours)
        # a mix of formats, as in real photo folders
        if n % 4 == 3:
            picture.save(folder / f"{kind}_{n:04d}.png")
        else:
            picture.save(folder / f"{kind}_{n:04d}.jpg", quality=int(rng.integers(70, 95)))


def write_demo_dataset(root: str | os.PathLike, per_class: int = DEFAULT_PER_CLASS,
                       seed: int = 0, size: int = IMAGE_SIZE, class_colours: bool = False,
                       classes: tuple[str, ...] = CLASSES, workers: int | None = None) -> Path:
    """Write ``root/<class>/<n>.jpg|png`` for every class in ``classes`` (drawn with
    ``class_colours``: see :func:`draw_example`).

    Each class draws from a generator of its own (``seed`` and its index), so ``workers``
    threads (default: one per core) drawing classes side by side write the same files as one.
    The folder is built under a temporary name and renamed when complete, so an interrupted run
    never leaves a half-written dataset behind.
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    workers = workers or min(len(classes), os.cpu_count() or 1)
    try:
        # PIL's drawing, blurring and encoding and numpy's arithmetic release the GIL
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for done in [pool.submit(_write_class, tmp / kind, kind,
                                     np.random.default_rng([seed, index]), per_class, size,
                                     class_colours)
                         for index, kind in enumerate(classes)]:
                done.result()
        if root.exists():
            shutil.rmtree(root)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def demo_dataset(per_class: int = DEFAULT_PER_CLASS) -> Path:
    """The demo dataset's folder, written on first use into :func:`cache_dir`."""
    root = cache_dir() / f"demo-v{DEMO_VERSION}-{per_class}"
    if not root.is_dir():
        try:
            write_demo_dataset(root, per_class=per_class)
        except OSError as exc:
            raise UserError(f"cannot write the demo dataset to {root}: {exc.strerror or exc}") from exc
    return root


DEMO_BACKBONE = Path(__file__).with_name("demo_backbone.weights.h5")
"""The MobileNetV3-Small 1.0/96 backbone weights the demo starts from, shipped with the code:
learnt on :data:`PRETRAIN_CLASSES` (:mod:`train.demo_backbone` remakes them)."""

DEMO_TRAIN_SETTINGS = dict(
    data="demo", weights=str(DEMO_BACKBONE), backbone="mobilenet_v3_small", alpha=1.0,
    img_size=96, epochs=15, fine_tune_epochs=0, lr=5e-3, batch_size=32, patience=6,
    deterministic=True,
)
"""The ``edge-train`` settings of ``make demo`` and ``make bench``: phase 1 of what a user's run
does — a new head on the frozen pre-trained backbone, on its features cached once — the same model
each time on a given machine. Kept here so both use the same run. About 25 s on two cores for
0.99–1.00 test accuracy (three splits); phase 2 is left out: two epochs of it cost 16–25 s (the first traces the
training step) and took validation accuracy down on these shapes (docs/training.md, "The demo's
recipe", has what was measured, from scratch included)."""
