"""Atomic file writes (a crash, Ctrl-C or a pulled plug never leaves a half-written artifact)
and file hashes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any


def create_temp(folder: str | os.PathLike, prefix: str, suffix: str = "", *,
                directory: bool = False, mode: int | None = None) -> Path:
    """Create a new file (or, with ``directory``, a folder) with a random name in ``folder``.

    Unlike :mod:`tempfile` (0600/0700), it gets the permissions of any new file, 0666 (0777)
    less the umask, which the kernel applies: the umask is never read or changed, so threads
    that create files meanwhile are not affected. ``mode`` (e.g. 0o600 for a secret) replaces
    0666/0777 from the moment the file exists: never wider, whatever the umask. The name is
    created anew (``O_EXCL``), never through a link someone put there.

    Raises:
        OSError: the folder is not writable.
    """
    for _ in range(100):
        path = Path(folder) / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            if directory:
                os.mkdir(path, 0o777 if mode is None else mode)
            else:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                                 0o666 if mode is None else mode))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {folder}")


def temp_affixes(name: str) -> tuple[str, str]:
    """Prefix and suffix of :func:`atomic_write`'s temporary names for a file called ``name``:
    hidden, and ending like the target (Keras and matplotlib pick formats by suffix)."""
    path = Path(name)
    return f".{path.stem}.", "".join(path.suffixes)


def is_temp_of(name: str, target: str) -> bool:
    """Whether ``name`` is a temporary file of :func:`atomic_write` for a file called ``target``
    (left behind when a process was killed mid-write)."""
    prefix, suffix = temp_affixes(target)
    return (name.startswith(prefix) and name.endswith(suffix)
            and len(name) > len(prefix) + len(suffix))


def fsync(path: str | os.PathLike) -> None:
    """Flush a file's bytes, or a folder's entries (a rename), from the page cache to the disk.

    Some file systems (network shares, FUSE) cannot flush a folder; there the rename stands as
    the file system makes it. A file that cannot be flushed is an error.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP) or not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any],
                 mode: int | None = None) -> Path:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``.

    The temporary file sits in the same folder (so the rename is atomic) and keeps the
    target's suffix. Its bytes are flushed to the disk before the rename and the folder after
    it, so a power cut leaves the old file or the new one, never an empty one. Permissions
    follow the umask, or ``mode`` from the file's creation on (see :func:`create_temp`). A link
    at ``path`` is replaced, not followed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = create_temp(path.parent, *temp_affixes(path.name), mode=mode)
    try:
        write(str(tmp))
        fsync(tmp)
        os.replace(tmp, path)
        fsync(path.parent)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write ``obj`` as indented JSON."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex: what a bundle records to tie files together."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def link_new(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Give ``source``'s file a second name, ``target``, never replacing a file there.

    A hard link where the file system allows one (nothing is copied, and the link appears
    whole or not at all); across file systems, or where hard links are not supported (FAT), a
    copy written under a temporary name in the target's folder, flushed, then linked or
    claimed-and-renamed into place. The target's folder is flushed after. ``source`` stays.

    Raises:
        FileExistsError: ``target`` exists (it is left as it was).
        OSError: ``source`` cannot be read or the target's folder written.
    """
    target = Path(target)
    try:
        os.link(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP,
                             errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "File exists", str(target)) from None
        tmp = create_temp(target.parent, *temp_affixes(target.name))
        try:
            with open(source, "rb") as src, open(tmp, "wb") as dst:
                for block in iter(lambda: src.read(1 << 20), b""):
                    dst.write(block)
            fsync(tmp)
            try:
                os.link(tmp, target)  # fails, never replaces, when the name was taken meanwhile
            except OSError as again:
                if again.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                    raise
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                os.replace(tmp, target)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
    fsync(target.parent)
