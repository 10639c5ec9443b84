"""``edge-tune search``: the most accurate model whose measured latency meets the budget.

1. The device's measurements (a probe's ``bench/report.json``), or, without ``--device``, a
   probe built and timed on this machine, which the report says.
2. Only candidates whose p50 fits the budget are trained (and, with ImageNet weights, only
   those ImageNet weights exist for). Successive halving: every one for ``rung_epochs``, then
   the better half for twice as long, ... until ``finalists`` remain. After each training its
   int8 accuracy is measured on the validation split (:mod:`tune.int8`) and ranks it.
3. The winner (:func:`tune.select.choose`) is trained fully into ``out``, an ordinary run
   directory ready for ``edge-export``; its metrics.json holds the test split's accuracy, the
   one use of the test split in the whole search.
4. ``out/tune/report.json``, ``report.md`` and ``pareto.png`` (:mod:`tune.report`).

The search works in ``out.tune/`` beside the run (``edge-train`` needs ``out`` empty), writing
``state.json`` atomically after every finished candidate and rung: ``resume`` continues from
there, and an unfinished candidate is trained again. The folder is removed once the report is
written; the candidates' own run directories as soon as their accuracy is measured.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import replace
from pathlib import Path

from common.errors import UserError
from common.fileio import write_json
from common.progress import progress_bar
from tune.config import (
    PROBE_DIR,
    STATE_FILE,
    SearchConfig,
    SearchResult,
    fitting,
    preflight,
    work_dir,
)
from tune.device_report import DeviceReport, Measured, read_device_report
from tune.select import Scored, choose, fits, rung_sizes, survivors
from tune.steps import Steps, TrainingSteps, untrainable_reason

log = logging.getLogger(__name__)

__all__ = ["STATE_FILE", "SearchConfig", "SearchResult", "search", "work_dir"]

STATE_VERSION = 1
CANDIDATES_DIR = "candidates"


def _save(work: Path, state: dict) -> None:
    write_json(work / STATE_FILE, state)  # atomic: an interruption leaves the last good one


def _new_state(config: SearchConfig, report: DeviceReport, here: bool) -> dict:
    candidates = []
    for measured in sorted(report.candidates, key=lambda c: (c.p50_ms, c.name)):
        inside = fits(measured.p50_ms, config.budget_ms)
        reason = untrainable_reason(config, measured) if inside else None
        candidates.append({**measured.to_json(), "name": measured.name, "fits": inside,
                           "skipped": reason, "val_accuracy": None,
                           "keras_val_accuracy": None, "rung": -1, "results": {}})
    trainable = [c["name"] for c in candidates if c["fits"] and not c["skipped"]]
    if not trainable:
        reasons = {c["skipped"] for c in candidates if c["skipped"]}
        raise UserError(f"no candidate within --budget-ms {config.budget_ms:g} can be trained "
                        f"with --weights {config.weights}: {'; '.join(sorted(reasons))[:300]}")
    plan = rung_sizes(len(trainable), config.eta, config.finalists)
    return {"format_version": STATE_VERSION, "settings": config.to_dict(),
            "device": {"report": report.path, "machine": report.machine, "here": here},
            "candidates": candidates, "plan": plan,
            "rungs": [{"epochs": config.rung_epochs, "names": trainable}],
            "winner": None, "final": None, "started": time.time()}


def _load_state(work: Path) -> dict:
    path = work / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"--resume: {path} is unreadable ({exc}); delete {work} to start "
                        "again") from None
    if state.get("format_version") != STATE_VERSION:
        raise UserError(f"--resume: {path} was written by another edge-tune version; delete "
                        f"{work} to start again")
    return state


def _measured(entry: dict) -> Measured:
    return Measured(entry["backbone"], entry["alpha"], entry["img_size"], entry["p50_ms"])


def _scored(entry: dict) -> Scored:
    return Scored(entry["name"], entry["p50_ms"], entry["val_accuracy"], entry["rung"])


def _run_rungs(config: SearchConfig, state: dict, work: Path, steps: Steps) -> None:
    """Train the rungs from where the state stands; the state is saved after each candidate."""
    by_name = {c["name"]: c for c in state["candidates"]}
    plan = state["plan"]
    total = sum(plan)
    done = sum(1 for i, rung in enumerate(state["rungs"]) for n in rung["names"]
               if str(i) in by_name[n]["results"])
    with progress_bar(total, "search (candidate trainings)", config.progress,
                      unit="run") as bar:
        bar.update(done)
        while True:
            index = len(state["rungs"]) - 1
            rung = state["rungs"][index]
            for position, name in enumerate(rung["names"]):
                entry = by_name[name]
                if str(index) in entry["results"]:
                    continue  # finished before an interruption
                if not fits(entry["p50_ms"], config.budget_ms):  # never: a corrupted state
                    raise RuntimeError(f"{name} is over the budget and must not be trained")
                log.info("rung %d/%d, candidate %d/%d: %s (p50 %.2f ms), %d epoch(s) ...",
                         index + 1, len(plan), position + 1, len(rung["names"]), name,
                         entry["p50_ms"], rung["epochs"])
                run = work / CANDIDATES_DIR / f"{name}-rung{index}"
                shutil.rmtree(run, ignore_errors=True)  # an interrupted one starts again
                started = time.time()
                metrics = steps.train(config, _measured(entry), run, rung["epochs"], 0)
                accuracy = steps.int8_accuracy(config, run)
                entry["results"][str(index)] = {
                    "epochs": rung["epochs"], "val_accuracy": accuracy.int8,
                    "keras_val_accuracy": accuracy.keras,
                    "trained_val_accuracy": metrics.get("val_accuracy"),
                    "seconds": round(time.time() - started, 1)}
                entry.update(val_accuracy=accuracy.int8, keras_val_accuracy=accuracy.keras,
                             rung=index)
                # its metrics hold the test split's accuracy, which no candidate may be
                # judged by: the run goes once its validation accuracy is recorded
                shutil.rmtree(run, ignore_errors=True)
                _save(work, state)
                log.info("%s: int8 val accuracy %.3f (Keras %.3f)", name, accuracy.int8,
                         accuracy.keras)
                bar.update()
            if index + 1 >= len(plan):
                return
            keep = survivors([_scored(by_name[n]) for n in rung["names"]], plan[index + 1])
            state["rungs"].append({"epochs": rung["epochs"] * config.eta, "names": keep})
            _save(work, state)
            log.info("rung %d kept %s", index + 1, ", ".join(keep))


def _train_winner(config: SearchConfig, state: dict, work: Path, steps: Steps) -> dict:
    """Train the winner into ``out`` (continuing its own checkpoint after an interruption)."""
    from train.checkpoints import CHECKPOINT_DIR
    from train.checkpoints import STATE_FILE as TRAIN_STATE

    out = Path(config.out)
    if state["final"] is not None:
        return state["final"]
    winner = next(c for c in state["candidates"] if c["name"] == state["winner"])
    if (out / "metrics.json").is_file() and (out / "model.keras").is_file():
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    else:
        resume = (out / CHECKPOINT_DIR / TRAIN_STATE).is_file()
        log.info("%s the winner, %s, into %s (%d + %d epochs) ...",
                 "resuming" if resume else "training", winner["name"], out, config.epochs,
                 config.fine_tune_epochs)
        metrics = steps.train(config, _measured(winner), out, config.epochs,
                              config.fine_tune_epochs, resume=resume)
    state["final"] = {"val_accuracy": metrics.get("val_accuracy"),
                      "test_accuracy": metrics.get("test_accuracy"),
                      "eval_split": metrics.get("eval_split")}
    _save(work, state)
    return state["final"]


def search(config: SearchConfig, steps: Steps | None = None) -> SearchResult:
    """Run (or resume) a search; write ``out`` (the winner's run) and ``out/tune/``.

    Raises:
        UserError: see :func:`preflight`; no candidate within the budget could be trained.
        KeyboardInterrupt: after the last finished candidate was saved.
    """
    from tune.report import write_report

    steps = steps or TrainingSteps()
    report = preflight(config)
    out = Path(config.out)
    work = work_dir(out)
    if config.resume:
        state = _load_state(work)
        config = replace(SearchConfig.from_dict(state["settings"]), resume=True,
                         progress=config.progress)
        log.info("resuming the search of %s (%s)", out, work / STATE_FILE)
    else:
        work.mkdir(parents=True, exist_ok=True)
        here = report is None
        if here:
            log.info("no --device report: measuring the candidates on THIS machine, not on "
                     "your device; for the device's own numbers run edge-tune probe, then "
                     "edge-bench on the device, and pass its report with --device")
            report = read_device_report(steps.measure_here(config, work / PROBE_DIR))
            try:
                fitting(report, config.budget_ms)
            except UserError as exc:
                raise UserError(f"{exc} (this machine's measurements stay in {report.path}: "
                                "pass it as --device to try another budget)") from None
        state = _new_state(config, report, here)
        _save(work, state)
        skipped = [c for c in state["candidates"] if c["skipped"]]
        over = sum(not c["fits"] for c in state["candidates"])
        log.info("%d candidate(s) fit %g ms of %d measured (%d over the budget, %d not "
                 "trainable with --weights %s); rungs: %s", len(state["rungs"][0]["names"]),
                 config.budget_ms, len(state["candidates"]), over, len(skipped),
                 config.weights, " → ".join(map(str, state["plan"])))
    _run_rungs(config, state, work, steps)
    if state["winner"] is None:
        winner = choose([_scored(c) for c in state["candidates"]], config.budget_ms)
        if winner is None:  # every candidate within the budget was trained: cannot happen
            raise RuntimeError("no trained candidate within the budget")
        state["winner"] = winner.name
        _save(work, state)
        log.info("winner: %s (int8 val accuracy %.3f, p50 %.2f ms)", winner.name,
                 winner.val_accuracy, winner.p50_ms)
    _train_winner(config, state, work, steps)
    result = write_report(out, config, state, work / PROBE_DIR)
    shutil.rmtree(work, ignore_errors=True)
    return result
