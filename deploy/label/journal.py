"""Labelling as moves of files, journalled first so that nothing is lost and undo survives a
restart (``DIR/label-journal.jsonl``).

An action — label a group of pictures, or discard it — is a list of moves decided in full
before anything moves: each picture to ``INTO/<label>/`` (labelled) or ``DIR/discarded/``
(discarded, kept), under its own name, or a name with its sha256 when that one is taken by
other bytes (a file with the same bytes already there is kept, and the move only removes the
collection's copy). The action's line is appended to the journal and flushed, then each picture
is linked to its new name (never replacing a file) and only then unlinked from the old one. A
crash between two steps leaves a picture under both names, never under none; the next start
finishes the last action (only the last can be unfinished: actions are done one at a time).
Undo is an action too (``{"action": "undo", "of": N}``): the moves of the last action not yet
undone, reversed.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from common.fileio import fsync, link_new, sha256
from common.labels import label_problem
from deploy.collect.collection import DISCARDED, RESERVED
from edge_runtime.capture import data_root

JOURNAL = "label-journal.jsonl"
"""The journal, in the edge-collect folder."""


class LabelError(Exception):
    """An action that cannot be done: a bad label, nothing to undo, a picture moved away by
    hand. Nothing was moved."""


class BadLabel(LabelError, ValueError):
    """A name that cannot be a class."""


@dataclass(frozen=True)
class Move:
    """One picture's move (absolute paths)."""

    sha256: str
    source: str
    target: str
    kept: bool = False
    """The target already held these bytes: it stays when the move is undone."""

    def to_json(self) -> dict:
        return {"sha256": self.sha256, "from": self.source, "to": self.target,
                "kept": self.kept}


@dataclass(frozen=True)
class Action:
    """A label or discard action of the journal."""

    seq: int
    kind: str
    """``label`` or ``discard``."""
    label: str | None
    moves: tuple[Move, ...]


def check_label(name: str) -> str:
    """``name`` stripped, when it can be a class (:func:`common.labels.label_problem`, and not
    one of the edge-collect folder's own names).

    Raises:
        BadLabel: saying why not.
    """
    name = name.strip()
    problem = label_problem(name)
    if problem:
        raise BadLabel(problem)
    if name in RESERVED:
        raise BadLabel(f"{name!r} is a folder edge-collect keeps for itself; pick another "
                         "name")
    return name


def _same(path: Path, digest: str) -> bool:
    try:
        return sha256(path) == digest
    except OSError:
        return False


def _free_name(folder: Path, source: Path, digest: str) -> tuple[Path, bool]:
    """The picture's name in ``folder`` and whether the same bytes are there already."""
    for name in (source.name, f"{source.stem}-{digest[:12]}{source.suffix}",
                 f"{source.stem}-{digest}{source.suffix}"):
        target = folder / name
        if not os.path.lexists(target):
            return target, False
        if _same(target, digest):
            return target, True
    raise LabelError(f"{folder}: the names for picture {digest[:12]} are taken by other files")


def _carry_out(move: Move, reverse: bool = False) -> None:
    """Do one move (or its reverse); done already, it does nothing.

    Raises:
        LabelError: the picture is under neither name (moved or deleted by hand), or another
            file took the name it goes to.
    """
    source, target = (move.target, move.source) if reverse else (move.source, move.target)
    source, target = Path(source), Path(target)
    if not source.exists():
        if target.exists():
            return  # done before a crash
        raise LabelError(f"picture {move.sha256[:12]} is gone from {source} (moved or deleted "
                         "by hand)")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        link_new(source, target)
    except FileExistsError:
        if not _same(target, move.sha256):
            raise LabelError(f"{target} holds another picture now; {source} stays") from None
    if reverse and move.kept:
        return  # the target was there before the label: it stays too
    source.unlink()
    fsync(source.parent)


