"""How each host's predictions moved over time, from its monitoring records (``edge-collect
--report``): a drifting scene shows as a changing class mix and a falling confidence before
anyone measures the accuracy it costs.

Reads ``DIR/monitor/<host>.jsonl`` (one record a minute per host, gathered by edge-collect: see
:mod:`edge_runtime.capture.data_root`) and writes ``DIR/report/``:

- ``drift.png`` — per host (those that moved most first, at most :data:`MAX_PLOTTED`), the class
  mix as stacked shares of the frames and, beside it, the mean top-1 score and the share of
  uncertain frames, over time;
- ``drift.json`` / ``drift.md`` — per host: its first and last fifth of records compared (class
  shares, mean top-1, uncertain share), the class mix's shift (total variation distance: half
  the sum of the shares' differences, 0 = the same mix, 1 = no class in common) and whether a
  host passed :data:`SHIFT_WATCH` or :data:`CONFIDENCE_WATCH`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from common import figures
from common.fileio import write_json, write_text
from edge_runtime.capture import data_root

WINDOW = 0.2
"""The share of a host's records (first and last) compared: at least one record each."""
SHIFT_WATCH = 0.2
"""A class-mix shift at or above this is flagged: a fifth of the frames changed class."""
CONFIDENCE_WATCH = 0.1
"""A fall of the mean top-1 score by this much or more is flagged."""
MAX_PLOTTED = 8
"""Hosts drawn in the picture (the table has them all)."""
BUCKETS = 48
"""Points a host's lines are drawn with at most: records pooled into equal spans of time."""


@dataclass(frozen=True)
class Window:
    """Records pooled: frames-weighted means and each class's share of the frames."""

    start: str
    end: str
    frames: int
    mean_top1: float | None
    uncertain_share: float | None
    class_shares: dict[str, float]


@dataclass(frozen=True)
class HostDrift:
    """One host's row of the report."""

    host: str
    records: int
    model_versions: list[str]
    first: Window
    last: Window
    shift: float
    """Total variation distance between ``first``'s and ``last``'s class shares."""
    confidence_change: float | None
    """``last.mean_top1 - first.mean_top1``."""
    watch: list[str]
    """Why the host is flagged (empty: it is not)."""


def _frames(record: dict) -> int:
    value = record.get("frames")
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def _mean(pairs: list[tuple[float, int]]) -> float | None:
    weight = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / weight if weight else None


def pool(records: list[dict]) -> Window:
    """``records`` (each with ``_time``, see :func:`load`) pooled into a :class:`Window`."""
    counts: dict[str, float] = {}
    top1, uncertain = [], []
    for r in records:
        frames = _frames(r)
        if isinstance(r.get("class_counts"), dict):
            for label, n in r["class_counts"].items():
                if isinstance(n, int | float) and n > 0:
                    counts[str(label)] = counts.get(str(label), 0) + n
        if frames and isinstance(r.get("mean_top1"), int | float):
            top1.append((float(r["mean_top1"]), frames))
        if frames and isinstance(r.get("uncertain_share"), int | float):
            uncertain.append((float(r["uncertain_share"]), frames))
    total = sum(counts.values())
    shares = {k: counts[k] / total for k in sorted(counts)} if total else {}
    return Window(records[0]["_time"].isoformat(timespec="seconds"),
                  records[-1]["_time"].isoformat(timespec="seconds"),
                  sum(_frames(r) for r in records), _mean(top1), _mean(uncertain), shares)


