"""The versions of the libraries a run depended on, recorded in config.json and manifests."""

from __future__ import annotations

import importlib
import platform

_KEYS = {"PIL": "pillow", "cv2": "opencv"}
"""Modules whose import name is not the package name people know."""


def library_versions(*names: str) -> dict[str, str]:
    """Python's version and each importable library's ``__version__`` (absent ones left out).

    Importing TensorFlow costs seconds: name it only where it is already loaded.
    """
    found = {"python": platform.python_version()}
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:  # a broken install can raise anything at import
            continue
        found[_KEYS.get(name, name)] = str(getattr(module, "__version__", "unknown"))
    return found
