"""Promoting the staged version: activated only when the running service's shadow showed it agrees
with the current version on enough live frames (``edge-model promote``).

``edge-model stage BUNDLE`` checks a bundle as ``activate`` does and links it as ``staged``
(:func:`deploy.store.activate` with ``stage=True``); the service on the store runs it beside
``current`` on the camera's frames and writes how often their top-1 agreed into ``status.json``
(:mod:`edge_runtime.stream.shadow`, :mod:`edge_runtime.service_status`). :func:`promote` reads
that report (:func:`evidence`), refuses unless it is about the staged version against the
current one, on at least ``min_frames`` frames, with an agreement of at least
``min_agreement``, and then activates the staged version through :func:`deploy.store.activate`
(every check again, the switch, the service's commit), which also clears ``staged``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from deploy.store import KEEP, Activation, Store, activate
from edge_runtime.service_status import read_status

MIN_AGREEMENT = 0.95
"""``--min-agreement``'s default: the share of live frames whose top-1 the candidate matched."""
MIN_FRAMES = 500
"""``--min-frames``'s default: live frames the shadow must have been compared on."""


@dataclass(frozen=True)
class Evidence:
    """What the store says about its staged version's shadow run."""

    staged: str | None
    """The staged version, None when nothing is staged."""
    current: str | None
    """The current version."""
    frames: int = 0
    """Live frames of ``current`` the staged version was compared on (0: no report)."""
    agreement: float | None = None
    """The share of them where both top-1 labels were the same (None: no report)."""
    reported: str = ""
    """Why the status file's report does not count, when it does not ("" when it does)."""

    def to_json(self) -> dict:
        return {"staged": self.staged, "current": self.current, "frames": self.frames,
                "agreement": self.agreement}


def evidence(store: Store) -> Evidence:
    """The staged version and what ``status.json`` says of its shadow run against ``current``
    (a report about another candidate, or against another live version, does not count)."""
    staged, current = store.staged, store.current
    status = read_status(store.root)
    shadow = status.shadow if status is not None else None
    if staged is None:
        return Evidence(None, current, reported="nothing is staged")
    if shadow is None:
        return Evidence(staged, current, reported="the service has reported no shadow run "
                                                  "(does a service run on this store?)")
    if shadow.get("version") != staged or shadow.get("live") != current:
        return Evidence(staged, current, reported=(
            f"the service's shadow report is of {shadow.get('version')} against "
            f"{shadow.get('live')}, not of the staged {staged} against the current {current} "
            "(it picks a new stage up within seconds)"))
    try:
        frames = int(shadow.get("frames") or 0)
        agreement = shadow.get("agreement")
        agreement = None if agreement is None else float(agreement)
    except (TypeError, ValueError):
        return Evidence(staged, current, reported="the service's shadow report is unreadable")
    return Evidence(staged, current, frames, agreement)


@dataclass
class Promotion:
    """What :func:`promote` did."""

    evidence: Evidence
    result: str
    """``activated`` (and every result of :class:`~deploy.store.Activation`), or ``not
    promoted`` (the evidence fell short: nothing changed)."""
    reason: str = ""
    """Why it was not promoted, with the numbers."""
    activation: Activation | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.activation is not None and self.activation.ok

    def to_json(self) -> dict:
        done = self.activation.to_json() if self.activation is not None else {}
        return {"version": self.evidence.staged, "result": self.result, "reason": self.reason,
                **self.evidence.to_json(), "checks": done.get("checks", []),
                "removed": done.get("removed", [])}


def shortfall(found: Evidence, min_agreement: float, min_frames: int,
              version: str | None = None) -> str | None:
    """Why ``found`` does not allow a promotion (one line, the numbers in it), None when it
    does."""
    if found.staged is None:
        return f"nothing is staged (current: {found.current})"
    if version is not None and found.staged != version:
        return f"the staged version is {found.staged}, not {version}"
    if found.reported:
        return f"staged {found.staged}: {found.reported}"
    agreed = "-" if found.agreement is None else f"{found.agreement:.3f}"
    said = (f"staged {found.staged} agreed with current {found.current} on {agreed} of "
            f"{found.frames} live frames")
    if found.frames < min_frames:
        return f"{said}: fewer than --min-frames {min_frames}"
    if found.agreement is None or found.agreement < min_agreement:
        return f"{said}: below --min-agreement {min_agreement:g}"
    return None


def promote(store: Store, min_agreement: float = MIN_AGREEMENT, min_frames: int = MIN_FRAMES,
            version: str | None = None, threads: int | None = None,
            progress: Callable[[str], None] = lambda _: None, keep: int | None = KEEP,
            health_timeout_s: float | None = None) -> Promotion:
    """Activate the staged version if its shadow run allows it (see the module docstring);
    ``version``: only if that is the version staged.

    Raises:
        UsageError: as :func:`~deploy.store.activate` (``keep`` under 2).
    """
    found = evidence(store)
    short = shortfall(found, min_agreement, min_frames, version)
    if short is not None:
        return Promotion(found, "not promoted", short)
    done = activate(store, store.folder(found.staged), threads, progress, keep=keep,
                    health_timeout_s=health_timeout_s)
    return Promotion(found, done.result, "", done)
