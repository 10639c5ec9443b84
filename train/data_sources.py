"""What ``--data`` names: a folder, the built-in ``demo`` set, or ``cats_vs_dogs``."""

from __future__ import annotations

import os
from pathlib import Path

from common.errors import DataError
from train.demo_data import cache_dir, demo_dataset

CATS_VS_DOGS_URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
"""The tutorials' dataset; ``$EDGE_CATS_VS_DOGS_URL`` overrides it (a mirror, a local file://)."""


def fetch_cats_vs_dogs(url: str | None = None, cache: str | os.PathLike | None = None) -> Path:
    """Download and extract cats_and_dogs_filtered.zip once; return its data root.

    Raises:
        DataError: the download or extraction failed.
    """
    import keras

    url = url or os.environ.get("EDGE_CATS_VS_DOGS_URL") or CATS_VS_DOGS_URL
    cache = Path(cache) if cache else cache_dir()
    # Keras silently falls back to /tmp/.keras when the folder does not exist yet
    cache.mkdir(parents=True, exist_ok=True)
    try:
        extracted = Path(keras.utils.get_file("cats_and_dogs_filtered.zip", origin=url,
                                              extract=True, cache_dir=str(cache),
                                              cache_subdir="datasets"))
    except Exception as exc:  # Keras raises a bare Exception for every fetch error
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot download cats_vs_dogs from {url} ({reason[-160:]}); "
                        "download it elsewhere and pass --data FOLDER") from None
    for candidate in (extracted / "cats_and_dogs_filtered", extracted):
        if (candidate / "train").is_dir():
            return candidate
    raise DataError(f"{url}: the archive has no cats_and_dogs_filtered/train folder")


def resolve_data(data: str) -> Path:
    """The folder that ``--data`` stands for, fetching or generating it when needed."""
    if data == "demo":
        return demo_dataset()
    if data == "cats_vs_dogs":
        return fetch_cats_vs_dogs()
    return Path(data).expanduser()
