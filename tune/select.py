"""Which candidates may train, which go on to the next rung, which one wins: pure functions.

Nothing here trains, reads a file or imports TensorFlow, so the rules the search follows are
tested directly: a candidate trains only when its measured p50 fits the budget; successive
halving keeps the most accurate ones, a rung at a time; the winner is the most accurate of the
finalists within the budget, on the validation split (int8, as it will ship).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scored:
    """A candidate as the selection sees it."""

    name: str
    p50_ms: float
    """Median single-image latency on the device (the probe's bench report)."""
    val_accuracy: float | None = None
    """int8 top-1 on the validation split after its last rung; None: never trained."""
    rung: int = -1
    """The last rung it was trained in (0 first); -1: never trained."""


def fits(p50_ms: float, budget_ms: float) -> bool:
    """Whether a candidate of median latency ``p50_ms`` meets the budget."""
    return p50_ms <= budget_ms


def _best_first(candidates: Iterable[Scored]) -> list[Scored]:
    """Most accurate first; among equals the faster, then by name (a stable, total order)."""
    return sorted(candidates, key=lambda c: (-(c.val_accuracy or 0.0), c.p50_ms, c.name))


def rung_sizes(n: int, eta: int = 2, finalists: int = 2) -> list[int]:
    """How many candidates each rung trains: all ``n``, then ``1/eta`` of the previous rung
    (rounded up), until at most ``finalists`` remain; ``[n]`` when ``n <= finalists``.

    >>> rung_sizes(7, 2, 2)
    [7, 4, 2]
    >>> rung_sizes(2, 2, 2)
    [2]
    """
    if n < 1:
        return []
    if eta < 2 or finalists < 1:
        raise ValueError(f"eta {eta} must be ≥ 2 and finalists {finalists} ≥ 1")
    sizes = [n]
    while sizes[-1] > finalists:
        sizes.append(max(finalists, math.ceil(sizes[-1] / eta)))
    return sizes


def survivors(rung: Sequence[Scored], keep: int) -> list[str]:
    """The names of the ``keep`` most accurate candidates of a finished rung, best first."""
    return [c.name for c in _best_first(rung)[:keep]]


def choose(candidates: Iterable[Scored], budget_ms: float) -> Scored | None:
    """The winner: the most accurate candidate within the budget among those trained.

    Only candidates that were trained (``val_accuracy`` not None) and fit the budget compete,
    and of those only the ones that reached the furthest rung (the finalists, trained longest:
    an eliminated candidate's shorter training is not comparable). Ties go to the faster one.
    None when no candidate within the budget was trained.
    """
    eligible = [c for c in candidates
                if c.val_accuracy is not None and c.rung >= 0 and fits(c.p50_ms, budget_ms)]
    if not eligible:
        return None
    furthest = max(c.rung for c in eligible)
    return _best_first(c for c in eligible if c.rung == furthest)[0]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the ``(latency, accuracy)`` points no other point beats: none is at least as
    fast and at least as accurate while strictly better in one. Fastest first."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any(
            (o_lat <= lat and o_acc >= acc) and (o_lat < lat or o_acc > acc)
            for j, (o_lat, o_acc) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i])
