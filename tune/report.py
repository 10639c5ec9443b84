"""The search's report: ``out/tune/report.json``, ``report.md`` and ``pareto.png``.

report.json::

    {"budget_ms", "measured_on": {"report", "machine", "here"},
     "candidates": [{"name", "backbone", "alpha", "img_size", "p50_ms", "fits", "skipped",
                     "val_accuracy" (int8 on val; null: not trained), "keras_val_accuracy",
                     "rung", "results": {rung: {...}}}],
     "chosen": {"name", "backbone", "alpha", "img_size", "p50_ms", "val_accuracy", "run",
                "final_val_accuracy", "test_accuracy", "eval_split"},
     "rungs": [{"epochs", "names"}], "settings", "created"}
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from common.figures import missing, new_figure, plain_numbers, save
from common.fileio import atomic_write, write_json, write_text
from tune.select import pareto_front

TUNE_DIR = "tune"
PLOT = "pareto.png"
DEVICE_REPORT = "device_report.json"


def build_report(config, state: dict) -> dict:
    """report.json's content from the search's final state."""
    candidates = [{k: v for k, v in c.items()} for c in state["candidates"]]
    winner = next(c for c in candidates if c["name"] == state["winner"])
    final = state["final"] or {}
    return {
        "budget_ms": config.budget_ms,
        "measured_on": state["device"],
        "candidates": candidates,
        "chosen": {"name": winner["name"], "backbone": winner["backbone"],
                   "alpha": winner["alpha"], "img_size": winner["img_size"],
                   "p50_ms": winner["p50_ms"], "val_accuracy": winner["val_accuracy"],
                   "run": str(config.out), "final_val_accuracy": final.get("val_accuracy"),
                   "test_accuracy": final.get("test_accuracy"),
                   "eval_split": final.get("eval_split")},
        "rungs": state["rungs"],
        "settings": config.to_dict(),
        "seconds": round(time.time() - state["started"], 1) if state.get("started") else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _num(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _epochs(candidate: dict) -> str:
    """How long the candidate trained in its last rung (the one its accuracy comes from)."""
    result = candidate["results"].get(str(candidate["rung"]))
    return "–" if result is None else str(result["epochs"])


def format_markdown(report: dict) -> str:
    """report.md: where the latencies come from, the table, the choice and what to run next."""
    where = report["measured_on"]
    chosen = report["chosen"]
    source = (f"measured on **this machine** ({where['machine']}), not on the device: no "
              "--device report was given" if where["here"]
              else f"measured on the device ({where['machine']}): {where['report']}")
    lines = [f"# Model search for {chosen['run']}", "",
             f"Budget: p50 ≤ {report['budget_ms']:g} ms per image; latencies {source}. "
             "Candidates within the budget were trained by successive halving ("
             + " → ".join(f"{len(r['names'])} × {r['epochs']} epoch(s)" for r in report["rungs"])
             + ") and ranked by int8 accuracy on the validation split; the test split was used "
             "once, for the winner.", "",
             "| candidate | p50 ms | fits | int8 val acc | Keras val acc | epochs | |",
             "|---|---|---|---|---|---|---|"]
    for c in sorted(report["candidates"], key=lambda c: (c["p50_ms"], c["name"])):
        note = "**chosen**" if c["name"] == chosen["name"] else (c["skipped"] or "")
        lines.append(f"| {c['name']} | {c['p50_ms']:.2f} | {'yes' if c['fits'] else 'no'} | "
                     f"{_num(c['val_accuracy'], '.3f')} | {_num(c['keras_val_accuracy'], '.3f')}"
                     f" | {_epochs(c)} | {note} |")
    lines += ["", f"Chosen: **{chosen['name']}** (p50 {chosen['p50_ms']:.2f} ms, int8 val "
                  f"accuracy {_num(chosen['val_accuracy'], '.3f')} after the search), trained "
                  f"fully into {chosen['run']}: val accuracy "
                  f"{_num(chosen['final_val_accuracy'], '.3f')}, {chosen['eval_split'] or 'test'}"
                  f" accuracy {_num(chosen['test_accuracy'], '.3f')} (Keras).", "",
              f"Next: `edge-export {chosen['run']}`, copy `{chosen['run']}/export` to the "
              "device.", ""]
    if report.get("plot_missing"):
        lines += [f"No plot: {report['plot_missing']}.", ""]
    return "\n".join(lines)


SHORT_BACKBONE = {"mobilenet_v2": "V2", "mobilenet_v3_small": "V3S", "mobilenet_v3_large": "V3L"}
RUNG_COLORS = ("#9ecae1", "#4292c6", "#08519c", "#08306b")


def short_name(candidate: dict) -> str:
    """``V2 0.35/96``: the backbone, its width and its input size, for labels on a plot."""
    backbone = SHORT_BACKBONE.get(candidate["backbone"], candidate["backbone"])
    return f"{backbone} {candidate['alpha']:g}/{candidate['img_size']}"


LABEL_OFFSETS = ((4, 4, "left"), (4, -11, "left"), (-4, 4, "right"), (-4, -11, "right"),
                 (4, 13, "left"), (4, -20, "left"), (-4, 13, "right"), (-4, -20, "right"))
"""Where a point's label may go, in points from it, nearest first."""


