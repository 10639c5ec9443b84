"""The pictures that came back from the devices, each distinct picture once, on the workstation.

``edge-collect`` copies each host's data root (:mod:`edge_runtime.capture.data_root`) into a
staging folder of its own under ``DIR`` (rsync, :mod:`deploy.collect.pull`); this module takes
what is there into the collection, identified by the sha256 of its bytes across hosts and runs::

    DIR/
      <label>/<sha256[:16]>.jpg     pictures labelled on a device (edge-capture, capture panel)
      unlabelled/<sha256[:16]>.jpg  uncertain frames and shadow disagreements: for edge-label
      index.jsonl                   one line per distinct picture (:func:`entry_of`)
      monitor/<host>.jsonl          each host's monitoring records, gathered across runs
      .edge-collect/hosts/<host>/data/         the copy of the host's data root (staging)
      .edge-collect/hosts/<host>/hashes.json   the staged files' sha256, by size and time

A picture is stored as a hard link of its staged copy (no second copy on the disk; a copy where
links cannot be made), under a name that is never reused, and only then is its index line
appended and flushed: a run killed at any moment leaves pictures and lines that a second run
completes, never a half picture. The index is rewritten, one line per picture, only at the end
of a run that added lines. A picture already indexed is never stored again, wherever it is
now (``edge-label`` moves pictures out): the index is what says a picture arrived.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path

from common.fileio import link_new, sha256, write_json, write_text
from common.labels import label_problem
from edge_runtime.capture import data_root

UNLABELLED = "unlabelled"
"""The folder of pictures nobody labelled yet (uncertain frames, shadow disagreements)."""
DISCARDED = "discarded"
"""Where edge-label puts a picture it was told to discard (kept, never deleted)."""
MONITOR = "monitor"
"""Each host's monitoring records: ``monitor/<host>.jsonl``."""
REPORT = "report"
"""``edge-collect --report``'s folder."""
RESERVED = (UNLABELLED, DISCARDED, MONITOR, REPORT)
"""Folders of ``DIR`` that are not labels: a device label of that name is stored unlabelled."""
INDEX = "index.jsonl"
STATE = ".edge-collect"
"""The hidden folder of the collection's own state (staging copies, hashes, the lock)."""
KINDS = {data_root.CAPTURES: "capture", data_root.UNCERTAIN: "uncertain",
         data_root.SHADOW: "shadow"}
"""The data root's picture folders and the ``kind`` their pictures get in the index."""


class CollectionError(OSError):
    """The collection folder cannot be used (not writable, locked by another run)."""


@dataclass(frozen=True)
class Imported:
    """What taking one host's staged copy into the collection did."""

    pictures: int
    """Pictures in the host's copy."""
    new: int
    """Pictures stored now, seen on no host before."""
    monitor: int
    """Monitoring records added to ``monitor/<host>.jsonl``."""


def _normal_time(text: object, fallback: float) -> str:
    """A record's time as the index writes every time (UTC, milliseconds), else ``fallback``'s
    (the file's modification time), so times compare as strings."""
    if isinstance(text, str):
        try:
            return data_root.parse_time(text).astimezone(timezone.utc).isoformat(
                timespec="milliseconds")
        except ValueError:
            pass
    return data_root.utc_time(fallback)


def _scores(value: object) -> list[dict] | None:
    if not isinstance(value, list):
        return None
    found = [{"label": str(s["label"]), "score": float(s["score"])} for s in value
             if isinstance(s, dict) and "label" in s and isinstance(s.get("score"), int | float)]
    return found or None


def entry_of(host: str, folder: str, relative: str, record: dict, digest: str,
             mtime: float) -> dict:
    """The index entry of one staged picture, before it is merged with what other hosts and runs
    saw (:func:`merged`).

    Args:
        host: the host it came from.
        folder: its data-root folder (:data:`KINDS`' keys).
        relative: its path relative to the data root (``captures/cup/capture-….jpg``).
        record: its line of the folder's ``index.jsonl`` (``{}`` when it has none: a device
            stopped between the picture and its line); the folder it sits in stands in.
        digest: its sha256.
        mtime: its modification time, the time when the record has none.

    Returns:
        ``{"sha256", "file" (None: not stored yet), "kind", "label", "prediction", "scores",
        "shadow", "hosts", "first_time", "last_time", "model_versions"}``.
    """
    parts = relative.split("/")
    in_folder = parts[1] if len(parts) > 2 else None
    label = prediction = scores = shadow = None
    versions = [record.get("model_version")]
    if folder == data_root.CAPTURES:
        label = record.get("label") or in_folder
    elif folder == data_root.UNCERTAIN:
        prediction = record.get("prediction") or in_folder
        scores = _scores(record.get("scores"))
    else:
        live, candidate = record.get("live"), record.get("candidate")
        if isinstance(live, dict) and isinstance(candidate, dict):
            shadow = {"live": live, "candidate": candidate}
            prediction = live.get("label")
            if isinstance(live.get("score"), int | float):
                scores = [{"label": str(prediction), "score": float(live["score"])}]
            versions = [live.get("version"), candidate.get("version")]
    when = _normal_time(record.get("time"), mtime)
    return {"sha256": digest, "file": None, "kind": KINDS[folder],
            "label": label if isinstance(label, str) else None,
            "prediction": prediction if isinstance(prediction, str) else None,
            "scores": scores, "shadow": shadow, "hosts": [host], "first_time": when,
            "last_time": when,
            "model_versions": sorted({v for v in versions if isinstance(v, str) and v})}