class Journal:
    """The journal of one edge-collect folder, and the moves it records; thread-safe.

    Args:
        folder: the edge-collect folder (``DIR``).
        into: where labelled pictures go (``INTO/<label>/``).

    Raises:
        LabelError: the last action, left unfinished by a crash, cannot be finished (a
            picture under neither name).
        OSError: the journal cannot be read.
    """

    def __init__(self, folder: str | os.PathLike, into: str | os.PathLike) -> None:
        self.folder = Path(folder).resolve()
        self.into = Path(into).resolve()
        self.path = self.folder / JOURNAL
        self.stack: list[Action] = []
        """The actions not undone, oldest first: undo takes the last."""
        self._seq = 0
        self._lock = threading.Lock()
        last = None
        for record in data_root.read_records(self.path):
            last = self._replay(record) or last
        if last is not None:  # the one action a crash may have left half done
            action, reverse = last
            for move in action.moves:
                _carry_out(move, reverse)

    def _replay(self, record: dict) -> tuple[Action, bool] | None:
        try:
            self._seq = max(self._seq, int(record["seq"]))
            if record["action"] == "undo":
                if self.stack and self.stack[-1].seq == record["of"]:
                    return self.stack.pop(), True
                return None
            action = Action(int(record["seq"]), record["action"], record.get("label"),
                            tuple(Move(m["sha256"], m["from"], m["to"], bool(m.get("kept")))
                                  for m in record["moves"]))
        except (KeyError, TypeError, ValueError):
            return None  # not a line this module wrote
        self.stack.append(action)
        return action, False

    def decided(self) -> dict[str, Action]:
        """Each picture labelled or discarded (not undone), by sha256."""
        return {move.sha256: action for action in self.stack for move in action.moves}

    def counts(self) -> dict[str, int]:
        """Pictures labelled and discarded, not undone."""
        found = {"labelled": 0, "discarded": 0}
        for action in self.stack:
            found["labelled" if action.kind == "label" else "discarded"] += len(action.moves)
        return found

    def _append(self, record: dict) -> None:
        data_root.append_record(self.path, {"time": data_root.utc_time(), **record})

    def _act(self, kind: str, label: str | None, pictures: list[tuple[str, Path]],
             folder: Path) -> Action:
        if not pictures:
            raise LabelError("no picture to move")
        with self._lock:
            moves = []
            taken: set[Path] = set()
            for digest, path in pictures:
                path = Path(path).resolve()
                if not path.is_file():
                    raise LabelError(f"{path} is gone (moved or deleted by hand)")
                target, kept = _free_name(folder, path, digest)
                if target in taken:  # two pictures of one name in one action
                    target, kept = folder / f"{path.stem}-{digest}{path.suffix}", False
                taken.add(target)
                moves.append(Move(digest, str(path), str(target), kept))
            self._seq += 1
            action = Action(self._seq, kind, label, tuple(moves))
            self._append({"seq": action.seq, "action": kind, "label": label,
                          "moves": [m.to_json() for m in moves]})
            self.stack.append(action)
            for move in moves:
                _carry_out(move)
            return action

    def label(self, pictures: list[tuple[str, Path]], label: str) -> Action:
        """Move ``pictures`` (sha256, path) into ``INTO/<label>/``.

        Raises:
            LabelError: a bad label (nothing moved), or a picture that is gone.
        """
        label = check_label(label)
        return self._act("label", label, pictures, self.into / label)

    def discard(self, pictures: list[tuple[str, Path]]) -> Action:
        """Move ``pictures`` (sha256, path) into ``DIR/discarded/`` (kept, out of the way)."""
        return self._act("discard", None, pictures, self.folder / DISCARDED)

    def undo(self) -> Action:
        """Put back the pictures of the last action not undone; returns that action.

        Raises:
            LabelError: nothing to undo, or a picture of it was moved away by hand (nothing
                is put back then).
        """
        with self._lock:
            if not self.stack:
                raise LabelError("nothing to undo")
            action = self.stack[-1]
            for move in action.moves:
                if not Path(move.target).exists() and not Path(move.source).exists():
                    raise LabelError(f"cannot undo: {move.target} is gone (moved or deleted "
                                     "by hand)")
            self._seq += 1
            self._append({"seq": self._seq, "action": "undo", "of": action.seq})
            self.stack.pop()
            for move in action.moves:
                _carry_out(move, reverse=True)
            return action

