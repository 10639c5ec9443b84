"""Stand-in for ``libarchive.read``: ``fd_reader`` for the archive picamera2's IMX500 helper reads
out of a ``.rpk`` (a CPIO archive appended to the network firmware, holding
``network_intrinsics``), in the "newc" CPIO format; bytes that are no CPIO archive hold no
entries."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

MAGIC = b"070701"
HEADER = 110  # the magic and 13 fields of 8 hex digits


class ArchiveEntry:
    """One file of the archive: ``str()`` is its path, ``get_blocks()`` its bytes."""

    def __init__(self, path: str, data: bytes) -> None:
        self.pathname, self._data = path, data

    def __str__(self) -> str:
        return self.pathname

    def get_blocks(self) -> Iterator[bytes]:
        yield self._data


def _entries(data: bytes) -> Iterator[ArchiveEntry]:
    at = 0
    while data[at:at + 6] == MAGIC:
        fields = [int(data[at + 6 + 8 * i: at + 14 + 8 * i], 16) for i in range(13)]
        size, name_size = fields[6], fields[11]
        name = data[at + HEADER: at + HEADER + name_size - 1].decode()
        start = (at + HEADER + name_size + 3) // 4 * 4
        if name == "TRAILER!!!":
            return
        yield ArchiveEntry(name, data[start:start + size])
        at = (start + size + 3) // 4 * 4


@contextlib.contextmanager
def fd_reader(fd: int) -> Iterator[Iterator[ArchiveEntry]]:
    """The archive from ``fd``'s current offset on."""
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    yield _entries(b"".join(chunks))
