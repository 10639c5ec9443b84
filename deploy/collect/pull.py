"""Each host's data root brought to the workstation over ssh and rsync (``edge-collect``).

Per host, in parallel (:func:`deploy.fleet.each_host`, the ssh options of edge-deploy): ssh
says where the host's data root is (``HOST:PATH`` given, else its ``$EDGE_DATA_ROOT``, else
``~/edge-data``); rsync copies its picture folders and monitoring records into the host's
staging folder (only what is new or changed: a second run transfers nothing; the writers'
hidden temporary files left out); the copy is taken into the collection
(:mod:`deploy.collect.collection`, one host at a time); and with ``prune`` the pictures the
collection now holds are deleted on the device, each only when its sha256 there is still the one
hashed here. The indexes and monitoring records stay on the device (small, and the device's
writers append to them). A host that cannot be reached, or whose copy fails, has its row and
does not stop the others.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from common.labels import label_problem
from deploy.collect.collection import Collection
from deploy.fleet import (
    SSH_UNREACHABLE,
    DeployConfig,
    each_host,
    host_problem,
    last_line,
    remote_word,
    ssh_options,
)
from edge_runtime.capture import data_root

PICTURES_AND_RECORDS = (*data_root.PICTURE_FOLDERS, data_root.MONITOR)
"""The data root's folders copied to the workstation."""

PRUNE_SCRIPT = r"""
import hashlib, json, os, sys
root = os.path.realpath(sys.argv[1])
done = {"pruned": 0, "changed": 0, "missing": 0}
for line in sys.stdin:
    item = json.loads(line)
    path = os.path.realpath(os.path.join(root, item["file"]))
    if not path.startswith(root + os.sep) or not os.path.isfile(path):
        done["missing"] += 1
        continue
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != item["sha256"]:
        done["changed"] += 1
        continue
    os.unlink(path)
    done["pruned"] += 1
print(json.dumps(done))
"""
"""Run on the device by ``python3``: deletes each ``{"file", "sha256"}`` line's file under the
data root only when its bytes still hash to that sha256; prints what it did as JSON."""


@dataclass(frozen=True)
class Host:
    """One ``HOST[:PATH]`` of the command line."""

    name: str
    """``[USER@]HOST`` as ssh takes it (an alias of the ssh configuration too)."""
    root: str | None = None
    """The data root on the host; None: its ``$EDGE_DATA_ROOT``, else ``~/edge-data``."""

    @classmethod
    def parse(cls, text: str) -> Host:
        """``HOST`` or ``HOST:PATH`` → a :class:`Host` (split at the first ``:``, as rsync does).

        Raises:
            ValueError: an empty host, one that starts with ``-`` (ssh would take it for an
                option), or one that cannot name a folder here (a ``/``, a leading dot).
        """
        name, _, root = text.partition(":")
        problem = host_problem(name)
        if problem:
            raise ValueError(problem)
        problem = label_problem(name)
        if problem:  # it names the host's staging folder and monitor file here
            raise ValueError(f"{text!r}: not usable as a host name here "
                             f"({problem.replace('label', 'name')})")
        return cls(name, root or None)


@dataclass(frozen=True)
class HostRow:
    """One host's row."""

    host: str
    data_root: str
    """The data root on the host (``-`` when it could not be asked)."""
    pulled: int
    """Files rsync copied this run (pictures, indexes, records)."""
    pictures: int
    """Pictures in the host's data root."""
    new: int
    """Pictures new to the collection."""
    monitor: int
    """Monitoring records new to the collection."""
    pruned: int | None
    """Pictures deleted on the host (None: ``--prune-remote`` not asked)."""
    result: str
    ok: bool

    def to_json(self) -> dict:
        return {"host": self.host, "data_root": self.data_root, "pulled": self.pulled,
                "pictures": self.pictures, "new": self.new, "monitor": self.monitor,
                "pruned": self.pruned, "result": self.result, "ok": self.ok}


def _ssh(host: str, settings: DeployConfig, command: str, stdin: str | None = None
         ) -> subprocess.CompletedProcess:
    return subprocess.run(["ssh", *ssh_options(settings), "--", host, command],
                          capture_output=True, text=True, timeout=settings.timeout_s,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL)


def remote_root(host: Host, settings: DeployConfig) -> subprocess.CompletedProcess:
    """Ask the host for its data root's absolute path (the last line of stdout; empty when
    it has none yet)."""
    where = (remote_word(host.root) if host.root is not None
             else '"${' + data_root.ENVIRONMENT + ':-$HOME/' + data_root.DEFAULT[2:] + '}"')
    return _ssh(host.name, settings,
                f"root={where}; if cd -- \"$root\" 2>/dev/null; then pwd -P; else echo; fi")


def rsync_pull(host: str, root: str, staging: Path, settings: DeployConfig
               ) -> subprocess.CompletedProcess:
    """Copy ``root``'s picture folders and monitoring records on ``host`` into ``staging``
    (a mirror: what the device no longer has goes from the copy too; the collection keeps its
    own link). stdout names each file copied."""
    staging.mkdir(parents=True, exist_ok=True)
    filters = ["--exclude=.*", *(f"--include=/{name}/" for name in PICTURES_AND_RECORDS),
               "--exclude=/*"]
    rsh = shlex.join(["ssh", *ssh_options(settings)])
    # --no-links: a link on the device names a path on the workstation once copied
    return subprocess.run(["rsync", "-a", "--no-links", "--delete", "--delete-excluded", *filters,
                           "--out-format=%i %n", "-e", rsh, f"{host}:{root}/", f"{staging}/"],
                          capture_output=True, text=True, timeout=settings.timeout_s,
                          stdin=subprocess.DEVNULL)


