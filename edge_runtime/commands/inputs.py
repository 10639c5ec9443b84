"""Which image files a command line names: files, folders (recursively) and glob patterns."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from common.errors import UsageError
from edge_runtime.image import IMAGE_EXTENSIONS, is_image_file


def _is_hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders skipped."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and is_image_file(p) and not _is_hidden(p, root))


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Turn command-line inputs into the image files to classify, in order, without repeats.

    A file is taken as given (even without an image suffix: reading it decides);
    a folder gives its image files recursively; anything else is a glob pattern,
    expanded here so that quoted patterns work too (``**`` recurses), keeping the
    image files and the images inside matched folders.

    Raises:
        UsageError: an input matches no file, or a folder holds no image file.
    """
    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = folder_images(path)
            if not images:
                raise UsageError(f"folder {pattern} holds no image files "
                                 f"({', '.join(IMAGE_EXTENSIONS)})")
            found.extend(images)
        elif glob.has_magic(pattern):
            images = []
            for match in sorted(glob.glob(pattern, recursive=True)):
                match_path = Path(match)
                if match_path.is_dir():
                    images.extend(folder_images(match_path))
                elif match_path.is_file() and is_image_file(match_path):
                    images.append(match_path)
            if not images:
                raise UsageError(f"pattern {pattern!r} matches no image file")
            found.extend(images)
        else:
            raise UsageError(f"{pattern}: no such file or folder")
    return list(dict.fromkeys(found))
