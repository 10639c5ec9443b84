"""A held-out data set for int8 measurements: six kinds of texture patch, drawn by a generator
nothing in the toolchain was tuned on (not the demo's shapes, other statistics: periodic
high-contrast textures instead of one flat shape)::

    python -m benchmarks.heldout_data /tmp/patterns --per-class 200

writes ``OUT/<class>/<n>.png``: a rotated, scaled patch of the class's texture in two random
colours over a shaded background, with blur and sensor noise. Exit codes: 0 done, 2 a bad flag.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from common.argtypes import Parser, parse_command_line, positive_int

CLASSES = ("checks", "dots", "rings", "stripes", "waves", "zigzag")
SIZE = 128


def _texture(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """The class's texture as a 0..1 mask (size, size), rotated and scaled at random."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    rot = rng.uniform(0, math.pi)
    u = math.cos(rot) * xx + math.sin(rot) * yy
    v = -math.sin(rot) * xx + math.cos(rot) * yy
    period = rng.uniform(9, 22)
    k = 2 * math.pi / period
    if kind == "stripes":
        wave = np.sin(k * u)
    elif kind == "checks":
        wave = np.sin(k * u) * np.sin(k * v)
    elif kind == "dots":
        wave = np.cos(k * u) * np.cos(k * v) - 0.5
    elif kind == "rings":
        cx, cy = rng.uniform(0.2, 0.8, 2) * size
        wave = np.sin(k * np.hypot(xx - cx, yy - cy))
    elif kind == "waves":
        wave = np.sin(k * u + 2.5 * np.sin(k * v / 2.5))
    elif kind == "zigzag":
        tri = np.abs((v / period) % 2 - 1) * period  # a triangle wave along v
        wave = np.sin(k * (u + 1.2 * tri))
    else:
        raise ValueError(kind)
    return (wave > 0).astype(np.float64)


def draw_pattern(kind: str, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """One picture of ``kind`` (one of :data:`CLASSES`)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * xx + math.sin(angle) * yy)[..., None]
    low, high = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    background = low + (high - low) * (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    while np.abs(a - b).sum() < 150:  # the two colours must tell apart
        b = rng.uniform(0, 255, 3)
    mask = _texture(kind, rng, size)[..., None]
    patch = a * mask + b * (1 - mask)
    # the patch covers a random ellipse of a third to all of the picture
    cx, cy = rng.uniform(0.3, 0.7, 2)
    rx, ry = rng.uniform(0.3, 0.6, 2)
    inside = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1)[..., None]
    picture = np.where(inside, patch, background)
    image = Image.fromarray(picture.clip(0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    noisy = np.asarray(image, np.float64) + rng.normal(0, rng.uniform(3, 12), (size, size, 3))
    return Image.fromarray(noisy.clip(0, 255).astype(np.uint8))


def write_patterns(root: Path, per_class: int, seed: int = 0, size: int = SIZE) -> Path:
    """``root/<class>/<n>.png`` for every class of :data:`CLASSES`."""
    for index, kind in enumerate(CLASSES):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, index, 19])
        for n in range(per_class):
            draw_pattern(kind, rng, size).save(folder / f"{n:04d}.png")
    return root


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m benchmarks.heldout_data",
               description="write the held-out texture data set")
    p.add_argument("out", type=Path, help="folder to write (OUT/<class>/<n>.png)")
    p.add_argument("--per-class", type=positive_int, default=200)
    p.add_argument("--seed", type=int, default=0)
    args = parse_command_line(lambda: p.parse_args(argv))
    if isinstance(args, int):
        return args
    write_patterns(args.out, args.per_class, args.seed)
    print(f"{args.out}: {len(CLASSES)} classes × {args.per_class} pictures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
