"""The difference hash (dHash) of a picture: 64 bits that near-duplicates share almost all of.

The picture is shrunk to 9×8 grey pixels and each bit says whether a pixel is brighter than its
right-hand neighbour, so the hash follows the picture's coarse structure, not its exact bytes:
a burst of frames of the same scene, or one re-encoded, differ by a few bits; unrelated
pictures by about half of them (Krawetz, "Kind of Like That", 2013).
"""

from __future__ import annotations

import os

import numpy as np

BITS = 64
NEAR = 6
"""Hashes at most this many bits apart are taken for near-duplicates (of :data:`BITS`)."""


def dhash(path: str | os.PathLike) -> int:
    """The 64-bit difference hash of the picture at ``path``.

    Raises:
        OSError: the file cannot be read or is not a picture Pillow decodes.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("L", (64, 64))  # a JPEG decodes at a fraction of its size: fast
            grey = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.BILINEAR),
                              dtype=np.int16)
    except (UnidentifiedImageError, ValueError) as exc:
        raise OSError(f"{path}: not a picture ({exc})") from None
    bits = (grey[:, 1:] > grey[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def distance(a: int, b: int) -> int:
    """How many bits two hashes differ in."""
    return bin(a ^ b).count("1")


_POPCOUNT = np.array([bin(n).count("1") for n in range(256)], dtype=np.uint8)


def group(hashes: list[int | None], near: int = NEAR) -> list[list[int]]:
    """Indexes of ``hashes`` in groups of near-duplicates, in order: each picture joins the
    first earlier group whose first picture is at most ``near`` bits away, else starts one
    (None, a picture that could not be hashed, is a group of its own)."""
    leaders = np.zeros(len(hashes), dtype=np.uint64)
    owners: list[int] = []  # the group of each leader
    groups: list[list[int]] = []
    for i, value in enumerate(hashes):
        if value is not None and owners:
            apart = _POPCOUNT[(leaders[:len(owners)] ^ np.uint64(value)).view(np.uint8)]
            close = np.flatnonzero(apart.reshape(-1, 8).sum(axis=1) <= near)
            if close.size:
                groups[owners[close[0]]].append(i)
                continue
        groups.append([i])
        if value is not None:
            leaders[len(owners)] = value
            owners.append(len(groups) - 1)
    return groups
