"""``edge-tune search``'s settings, and the checks made before TensorFlow starts: the
settings, the run directory, the device report and the budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from common.errors import UserError
from train.config import TrainConfig
from tune.device_report import DeviceReport, Measured, read_device_report
from tune.select import fits

STATE_FILE = "state.json"
PROBE_DIR = "probe"
SCRATCH_LR = 5e-3
"""Learning rate from scratch (``--weights none``): what taught the demo's shapes to a
MobileNetV3-Small from scratch in ten epochs (docs/training.md, "The demo's recipe")."""
PRETRAINED_LR = TrainConfig.lr
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
    """Phase-1 learning rate; None: ``PRETRAINED_LR`` with pretrained weights, ``SCRATCH_LR``
    from scratch."""
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
