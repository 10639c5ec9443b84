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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Protocol

from common.errors import UserError
from common.fileio import write_json
from common.progress import progress_bar
from tune.device import DeviceReport, Measured, read_device_report
from tune.select import Scored, choose, fits, rung_sizes, survivors

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
STATE_VERSION = 1
PROBE_DIR = "probe"
CANDIDATES_DIR = "candidates"
LOCAL_RUNS = 50
"""Timed inferences per candidate when measuring on this machine (no ``--device``)."""
SCRATCH_LR = 2e-3
"""Learning rate from scratch (``--weights none``): the demo's, which learns in a few epochs."""
PRETRAINED_LR = 1e-4
"""Learning rate with pretrained weights: edge-train's default."""


@dataclass(frozen=True)
class SearchConfig:
    """Settings of one ``edge-tune search``."""

    data: str
    """Image folder (the layouts edge-train accepts)."""
    out: str
    """The winner's run directory (new or empty)."""
    budget_ms: float
    """Median single-image latency (p50) a candidate must not exceed on the device."""
    device: str | None = None
    """A probe's ``bench/report.json`` from the device; None: measure on this machine."""
    weights: str = "imagenet"
    """``imagenet``, ``none`` or a backbone weights file, for every candidate."""
    backbones: tuple[str, ...] = ()
    """Without ``device``: the backbones to probe here (empty: all)."""
    alphas: tuple[float, ...] = ()
    """Without ``device``: the widths to probe here (empty: the probe's default)."""
    sizes: tuple[int, ...] = ()
    """Without ``device``: the input sizes to probe here (empty: the probe's default)."""
    rung_epochs: int = 1
    """Epochs of the first rung; each later rung trains ``eta`` times longer."""
    eta: int = 2
    """Each rung keeps ``1/eta`` of the previous one."""
    finalists: int = 2
    """Halving stops when this many remain; the winner is the best of them."""
    epochs: int = 10
    """The winner's phase-1 epochs (edge-train --epochs)."""
    fine_tune_epochs: int = 10
    """The winner's phase-2 epochs (edge-train --fine-tune-epochs)."""
    batch_size: int = 32
    lr: float | None = None
    """Phase-1 learning rate; None: 1e-4 with pretrained weights, 2e-3 from scratch."""
    val_split: float = 0.2
    test_split: float = 0.1
    seed: int = 83
    """Seed of the split (the same for every candidate and the winner) and of training."""
    calibration_samples: int = 100
    """Train-split images calibrating each candidate's int8 conversion."""
    threads: int | None = None
    """Interpreter threads for the int8 measurements and a local probe (default: all cores)."""
    progress: bool = True
    resume: bool = False
    """Continue an interrupted search of ``out`` from its ``state.json``."""

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return SCRATCH_LR if self.weights == "none" else PRETRAINED_LR

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("progress", "resume"):
            del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> SearchConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("backbones", "alphas", "sizes"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)


@dataclass
class SearchResult:
    """The winner's run directory, the report's folder and the report."""

    out: Path
    report_dir: Path
    report: dict = field(default_factory=dict)


def work_dir(out: Path) -> Path:
    """Where the search keeps its state and candidates: ``out.tune`` beside ``out``."""
    return out.with_name(out.name + ".tune")


class Steps(Protocol):
    """The slow parts, replaceable in tests: measuring, training, int8 accuracy."""

    def measure_here(self, config: SearchConfig, folder: Path) -> Path:
        """Build a probe in ``folder``, time it on this machine; the bench report's path."""

    def train(self, config: SearchConfig, candidate: Measured, out: Path, epochs: int,
              fine_tune_epochs: int, resume: bool = False) -> dict:
        """Train ``candidate`` into the run directory ``out``; its metrics.json content."""

    def int8_accuracy(self, config: SearchConfig, run: Path):
        """The run's :class:`tune.int8.Int8Accuracy` on the validation split."""


class TrainingSteps:
    """The real steps: :mod:`tune.probe` + :mod:`benchmarks.probe`, ``train.trainer.train``,
    :func:`tune.int8.int8_val_accuracy`."""

    def measure_here(self, config: SearchConfig, folder: Path) -> Path:
        from benchmarks.config import BenchConfig
        from benchmarks.probe import bench_probe, is_probe
        from tune.probe import DEFAULT_ALPHAS, DEFAULT_SIZES, ProbeSettings, build_probe

        report = folder / "bench" / "report.json"
        if report.is_file():  # an earlier attempt's (whose budget fitted nobody, say)
            log.info("reusing this machine's measurements in %s", report)
            return report
        if not is_probe(folder):
            shutil.rmtree(folder, ignore_errors=True)  # an interrupted probe of our own
            build_probe(ProbeSettings(out=str(folder), backbones=config.backbones,
                                      alphas=config.alphas or DEFAULT_ALPHAS,
                                      sizes=config.sizes or DEFAULT_SIZES,
                                      progress=config.progress))
        result = bench_probe(BenchConfig(path=str(folder), runs=LOCAL_RUNS, warmup=5,
                                         repeats=5, threads=config.threads, memory=False,
                                         progress=config.progress))
        return result.out / "report.json"

    def train(self, config: SearchConfig, candidate: Measured, out: Path, epochs: int,
              fine_tune_epochs: int, resume: bool = False) -> dict:
        import keras

        from train.config import TrainConfig
        from train.trainer import train

        if resume:
            settings = TrainConfig(data=config.data, out=str(out), resume=True)
        else:
            settings = training_config(config, candidate, out, epochs, fine_tune_epochs)
        try:
            return train(settings).metrics
        finally:
            keras.backend.clear_session()

    def int8_accuracy(self, config: SearchConfig, run: Path):
        from tune.int8 import int8_val_accuracy

        return int8_val_accuracy(run, config.calibration_samples, config.threads,
                                 progress=config.progress)