def shift(a: dict[str, float], b: dict[str, float]) -> float:
    """Total variation distance between two class mixes (shares summing to 1)."""
    return 0.5 * sum(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


def load(folder: str | os.PathLike) -> dict[str, list[dict]]:
    """Each host's monitoring records under ``folder/monitor/``, in time order, each with its
    parsed time as ``_time``; records without a readable time are left out."""
    hosts = {}
    for path in sorted(Path(folder, "monitor").glob("*.jsonl")):
        records = []
        for record in data_root.read_records(path):
            try:
                records.append({**record, "_time": data_root.parse_time(record["time"])})
            except (KeyError, TypeError, ValueError):
                continue
        if records:
            hosts[path.stem] = sorted(records, key=lambda r: r["_time"])
    return hosts


def summarize(host: str, records: list[dict]) -> HostDrift:
    """The first and last :data:`WINDOW` of ``records`` compared."""
    n = max(1, round(len(records) * WINDOW))
    first, last = pool(records[:n]), pool(records[-n:])
    change = (last.mean_top1 - first.mean_top1
              if first.mean_top1 is not None and last.mean_top1 is not None else None)
    moved = shift(first.class_shares, last.class_shares)
    watch = []
    if moved >= SHIFT_WATCH:
        watch.append(f"class mix shifted {moved:.2f}")
    if change is not None and change <= -CONFIDENCE_WATCH:
        watch.append(f"mean top-1 fell {-change:.2f}")
    versions = sorted({r["model_version"] for r in records
                       if isinstance(r.get("model_version"), str)})
    return HostDrift(host, len(records), versions, first, last, round(moved, 4),
                     None if change is None else round(change, 4), watch)


def buckets(records: list[dict], count: int = BUCKETS) -> list[Window]:
    """``records`` pooled into at most ``count`` equal spans of time (empty spans left out)."""
    start, end = records[0]["_time"], records[-1]["_time"]
    span = (end - start).total_seconds() or 1.0
    groups: list[list[dict]] = [[] for _ in range(count)]
    for r in records:
        groups[min(count - 1, int((r["_time"] - start).total_seconds() / span * count))].append(r)
    return [pool(g) for g in groups if g]


def _markdown(rows: list[HostDrift]) -> str:
    def number(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    def top(window: Window) -> str:
        if not window.class_shares:
            return "–"
        label = max(window.class_shares, key=window.class_shares.get)
        return f"{label} {window.class_shares[label]:.0%}"

    lines = ["# Drift per host", "",
             f"First and last {WINDOW:.0%} of each host's monitoring records compared. Flagged: "
             f"a class-mix shift ≥ {SHIFT_WATCH} (total variation distance) or a mean top-1 "
             f"fall ≥ {CONFIDENCE_WATCH}.", "", "![drift](drift.png)", "",
             "| host | records | from | to | top class first → last | class-mix shift "
             "| mean top-1 first → last | uncertain first → last | flagged |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.host} | {r.records} | {r.first.start} | {r.last.end} "
                     f"| {top(r.first)} → {top(r.last)} | {r.shift:.2f} "
                     f"| {number(r.first.mean_top1)} → {number(r.last.mean_top1)} "
                     f"| {number(r.first.uncertain_share)} → {number(r.last.uncertain_share)} "
                     f"| {'; '.join(r.watch) or '–'} |")
    return "\n".join(lines) + "\n"


def draw(rows: list[HostDrift], hosts: dict[str, list[dict]], path: str | os.PathLike) -> None:
    """The picture: a row per host (``rows``' order, at most :data:`MAX_PLOTTED`), the class
    mix on the left, the confidence on the right; one colour per class across hosts."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    shown = rows[:MAX_PLOTTED]
    classes = sorted({label for r in shown for w in buckets(hosts[r.host])
                      for label in w.class_shares})
    figure = figures.new_figure(10, 1.0 + 2.1 * len(shown))
    grid = figure.subplots(len(shown), 2, squeeze=False, width_ratios=[3, 2])
    colours = {label: f"C{i % 10}" for i, label in enumerate(classes)}
    for (mix, confidence), row in zip(grid, shown):
        series = buckets(hosts[row.host])
        times = [datetime.fromisoformat(w.start) for w in series]
        if len(times) == 1:
            times = times * 2
            series = series * 2
        mix.stackplot(times, [[w.class_shares.get(c, 0.0) for w in series] for c in classes],
                      colors=[colours[c] for c in classes], labels=classes, alpha=0.85)
        mix.set_ylim(0, 1)
        mix.set_ylabel("share of frames")
        flagged = {"color": "tab:red"} if row.watch else {}
        mix.set_title(f"{row.host}: class mix, shift {row.shift:.2f}", fontsize=10, loc="left",
                      **flagged)
        confidence.plot(times, [w.mean_top1 for w in series], color="black",
                        label="mean top-1 score")
        confidence.plot(times, [w.uncertain_share for w in series], color="tab:red",
                        linestyle="--", label="uncertain share")
        confidence.set_ylim(0, 1)
        change = ("" if row.confidence_change is None
                  else f", {row.first.mean_top1:.2f} → {row.last.mean_top1:.2f}")
        confidence.set_title(f"confidence{change}", fontsize=10, loc="left", **flagged)
        for axes, ticks in ((mix, 7), (confidence, 4)):
            locator = AutoDateLocator(minticks=2, maxticks=ticks)
            axes.xaxis.set_major_locator(locator)
            axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
            axes.grid(alpha=0.3)
    figure.legend(*grid[0][0].get_legend_handles_labels(), loc="outside lower center",
                  ncol=min(8, max(1, len(classes))), fontsize=8, frameon=False)
    grid[0][1].legend(loc="lower left", fontsize=8, frameon=False)
    hidden = len(rows) - len(shown)
    figure.suptitle("Drift per host (times in UTC; red: flagged)"
                    + (f" ({hidden} more in drift.md)" if hidden else ""), fontsize=11)
    figures.save(figure, path)


def write_report(folder: str | os.PathLike) -> tuple[list[HostDrift], Path | None, str | None]:
    """Write ``folder/report/drift.{json,md,png}``; the rows (most moved first), the PNG's
    path, and why no PNG was drawn (None when it was).

    Raises:
        ValueError: no host has monitoring records in ``folder/monitor/``.
    """
    hosts = load(folder)
    if not hosts:
        raise ValueError(f"{Path(folder, 'monitor')}: no monitoring records (edge-collect "
                         "gathers them from each device's data root)")
    rows = sorted((summarize(h, r) for h, r in hosts.items()),
                  key=lambda r: (-len(r.watch), -r.shift, r.confidence_change or 0.0, r.host))
    report = Path(folder, "report")
    write_json(report / "drift.json", {"window": WINDOW, "shift_watch": SHIFT_WATCH,
                                       "confidence_watch": CONFIDENCE_WATCH,
                                       "hosts": [asdict(r) for r in rows]})
    write_text(report / "drift.md", _markdown(rows))
    why = figures.missing()
    if why:
        return rows, None, why
    draw(rows, hosts, report / "drift.png")
    return rows, report / "drift.png", None