def merged(old: dict, new: dict) -> dict:
    """One picture's entry after it was seen again (another host, another run): hosts and
    model versions joined, the time span widened, a label taken when it had none, the newest
    scores kept. ``old``'s file and kind stay (the picture is not stored twice)."""
    out = dict(old)
    out["hosts"] = sorted(set(old["hosts"]) | set(new["hosts"]))
    out["model_versions"] = sorted(set(old["model_versions"]) | set(new["model_versions"]))
    out["first_time"] = min(old["first_time"], new["first_time"])
    out["last_time"] = max(old["last_time"], new["last_time"])
    if out.get("label") is None and new.get("label") is not None:
        out["label"] = new["label"]
    if new.get("scores") and (not old.get("scores") or new["last_time"] >= old["last_time"]):
        out["prediction"], out["scores"] = new["prediction"], new["scores"]
    if out.get("shadow") is None and new.get("shadow") is not None:
        out["shadow"] = new["shadow"]
    return out


def read_index(path: str | os.PathLike) -> dict[str, dict]:
    """The index's entries by sha256, later lines of a picture merged into earlier ones (a run
    appends; the end of a run leaves one line per picture)."""
    entries: dict[str, dict] = {}
    for record in data_root.read_records(path):
        digest = record.get("sha256")
        if not (isinstance(digest, str) and all(isinstance(record.get(k), list)
                                                 for k in ("hosts", "model_versions"))
                and all(isinstance(record.get(k), str) for k in ("first_time", "last_time"))):
            continue  # not a line this module wrote
        if digest in entries:
            file = entries[digest]["file"] or record.get("file")
            entries[digest] = {**merged(entries[digest], record), "file": file}
        else:
            entries[digest] = record
    return entries