def training_config(config: SearchConfig, candidate: Measured, out: Path, epochs: int,
                    fine_tune_epochs: int):
    """The ``TrainConfig`` of one candidate: the search's data, split, seed and weights."""
    from train.config import TrainConfig

    return TrainConfig(data=config.data, out=str(out), backbone=candidate.backbone,
                       alpha=candidate.alpha, img_size=candidate.img_size,
                       weights=config.weights, epochs=epochs,
                       fine_tune_epochs=fine_tune_epochs, batch_size=config.batch_size,
                       lr=config.learning_rate, val_split=config.val_split,
                       test_split=config.test_split, seed=config.seed)


def untrainable_reason(config: SearchConfig, candidate: Measured) -> str | None:
    """Why edge-train refuses this candidate with the search's weights (ImageNet weights
    exist for some widths and sizes only), or None; asked of ``TrainConfig.validate``."""
    try:
        training_config(config, candidate, Path(config.out), 1, 0).validate()
    except UserError as exc:
        return str(exc)
    return None


def validate(config: SearchConfig) -> None:
    """Refuse impossible settings before any slow work.

    Raises:
        UserError: naming the flag and what it must be.
    """
    checks = [
        (config.budget_ms > 0, f"--budget-ms {config.budget_ms}: must be positive"),
        (config.rung_epochs >= 1, f"--rung-epochs {config.rung_epochs}: must be at least 1"),
        (config.eta >= 2, f"--eta {config.eta}: must be at least 2"),
        (config.finalists >= 1, f"--finalists {config.finalists}: must be at least 1"),
        (config.epochs >= 1, f"--epochs {config.epochs}: must be at least 1"),
        (config.fine_tune_epochs >= 0,
         f"--fine-tune-epochs {config.fine_tune_epochs}: must be ≥ 0"),
        (config.calibration_samples >= 1,
         f"--calibration-samples {config.calibration_samples}: must be at least 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


def fitting(report: DeviceReport, budget_ms: float) -> list[Measured]:
    """The measured candidates that meet the budget.

    Raises:
        UserError: none does (naming the fastest, so the user knows what budget would do).
    """
    inside = [c for c in report.candidates if fits(c.p50_ms, budget_ms)]
    if not inside:
        fastest = min(report.candidates, key=lambda c: c.p50_ms)
        raise UserError(f"--budget-ms {budget_ms:g}: no candidate of {report.path} fits (the "
                        f"fastest, {fastest.name}, takes {fastest.p50_ms:.2f} ms at p50); "
                        "raise the budget or probe smaller widths and sizes")
    return inside


def preflight(config: SearchConfig) -> DeviceReport | None:
    """The checks that need no TensorFlow, before it starts: settings, the run directory,
    the device report and the budget (None without ``--device``).

    Raises:
        UserError: bad settings, an ``out`` in use, a missing data folder, an unreadable
            device report, a budget no candidate fits, nothing to resume.
    """
    validate(config)
    out = Path(config.out)
    state = work_dir(out) / STATE_FILE
    if config.resume:
        if not state.is_file():
            raise UserError(f"--resume: no search of {out} to resume (expected {state})")
        return None
    if state.is_file():
        raise UserError(f"a search of {out} was interrupted ({state}); continue it with "
                        "--resume, or delete that folder to start again")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} already exists and is not empty; choose a new run "
                        "directory")
    work = work_dir(out)
    # the search deletes its working folder at the end: it must hold nothing but its own
    # (an earlier attempt's measurements of this machine, whose budget fitted nobody)
    if work.exists() and (not work.is_dir()
                          or any(entry.name != PROBE_DIR for entry in work.iterdir())):
        raise UserError(f"{work} exists and is not an edge-tune working folder; move it "
                        f"away or choose another --out")
    if config.data not in ("demo", "cats_vs_dogs") and not Path(config.data).expanduser().is_dir():
        raise UserError(f"--data {config.data}: not a folder")
    if config.device is None:
        return None
    report = read_device_report(config.device)
    fitting(report, config.budget_ms)
    return report


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