def prune(host: str, root: str, verified: list[tuple[str, str]], settings: DeployConfig
          ) -> subprocess.CompletedProcess:
    """Delete ``verified`` pictures (path relative to ``root``, sha256) on ``host``, each only
    when it still hashes to its sha256 there (:data:`PRUNE_SCRIPT`, by the host's python3)."""
    lines = "".join(json.dumps({"file": f, "sha256": d}) + "\n" for f, d in verified)
    command = " ".join(["python3", "-c", shlex.quote(PRUNE_SCRIPT), shlex.quote(root)])
    return _ssh(host, settings, command, stdin=lines)


COPIED = "copied"
"""The result of a host whose copy is done, before it is taken into the collection."""


def _failure(exc: Exception) -> str:
    if isinstance(exc, subprocess.TimeoutExpired):
        return f"timed out after {exc.timeout:.0f} s"
    if isinstance(exc, OSError) and exc.filename:
        return f"cannot use {exc.filename}: {exc.strerror}"
    return f"failed: {exc}"


def pull_host(host: Host, collection: Collection, settings: DeployConfig) -> HostRow:
    """Ask ``host`` where its data root is and copy it into its staging folder; the row says
    :data:`COPIED` when it was, else what went wrong (never raises for the host's sake)."""
    def row(root: str, result: str, ok: bool, pulled: int = 0) -> HostRow:
        return HostRow(host.name, root, pulled, 0, 0, 0, None, " ".join(result.split()), ok)

    try:
        asked = remote_root(host, settings)
        if asked.returncode == SSH_UNREACHABLE:
            return row("-", f"unreachable: {last_line(asked.stderr)}", False)
        if asked.returncode != 0:
            return row("-", f"cannot find the data root (exit {asked.returncode}): "
                            f"{last_line(asked.stderr)}", False)
        found = asked.stdout.strip().splitlines()
        if not found or not found[-1]:
            return row(host.root or f"${data_root.ENVIRONMENT} or {data_root.DEFAULT}",
                       "nothing to collect: no data root there yet", True)
        root = found[-1]
        copy = rsync_pull(host.name, root, collection.staging(host.name), settings)
        if copy.returncode != 0:
            return row(root, f"copy failed (rsync exit {copy.returncode}): "
                             f"{last_line(copy.stderr)}", False)
        pulled = sum(1 for line in copy.stdout.splitlines() if line.startswith(">f"))
        return row(root, COPIED, True, pulled)
    except (subprocess.TimeoutExpired, OSError) as exc:
        return row("-", _failure(exc), False)


def prune_host(row: HostRow, verified: list[tuple[str, str]], settings: DeployConfig) -> HostRow:
    """Delete the ``verified`` pictures on the row's host (:func:`prune`); the row with
    ``pruned`` and the result (never raises for the host's sake)."""
    try:
        done = prune(row.host, row.data_root, verified, settings) if verified else None
    except (subprocess.TimeoutExpired, OSError) as exc:
        return replace(row, pruned=0, result=f"collected; pruning {_failure(exc)}", ok=False)
    if done is None:
        return replace(row, pruned=0, result="collected; nothing to prune")
    try:
        counts = json.loads(last_line(done.stdout))
        pruned = int(counts["pruned"])
    except (ValueError, KeyError, TypeError):
        return replace(row, pruned=0, ok=False,
                       result=f"collected; pruning failed (exit {done.returncode}): "
                              f"{last_line(done.stderr)}")
    if counts.get("changed"):
        return replace(row, pruned=pruned,
                       result=f"collected and pruned; {counts['changed']} picture(s) that "
                              "changed on the host since the copy kept there")
    return replace(row, pruned=pruned, result="collected and pruned")


def collect(hosts: list[Host], collection: Collection, settings: DeployConfig,
            prune_remote: bool = False, on_done=lambda row: None) -> list[HostRow]:
    """Collect from every host: the copies made ``settings.jobs`` hosts at a time, taken into
    the collection one host at a time in ``hosts`` order (so where a picture on two hosts is
    stored does not depend on which answered first), the index rewritten, then with
    ``prune_remote`` the hosts pruned, in parallel again. Rows in ``hosts`` order;
    ``on_done`` is called with each row as it is final.

    Raises:
        OSError: the collection cannot be written (a full disk): what was stored stays.
    """
    by_name = {h.name: h for h in hosts}
    rows = each_host(list(by_name), settings.jobs,
                     lambda name: pull_host(by_name[name], collection, settings))
    verified: dict[str, list[tuple[str, str]]] = {}
    try:
        for n, row in enumerate(rows):
            if row.result != COPIED:
                on_done(row)
                continue
            taken = collection.take(row.host)
            rows[n] = replace(row, pictures=taken.pictures, new=taken.new,
                              monitor=taken.monitor, result="collected")
            if prune_remote:
                verified[row.host] = collection.verified(row.host)
            else:
                on_done(rows[n])
    finally:
        collection.finish()
    if prune_remote:
        pruned = {r.host: r for r in each_host(
            list(verified), settings.jobs,
            lambda name: prune_host(next(r for r in rows if r.host == name), verified[name],
                                    settings), on_done)}
        rows = [pruned.get(r.host, r) for r in rows]
    return rows
