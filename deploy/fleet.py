"""A bundle to many devices over ssh and rsync, each checked and switched by its own
``edge-model activate`` (``edge-deploy``).

Per host, in parallel: ``edge-model incoming VERSION`` there says (and makes) the folder to copy
into, ``rsync`` copies the bundle into it (only what changed, when a copy was started before;
its signature, ``manifest.json.sig``, included), and ``edge-model activate`` there checks it and
switches ``current``. A host that cannot be reached, or whose check fails, stays on its version
and does not stop the others of its wave. In waves (:func:`waves`: ``--wave N``, ``--canary``) a
wave starts only when every host of the one before took the bundle; the first failure stops the
rollout there, and the hosts after it are "not reached". ssh runs in batch mode (keys, never a
password prompt); hosts, users, ports, keys and known hosts come from ssh's own configuration
(``~/.ssh/config``, or ``--ssh-config FILE``).

``--stage`` runs ``edge-model stage`` on the copy instead (checked the same way; the service
runs it as its shadow), and ``--promote-if P`` runs ``edge-model promote`` on each host
(:func:`promote_host`): the staged version becomes current where its shadow agreed enough.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from common.errors import UsageError

DEFAULT_EDGE_MODEL = "~/edge/bin/edge-model"
"""edge-model in the README's venv on the device (``~``: the remote user's home)."""
SSH_UNREACHABLE = 255
"""ssh's exit code when it could not connect (or authenticate)."""
STATES = ("activated", "already current", "staged", "refused", "failed", "not reached")
"""Where a host stands after a deploy: took the bundle (the first three), its device refused it
(a check failed), something else went wrong (unreachable, copy, timeout), or never tried."""


@dataclass(frozen=True)
class DeployConfig:
    """How to reach the hosts and what to run there."""

    ssh_config: Path | None = None
    """An ssh configuration file (``ssh -F``); None: ssh's own (``~/.ssh/config``)."""
    edge_model: str = DEFAULT_EDGE_MODEL
    """The edge-model command on the hosts."""
    root: str | None = None
    """``--root`` for edge-model on the hosts; None: theirs (``$EDGE_MODEL_ROOT``, else
    ``~/edge-models``)."""
    jobs: int = 8
    """Hosts deployed to at once."""
    timeout_s: float = 600.0
    """The longest one step on one host may take (the answers check runs every variant)."""
    action: str = "activate"
    """What edge-model does with the copy: ``activate``, or ``stage`` (``--stage``)."""


@dataclass(frozen=True)
class HostResult:
    """One host's row."""

    host: str
    version: str
    checks: str
    """The checks as ``name ok`` / ``name FAILED``, or ``-`` when none ran."""
    result: str
    """``activated``, ``already current``, or what went wrong."""
    ok: bool
    state: str = "activated"
    """One of :data:`STATES`."""

    def to_json(self) -> dict:
        return {"host": self.host, "version": self.version, "checks": self.checks,
                "result": self.result, "ok": self.ok, "state": self.state}


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be given to ssh or rsync as a host (one that starts with ``-`` would
    be read as an option, ``-oProxyCommand=…``), or None when it can."""
    if not host or host.startswith("-"):
        return (f"host {host!r}: a host name cannot start with '-' (ssh would take it for an "
                "option) nor be empty")
    return None


def check_hosts(hosts: list[str]) -> None:
    """Refuse a host name ssh or rsync would read as an option (:func:`host_problem`).

    Raises:
        UsageError: a host is empty or starts with ``-``.
    """
    for host in hosts:
        problem = host_problem(host)
        if problem:
            raise UsageError(problem)


def remote_word(word: str) -> str:
    """A word of a remote shell command: quoted, a leading ``~/`` left for the shell to expand."""
    if word.startswith("~/"):
        return "~/" + shlex.quote(word[2:])
    return shlex.quote(word)


def ssh_options(settings: DeployConfig) -> list[str]:
    """ssh's options: no password prompts, a bounded wait to connect, the configuration."""
    options = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if settings.ssh_config is not None:
        options += ["-F", str(settings.ssh_config)]
    return options


