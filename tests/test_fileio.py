"""Atomic writes: flushed to the disk before and after the rename, permissions from the umask
without ever changing it, the old file kept when the write fails."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from common import fileio

# the edge extra alone runs these (no TensorFlow): make pi-check runs them on arm64
pytestmark = pytest.mark.edge


@pytest.fixture
def events(monkeypatch) -> list[tuple[str, str]]:
    """What the disk was asked, in order: ("fsync", "file"/"dir" + name), ("replace", target)."""
    seen: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        seen.append(("fsync", kind))
        real_fsync(fd)

    def replace(src, dst):
        seen.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return seen


@pytest.fixture
def no_umask(monkeypatch):
    """os.umask sets the umask of the whole process, threads included: it must not be called."""
    def umask(mask):
        raise AssertionError("os.umask called: it changes the umask of every thread")

    monkeypatch.setattr(os, "umask", umask)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, events):
    fileio.write_text(tmp_path / "a.json", "{}\n")
    assert events == [("fsync", "file"), ("replace", "a.json"), ("fsync", "dir")]
    assert (tmp_path / "a.json").read_text() == "{}\n"


def test_a_write_by_path_is_synced_too(tmp_path, events):
    # Keras and matplotlib write by path: the bytes must still reach the disk before the rename
    fileio.atomic_write(tmp_path / "model.keras", lambda tmp: Path(tmp).write_bytes(b"zip"))
    assert events == [("fsync", "file"), ("replace", "model.keras"), ("fsync", "dir")]


def test_a_file_system_that_cannot_flush_folders_still_gets_the_file(tmp_path, monkeypatch):
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "Invalid argument")  # as on some FUSE and SMB mounts
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert fileio.write_text(tmp_path / "a.txt", "new").read_text() == "new"


def test_a_file_that_cannot_be_flushed_is_an_error_and_the_old_one_stays(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("old")

    def fsync(fd):
        raise OSError(errno.EIO, "Input/output error")  # a failing SD card

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        fileio.write_text(tmp_path / "a.txt", "new")
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old"


def test_the_umask_is_read_without_being_changed(tmp_path, no_umask):
    fileio.write_bytes(tmp_path / "b.bin", b"x")
    folder = fileio.create_temp(tmp_path, ".staging-", directory=True)
    assert (tmp_path / "b.bin").read_bytes() == b"x" and folder.is_dir()


def test_permissions_follow_the_umask(tmp_path, umask_027):
    path = fileio.write_text(tmp_path / "labels.txt", "a\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # not mkstemp's 0600
    folder = fileio.create_temp(tmp_path, ".staging-", directory=True)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o750  # not mkdtemp's 0700


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")

    def half(tmp):
        Path(tmp).write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fileio.atomic_write(target, half)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_temporary_name_is_recognised_as_belonging_to_its_target(tmp_path):
    tmp = fileio.create_temp(tmp_path, *fileio.temp_affixes("report.json"))
    assert fileio.is_temp_of(tmp.name, "report.json")
    assert not fileio.is_temp_of(tmp.name, "report.md")
    assert not fileio.is_temp_of("report.json", "report.json")
    assert not fileio.is_temp_of(".report..json", "report.json")