class Collection:
    """The collection folder ``DIR`` (see the module docstring).

    Raises:
        CollectionError: ``DIR`` cannot be created.
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.index_path = self.folder / INDEX
        try:
            (self.folder / STATE / "hosts").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CollectionError(f"cannot create {self.folder}: {exc.strerror or exc}") \
                from None
        self.entries = read_index(self.index_path)
        """Every picture the collection has, by sha256."""
        self._appended = False
        self._record_cache: dict[tuple[str, str], dict[str, dict]] = {}

    @contextmanager
    def locked(self) -> Iterator[Collection]:
        """Hold the collection's lock: one edge-collect at a time writes into ``DIR``.

        Raises:
            CollectionError: another run holds it.
        """
        fd = os.open(self.folder / STATE / "lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CollectionError(f"another edge-collect is writing into {self.folder}; "
                                      "wait for it to end") from None
            yield self
        finally:
            os.close(fd)

    def staging(self, host: str) -> Path:
        """The folder rsync copies ``host``'s data root into."""
        return self.folder / STATE / "hosts" / host / "data"

    def _hashes(self, host: str) -> Path:
        return self.folder / STATE / "hosts" / host / "hashes.json"

    def staged_pictures(self, host: str) -> list[tuple[str, str, Path]]:
        """``(folder, path relative to the data root, staged path)`` of every picture in
        ``host``'s copy, in a stable order (hidden files, rsync's and the writers' temporary
        ones, the indexes, and anything but a regular file left out)."""
        root = self.staging(host)
        found = []
        for folder in KINDS:
            for dirpath, dirnames, filenames in os.walk(root / folder):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    if name.startswith(".") or name.endswith(".jsonl"):
                        continue
                    path = Path(dirpath) / name
                    if path.is_symlink() or not path.is_file():
                        continue  # a device's link must not make a file here a picture
                    found.append((folder, path.relative_to(root).as_posix(), path))
        return found

    def hashed(self, host: str) -> list[tuple[str, str, Path, str, float]]:
        """:meth:`staged_pictures` with each one's sha256 and modification time; a file
        hashed on an earlier run, with the same size and time, is not read again."""
        try:
            known = json.loads(self._hashes(host).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            known = {}
        hashes, out = {}, []
        for folder, relative, path in self.staged_pictures(host):
            stat = path.stat()
            key = [stat.st_size, stat.st_mtime_ns]
            previous = known.get(relative)
            digest = (previous[2] if isinstance(previous, list) and previous[:2] == key
                      else sha256(path))
            hashes[relative] = [*key, digest]
            out.append((folder, relative, path, digest, stat.st_mtime))
        if hashes != known:
            write_json(self._hashes(host), hashes)
        return out

    def _store(self, staged: Path, entry: dict) -> str:
        """Link a new picture into its folder; its path relative to ``DIR``."""
        label = entry["label"] if entry["kind"] == "capture" else None
        if label is None or label_problem(label) or label in RESERVED:
            label = UNLABELLED
        folder = self.folder / label
        folder.mkdir(exist_ok=True)
        suffix = staged.suffix.lower() or ".jpg"
        digest = entry["sha256"]
        for name in (f"{digest[:16]}{suffix}", f"{digest}{suffix}"):
            target = folder / name
            try:
                link_new(staged, target)
            except FileExistsError:
                # stored by a run killed before its index line, or a name taken by another
                # picture: only the same bytes count as stored
                if sha256(target) != digest:
                    continue
            return f"{label}/{name}"
        raise CollectionError(f"{folder}: both names of picture {digest[:16]} are taken by "
                              "other files")

    def _labelled_now(self, old: dict, seen: dict, staged: Path) -> str | None:
        """A picture stored unlabelled that a device has now captured with a label: moved
        into that label's folder (linked there first, so a crash leaves both names, never
        none); its new path, or None when it stays where it is."""
        label = seen["label"]
        current = self.folder / (old["file"] or "")
        if (seen["kind"] != "capture" or label is None or label_problem(label)
                or label in RESERVED or not (old["file"] or "").startswith(UNLABELLED + "/")
                or not current.is_file()):
            return None
        moved = self._store(staged, {**seen, "sha256": old["sha256"]})
        current.unlink()
        return moved

    def take(self, host: str) -> Imported:
        """Take ``host``'s staged copy into the collection: new pictures stored and indexed,
        known ones' entries widened (hosts, times), the monitoring records added.

        Raises:
            OSError: a file cannot be read or written (what was done stays, and a second run
                goes on from there).
        """
        lines = []
        pictures = self.hashed(host)
        new = 0
        for folder, relative, path, digest, mtime in pictures:
            records = self._records(host, folder)
            entry = entry_of(host, folder, relative, records.get(relative, {}), digest, mtime)
            old = self.entries.get(digest)
            if old is None:
                entry["file"] = self._store(path, entry)
                new += 1
            else:
                labelled = self._labelled_now(old, entry, path)
                entry = merged(old, entry)
                if labelled:
                    entry["file"] = labelled
                if entry == old:
                    continue
            self.entries[digest] = entry
            lines.append(entry)
        self._record_cache.clear()
        data_root.append_records(self.index_path, lines)
        self._appended = self._appended or bool(lines)
        return Imported(len(pictures), new, self._take_monitor(host))

    def _records(self, host: str, folder: str) -> dict[str, dict]:
        """The staged index of one picture folder of ``host``, by file."""
        key = (host, folder)
        if key not in self._record_cache:
            self._record_cache[key] = {
                r["file"]: r for r in data_root.read_records(
                    data_root.index_path(self.staging(host), folder))
                if isinstance(r.get("file"), str)}
        return self._record_cache[key]

    def _take_monitor(self, host: str) -> int:
        """Append the host's monitoring records not yet in ``monitor/<host>.jsonl``: the device
        keeps two files of them, this folder keeps them all."""
        target = self.folder / MONITOR / f"{host}.jsonl"
        seen = {json.dumps(r, sort_keys=True) for r in data_root.read_records(target)}
        fresh = []
        for record in data_root.monitor_records(self.staging(host)):
            key = json.dumps(record, sort_keys=True)
            if key not in seen:
                seen.add(key)
                fresh.append(record)
        data_root.append_records(target, fresh)
        return len(fresh)

    def verified(self, host: str) -> list[tuple[str, str]]:
        """``(path relative to the data root, sha256)`` of each of ``host``'s staged pictures
        that the index holds: arrived, hashed here, and stored or stored before. What
        ``--prune-remote`` may delete on the device (where its sha256 is checked again)."""
        return [(relative, digest) for _, relative, _, digest, _ in self.hashed(host)
                if digest in self.entries]

    def finish(self) -> None:
        """Rewrite the index with one line per picture, when this run appended lines (atomic:
        the old index stays until the new one is whole)."""
        if self._appended:
            write_text(self.index_path, "".join(json.dumps(e, ensure_ascii=False) + "\n"
                                                for e in self.entries.values()))
            self._appended = False