def _label_points(ax, candidates: list[dict]) -> None:
    """Label each candidate's point at the first of :data:`LABEL_OFFSETS` where the text
    overlaps no label already placed (the first offset when every one does)."""
    ax.figure.canvas.draw()  # settle the layout: extents measured now stay true
    renderer = ax.figure.canvas.get_renderer()

    def label(candidate: dict, offset: tuple):
        dx, dy, align = offset
        return ax.annotate(short_name(candidate), (candidate["p50_ms"], candidate["val_accuracy"]),
                           xytext=(dx, dy), textcoords="offset points", fontsize=7, ha=align)

    placed = []
    for c in candidates:
        where = LABEL_OFFSETS[0]
        for offset in LABEL_OFFSETS:
            trial = label(c, offset)
            box = trial.get_window_extent(renderer)
            trial.remove()
            if not any(box.overlaps(other) for other in placed):
                where = offset
                break
        placed.append(label(c, where).get_window_extent(renderer))


def plot_pareto(report: dict, path: Path) -> None:
    """int8 val accuracy against device p50 for the trained candidates, coloured by how long
    they trained (successive halving stops most after the first rung), the Pareto front, the
    budget line and the winner; candidates over the budget as ticks on the latency axis."""
    from matplotlib.ticker import LogLocator, NullFormatter

    figure = new_figure(7.5, 5.4)
    ax = figure.add_subplot()
    trained = sorted((c for c in report["candidates"] if c["val_accuracy"] is not None),
                     key=lambda c: c["p50_ms"])
    untrained = [c for c in report["candidates"] if c["val_accuracy"] is None]
    for index, rung in enumerate(report["rungs"]):
        last = [c for c in trained if c["rung"] == index]
        if last:
            ax.scatter([c["p50_ms"] for c in last], [c["val_accuracy"] for c in last], s=45,
                       color=RUNG_COLORS[min(index, len(RUNG_COLORS) - 1)], zorder=3,
                       edgecolor="black", linewidth=0.4,
                       label=f"trained {rung['epochs']} epoch(s) (int8 val accuracy)")
    points = [(c["p50_ms"], c["val_accuracy"]) for c in trained]
    front = [points[i] for i in pareto_front(points)]
    if len(front) > 1:
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="#2ca02c",
                linewidth=1, label="Pareto front")
    if untrained:
        ax.plot([c["p50_ms"] for c in untrained], [0.03] * len(untrained), "|", color="#7f7f7f",
                markersize=14, markeredgewidth=2, transform=ax.get_xaxis_transform(),
                clip_on=False, linestyle="none", label="not trained (latency only)")
    ax.axvline(report["budget_ms"], color="#d62728", linestyle="--",
               label=f"budget {report['budget_ms']:g} ms")
    chosen = report["chosen"]
    ax.scatter([chosen["p50_ms"]], [chosen["val_accuracy"]], s=240, marker="*",
               color="#ff7f0e", edgecolor="black", linewidth=0.5, zorder=4,
               label=f"chosen: {short_name(chosen)}")
    ax.set_ylim(0, 1.02)
    ax.set_xscale("log")  # a probe spans ten times in latency and more
    latencies = [c["p50_ms"] for c in report["candidates"]] + [report["budget_ms"]]
    ax.xaxis.set_major_formatter(plain_numbers())
    if max(latencies) > 5 * min(latencies):  # ticks at 1, 2, 5 × 10^n are enough
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:  # a narrow probe may hold no 1-2-5 tick: label the minor ones too
        ax.xaxis.set_minor_formatter(plain_numbers())
        ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("device latency p50, ms per image (log scale)")
    ax.set_ylabel("int8 top-1 on the validation split")
    ax.set_title(f"Accuracy against latency measured on {report['measured_on']['machine']}"
                 if report["measured_on"].get("machine") else "Accuracy against measured latency",
                 fontsize=10)
    ax.grid(alpha=0.3, which="both")
    figure.legend(fontsize=7, loc="outside lower center", ncols=3)  # off the points
    # the winner's label first, then the fastest: each where it covers no label placed before
    _label_points(ax, sorted(trained, key=lambda c: (c["name"] != chosen["name"], c["p50_ms"])))
    save(figure, path)


def write_report(out: Path, config, state: dict, probe_dir: Path):
    """Write ``out/tune/``: report.json, report.md, pareto.png (where matplotlib imports) and
    the device report the latencies came from; each atomically."""
    from tune.config import SearchResult

    folder = out / TUNE_DIR
    report = build_report(config, state)
    source = Path(state["device"]["report"])
    if source.is_file():
        atomic_write(folder / DEVICE_REPORT, lambda tmp: shutil.copyfile(source, tmp))
        report["measured_on"] = {**report["measured_on"], "copy": str(folder / DEVICE_REPORT)}
    report["plot_missing"] = missing()
    if report["plot_missing"] is None:
        del report["plot_missing"]
        plot_pareto(report, folder / PLOT)
    write_json(folder / "report.json", report)
    write_text(folder / "report.md", format_markdown(report))
    return SearchResult(out=out, report_dir=folder, report=report)