def last_line(text: str) -> str:
    """The last non-blank line of a command's output: what a remote failure said."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def _remote(host: str, settings: DeployConfig, *args: str) -> subprocess.CompletedProcess:
    """``edge-model ARGS`` on ``host`` over ssh."""
    words = [settings.edge_model, *args]
    if settings.root is not None:
        words += ["--root", settings.root]
    command = " ".join(remote_word(w) for w in words)
    return subprocess.run(["ssh", *ssh_options(settings), "--", host, command],
                          capture_output=True, text=True, timeout=settings.timeout_s,
                          stdin=subprocess.DEVNULL)


def deploy_host(host: str, bundle: Path, version: str, settings: DeployConfig) -> HostResult:
    """Copy ``bundle`` to ``host`` and activate it there; never raises for the host's sake."""
    def failed(result: str, checks: str = "-", state: str = "failed") -> HostResult:
        return HostResult(host, version, checks, " ".join(result.split()), False, state)

    try:
        where = _remote(host, settings, "incoming", version)
        if where.returncode == SSH_UNREACHABLE:
            return failed(f"unreachable: {last_line(where.stderr)}")
        if where.returncode != 0:
            return failed(f"edge-model incoming failed (exit {where.returncode}): "
                          f"{last_line(where.stderr)}")
        folder = last_line(where.stdout)
        rsh = shlex.join(["ssh", *ssh_options(settings)])
        copy = subprocess.run(["rsync", "-a", "--delete", "--exclude", "/bench/", "-e", rsh,
                               f"{bundle}/", f"{host}:{folder}/"],
                              capture_output=True, text=True, timeout=settings.timeout_s,
                              stdin=subprocess.DEVNULL)
        if copy.returncode != 0:
            return failed(f"copy failed (rsync exit {copy.returncode}): "
                          f"{last_line(copy.stderr)}")
        done = _remote(host, settings, settings.action, folder, "--json")
    except subprocess.TimeoutExpired as exc:
        return failed(f"timed out after {exc.timeout:.0f} s")
    except OSError as exc:
        return failed(f"cannot run {exc.filename}: {exc.strerror}")
    if done.returncode == SSH_UNREACHABLE:
        return failed(f"unreachable: {last_line(done.stderr)}")
    try:
        report = json.loads(last_line(done.stdout))
        checks = ", ".join(f"{c['name']} {'ok' if c['ok'] else 'FAILED'}"
                           for c in report["checks"]) or "-"
        outcome = report["result"]
    except (ValueError, KeyError, TypeError):
        return failed(f"edge-model {settings.action} failed (exit {done.returncode}): "
                      f"{last_line(done.stderr)}")
    if done.returncode != 0:
        # the device's own line naming the failed check and the version that stays
        return failed(f"refused: {last_line(done.stderr)}", checks,
                      "refused" if outcome == "refused" else "failed")
    if report.get("committed") is False:  # switched, but the service never took it up
        return failed(f"not committed: {last_line(done.stderr)}", checks)
    return HostResult(host, report.get("version") or version, checks, outcome, True,
                      outcome if outcome in ("already current", "staged") else "activated")


def each_host(hosts: list[str], jobs: int, work, on_done=lambda result: None) -> list:
    """``work(host)`` on every host, ``jobs`` at a time; results in ``hosts`` order.
    ``on_done`` is called with each result as its host finishes (edge-deploy, edge-collect)."""
    def one(host: str):
        result = work(host)
        on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(hosts)))) as pool:
        return list(pool.map(one, hosts))


def waves(hosts: list[str], size: int | None = None, canary: bool = False) -> list[list[str]]:
    """The hosts in the groups they are deployed to, in order: with ``canary`` the first host
    alone, then ``size`` at a time (None: all the rest at once)."""
    rest = list(hosts)
    groups = [rest[:1]] if canary and rest else []
    rest = rest[len(groups):]
    step = size or len(rest) or 1
    return groups + [rest[i:i + step] for i in range(0, len(rest), step)]


DeployOne = Callable[[str, Path, str, DeployConfig], HostResult]
"""What deploys to one host: :func:`deploy_host`, or a stand-in in a test."""


