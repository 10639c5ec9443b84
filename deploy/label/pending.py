"""What is left to label in an edge-collect folder, in the order a person should see it.

Every picture of ``DIR/index.jsonl`` that the journal has not labelled or discarded and whose
file is still there. Each comes with a suggestion — the label a device gave it (a capture), the
model's top guess (an uncertain frame, with its scores), the live model's answer (a shadow
disagreement, beside the candidate's) — and is ordered most uncertain first: frames with
scores by their top score, lowest first; then unlabelled frames with none; then pictures a
device labelled. Near-duplicates (:mod:`deploy.label.dhash`) form a group that one key labels
whole. The classes offered are ``INTO``'s folders, then the labels the collection knows, each
with a key.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from common.fileio import write_json
from deploy.collect.collection import STATE, UNLABELLED, read_index
from deploy.label import dhash
from deploy.label.journal import Journal

KEYS = "123456789abcdefghijklmopqrstvwyz"
"""One key per class, in the classes' order: digits, then letters other than the page's own
(n new class, u undo, x discard)."""
HASHES = "dhash.json"
"""The pictures' difference hashes, by sha256, cached in ``DIR/.edge-collect/``."""


@dataclass(frozen=True)
class Picture:
    """One picture to label."""

    sha256: str
    path: Path
    kind: str
    """``capture``, ``uncertain`` or ``shadow`` (:data:`deploy.collect.collection.KINDS`)."""
    suggestion: str | None
    """The label a device gave, else the model's top guess; None: neither is known."""
    source: str
    """Where the suggestion comes from: ``device``, ``model``, ``shadow`` or ``none``."""
    top: float | None
    """The top score (the live model's, for a shadow frame); None: no scores."""
    scores: list[dict]
    shadow: dict | None
    hosts: list[str]
    time: str

    def order(self) -> tuple:
        """Most uncertain first (see the module docstring)."""
        if self.top is not None:
            return 0, self.top, self.time
        return (2 if self.source == "device" else 1), 0.0, self.time

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "kind": self.kind, "suggestion": self.suggestion,
                "source": self.source, "scores": self.scores, "shadow": self.shadow,
                "hosts": self.hosts, "time": self.time, "name": self.path.name}


def picture_of(folder: Path, entry: dict) -> Picture | None:
    """An index entry as a :class:`Picture`; None when its file is not in ``folder``."""
    path = folder / (entry.get("file") or "")
    if not entry.get("file") or not path.is_file():
        return None
    scores = entry.get("scores") or []
    top = max((s["score"] for s in scores), default=None)
    if entry.get("label"):
        suggestion, source = entry["label"], "device"
    elif entry.get("shadow"):
        suggestion, source = entry.get("prediction"), "shadow"
    elif entry.get("prediction"):
        suggestion, source = entry["prediction"], "model"
    else:
        suggestion, source = None, "none"
    if source == "device" and entry.get("kind") != "capture":
        top = None  # labelled by a device elsewhere: no second look needed first
    return Picture(entry["sha256"], path, entry.get("kind", "uncertain"), suggestion, source,
                   top, scores, entry.get("shadow"), entry.get("hosts", []),
                   entry.get("first_time", ""))


class Pending:
    """The pictures left to label and their groups; :meth:`refresh` after each action.

    Args:
        folder: the edge-collect folder.
        journal: its journal (what was labelled or discarded).
        near: the dHash distance of near-duplicates.
    """

    def __init__(self, folder: str | os.PathLike, journal: Journal,
                 near: int = dhash.NEAR) -> None:
        self.folder = Path(folder)
        self.journal = journal
        self.near = near
        self.entries = read_index(self.folder / "index.jsonl")
        self.hashes = self._hashes()
        self.known = self._known_classes()
        """The classes at the start (see :meth:`classes`)."""
        self.added: list[str] = []
        """Classes made on the page, in the order they were made."""
        self.groups: list[list[Picture]] = []
        self.refresh()

    def _hashes(self) -> dict[str, int | None]:
        """Every picture's dHash: read from the cache, the missing ones computed and saved."""
        cache = self.folder / STATE / HASHES
        try:
            known = {k: (int(v, 16) if v else None)
                     for k, v in json.loads(cache.read_text(encoding="utf-8")).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            known = {}
        fresh = False
        for digest, entry in self.entries.items():
            if digest in known:
                continue
            picture = picture_of(self.folder, entry)
            if picture is None:
                continue
            try:
                known[digest] = dhash.dhash(picture.path)
            except OSError:
                known[digest] = None  # not a picture Pillow reads: a group of its own
            fresh = True
        if fresh:
            write_json(cache, {k: (f"{v:016x}" if v is not None else "")
                               for k, v in known.items()})
        return known

    def refresh(self) -> None:
        """Recompute what is left after an action (or an undo)."""
        decided = self.journal.decided()
        pictures = sorted((p for digest, entry in self.entries.items()
                           if digest not in decided
                           and (p := picture_of(self.folder, entry)) is not None),
                          key=Picture.order)
        self.groups = [[pictures[i] for i in members] for members in
                       dhash.group([self.hashes.get(p.sha256) for p in pictures], self.near)]

    def group(self, leader: str) -> list[Picture] | None:
        """The group whose first picture has sha256 ``leader``."""
        return next((g for g in self.groups if g[0].sha256 == leader), None)

    def picture(self, digest: str) -> Path | None:
        """Where the picture with sha256 ``digest`` is now (to show it), if it is pending."""
        return next((p.path for g in self.groups for p in g if p.sha256 == digest), None)

    def _known_classes(self) -> list[str]:
        into = self.journal.into
        existing = sorted(p.name for p in into.iterdir()
                          if p.is_dir() and not p.name.startswith(".")) if into.is_dir() else []
        known = set()
        for entry in self.entries.values():
            known.update(label for label in (entry.get("label"), entry.get("prediction"))
                         if label)
            known.update(s["label"] for s in entry.get("scores") or [])
        known.discard(UNLABELLED)
        return existing + sorted(known - set(existing))

    def classes(self) -> list[str]:
        """The classes to offer, in an order (and so with keys) that stays put while the page
        runs: ``INTO``'s folders and the labels the collection knows (devices' labels, the
        models' guesses) as they were at the start, then the classes made on the page."""
        return self.known + [c for c in self.added if c not in self.known]

    def add_class(self, name: str) -> None:
        """Offer ``name`` from now on (a class made on the page), after the others."""
        if name not in self.known and name not in self.added:
            self.added.append(name)

    def state(self, shown: int = 60) -> dict:
        """What the page shows: the classes with their keys, the first ``shown`` groups, the
        counts, what undo would undo."""
        undo = None
        if self.journal.stack:
            last = self.journal.stack[-1]
            undo = {"action": last.kind, "label": last.label, "count": len(last.moves)}
        return {
            "classes": [{"name": c, "key": KEYS[i] if i < len(KEYS) else None}
                        for i, c in enumerate(self.classes())],
            "groups": [{"id": g[0].sha256, "count": len(g), **g[0].to_json()}
                       for g in self.groups[:shown]],
            "pending": {"groups": len(self.groups), "pictures": sum(map(len, self.groups))},
            "done": self.journal.counts(), "undo": undo, "into": str(self.journal.into)}