def deploy(bundle: Path, hosts: list[str], version: str, settings: DeployConfig,
           on_done: Callable[[HostResult], None] = lambda result: None,
           wave: int | None = None, canary: bool = False,
           deploy_one: DeployOne = deploy_host) -> list[HostResult]:
    """``deploy_one`` (:func:`deploy_host`) on every host, wave by wave (:func:`waves`; by
    default one wave of all), ``settings.jobs`` at a time within a wave; rows in ``hosts``
    order. A wave starts only when every host of the previous one took the bundle: after a
    failure the hosts of later waves get a ``not reached`` row. ``on_done`` is called as each
    host finishes (or is passed over).

    Raises:
        UsageError: a host name that starts with ``-`` (:func:`check_hosts`).
    """
    check_hosts(hosts)
    groups = waves(hosts, wave, canary)
    rows: dict[str, HostResult] = {}

    stopped: str | None = None
    for number, group in enumerate(groups, 1):
        if stopped is not None:
            for host in group:
                rows[host] = HostResult(host, version, "-", stopped, False, "not reached")
                on_done(rows[host])
            continue
        rows.update(zip(group, each_host(
            group, settings.jobs, lambda host: deploy_one(host, bundle, version, settings),
            on_done)))
        failed = [host for host in group if not rows[host].ok]
        if failed:
            stopped = (f"not reached: the rollout stopped after wave {number} of {len(groups)} "
                       f"({', '.join(failed)} failed)")
    return [rows[host] for host in hosts]



@dataclass(frozen=True)
class PromoteResult:
    """One host's row of ``--promote-if``."""

    host: str
    version: str
    """The staged version the host reported (the bundle's when it said none)."""
    frames: int | None
    """Live frames its shadow was compared on (None: no report)."""
    agreement: float | None
    result: str
    """``activated`` (promoted), ``not promoted: …`` with the numbers, or what went wrong."""
    ok: bool

    def to_json(self) -> dict:
        return {"host": self.host, "version": self.version, "frames": self.frames,
                "agreement": self.agreement, "result": self.result, "ok": self.ok}


def promote_host(host: str, version: str, min_agreement: float, min_frames: int,
                 settings: DeployConfig) -> PromoteResult:
    """``edge-model promote`` on ``host``: its staged ``version`` activated if its shadow agreed
    on at least ``min_agreement`` of at least ``min_frames`` live frames; never raises for the
    host's sake."""
    def failed(result: str, frames=None, agreement=None, staged=version) -> PromoteResult:
        return PromoteResult(host, staged or version, frames, agreement,
                             " ".join(result.split()), False)

    try:
        done = _remote(host, settings, "promote", "--min-agreement", f"{min_agreement:g}",
                       "--min-frames", str(min_frames), "--if-staged", version, "--json")
    except subprocess.TimeoutExpired as exc:
        return failed(f"timed out after {exc.timeout:.0f} s")
    except OSError as exc:
        return failed(f"cannot run {exc.filename}: {exc.strerror}")
    if done.returncode == SSH_UNREACHABLE:
        return failed(f"unreachable: {last_line(done.stderr)}")
    try:
        report = json.loads(last_line(done.stdout))
        frames, agreement = report.get("frames"), report.get("agreement")
        staged, outcome = report.get("staged"), report["result"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return failed(f"edge-model promote failed (exit {done.returncode}): "
                      f"{last_line(done.stderr)}")
    if done.returncode != 0:  # the evidence fell short, or a check or the commit failed
        why = report.get("reason") if outcome == "not promoted" else last_line(done.stderr)
        return failed(f"{outcome}: {why}", frames, agreement, staged)
    return PromoteResult(host, staged or version, frames, agreement, outcome, True)


def promote(hosts: list[str], version: str, min_agreement: float, min_frames: int,
            settings: DeployConfig, on_done=lambda result: None) -> list[PromoteResult]:
    """:func:`promote_host` on every host, ``settings.jobs`` at a time; rows in ``hosts``
    order."""
    return each_host(hosts, settings.jobs,
                     lambda host: promote_host(host, version, min_agreement, min_frames,
                                               settings), on_done)
