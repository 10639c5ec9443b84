"""``edge-tune probe``: untrained candidate models, int8 as export converts them, for the device
bench to time (:mod:`benchmarks.probe_bench` describes the folder and reads it on the device).

Random weights cost what trained ones cost: latency depends on the architecture, the width and
the input size, not on the values of the weights. So no training and no data are needed, and
the calibration images are random pixels (ranges fitted to noise give a model that answers
nonsense at exactly the speed of a calibrated one).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.probe_bench import Probe, ProbeCandidate, candidate_name
from common.errors import UserError
from common.fileio import sha256, write_bytes
from common.progress import progress_bar
from common.versions import library_versions
from export.formats import FORMATS

log = logging.getLogger(__name__)

DEFAULT_ALPHAS = (0.35, 0.5, 0.75, 1.0)
DEFAULT_SIZES = (96, 128, 160)
DEFAULT_CLASSES = 10
CALIBRATION_IMAGES = 4
"""Random calibration pictures per candidate: enough for the converter, whose ranges here only
need to exist (the weights are random too)."""
INT8_IO = "uint8"
"""The int8 variant's input and output type, export's default (camera frames are uint8)."""


def default_backbones() -> tuple[str, ...]:
    """Every backbone edge-train knows."""
    from train.model import BACKBONES

    return tuple(BACKBONES)


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of one ``edge-tune probe``."""

    out: str
    """The probe folder to create (new or empty)."""
    backbones: tuple[str, ...] = ()
    """Backbones to probe (empty: every one of :data:`train.model.BACKBONES`)."""
    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    """Width multipliers."""
    sizes: tuple[int, ...] = DEFAULT_SIZES
    """Square input sides in pixels."""
    classes: int = DEFAULT_CLASSES
    """Outputs of the head (its cost is small but real)."""
    seed: int = 0
    """Seed of the random weights' calibration pixels."""
    progress: bool = True


def grid(backbones: Sequence[str], alphas: Sequence[float], sizes: Sequence[int]
         ) -> list[tuple[str, float, int]]:
    """Every (backbone, alpha, size), each once, in the order given."""
    combos = [(b, float(a), int(s)) for b in backbones for a in alphas for s in sizes]
    return list(dict.fromkeys(combos))


def check_settings(settings: ProbeConfig) -> None:
    """Refuse settings that cannot give a probe, before TensorFlow starts.

    Raises:
        UserError: an unknown backbone, an empty or impossible list, an ``out`` in use.
    """
    from train.model import BACKBONES

    unknown = [b for b in settings.backbones if b not in BACKBONES]
    if unknown:
        raise UserError(f"--backbones: unknown {', '.join(unknown)}; expected some of "
                        f"{', '.join(BACKBONES)}")
    if not settings.alphas or any(a <= 0 for a in settings.alphas):
        raise UserError(f"--alphas {settings.alphas}: expected positive widths such as 0.35,1.0")
    if not settings.sizes or any(s < 1 for s in settings.sizes):
        raise UserError(f"--sizes {settings.sizes}: expected input sides such as 96,160")
    if settings.classes < 2:
        raise UserError(f"--classes {settings.classes}: must be at least 2")
    out = Path(settings.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not an empty folder; choose a new probe "
                        "folder (a probe is written whole, never over other files)")


def _why_not(backbone: str, alpha: float, size: int) -> str | None:
    """Why edge-train could not train this combination whatever the weights, or None."""
    from train.config import TrainConfig

    try:
        TrainConfig(data="-", out="-", backbone=backbone, alpha=alpha, img_size=size,
                    weights="none").validate()
    except UserError as exc:
        return str(exc)
    return None


def convert_candidate(backbone: str, alpha: float, size: int, classes: int,
                      rng: np.random.Generator) -> bytes:
    """The int8 flatbuffer of an untrained candidate, converted as ``edge-export`` converts.

    Raises:
        UserError: the combination cannot be built (Keras refuses it).
    """
    import keras

    from export.convert import convert
    from train.model import build_model

    try:
        model = build_model(classes, size, alpha, "none", backbone=backbone)
    except (ValueError, UserError) as exc:
        raise UserError(str(exc).splitlines()[0][:200]) from None
    try:
        calibration = rng.integers(0, 256, (CALIBRATION_IMAGES, size, size, 3), np.uint8)
        return convert(model, FORMATS["int8"], calibration, INT8_IO, progress=False)
    finally:
        keras.backend.clear_session()  # dozens of models: free each graph once converted


def build_probe(settings: ProbeConfig) -> Probe:
    """Write ``settings.out``: one int8 ``.tflite`` per candidate, then ``probe.json``.

    A combination that cannot be built is skipped and recorded with its reason.

    Raises:
        UserError: bad settings, or not one candidate could be built.
    """
    check_settings(settings)
    backbones = settings.backbones or default_backbones()
    combos = grid(backbones, settings.alphas, settings.sizes)
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.seed)
    candidates: list[ProbeCandidate] = []
    skipped: list[dict] = []
    started = time.time()
    log.info("probing %d candidate(s) into %s (untrained, int8) ...", len(combos), out)
    with progress_bar(len(combos), "converting candidates", settings.progress,
                      unit="model") as bar:
        for backbone, alpha, size in combos:
            name = candidate_name(backbone, alpha, size)
            reason = _why_not(backbone, alpha, size)
            flatbuffer = None
            if reason is None:
                try:
                    flatbuffer = convert_candidate(backbone, alpha, size, settings.classes, rng)
                except UserError as exc:
                    reason = str(exc)
            if flatbuffer is None:
                log.warning("skipping %s: %s", name, reason)
                skipped.append({"backbone": backbone, "alpha": alpha, "img_size": size,
                                "reason": reason})
            else:
                path = write_bytes(out / f"{name}.tflite", flatbuffer)
                candidates.append(ProbeCandidate(backbone, alpha, size, path.name,
                                                 bytes=path.stat().st_size, sha256=sha256(path),
                                                 input_dtype=INT8_IO))
            bar.update()
    if not candidates:
        raise UserError("no candidate could be built: "
                        + "; ".join(f"{s['backbone']} {s['alpha']:g} {s['img_size']}: "
                                    f"{s['reason']}" for s in skipped[:3]))
    probe = Probe(candidates=tuple(candidates), classes=settings.classes,
                  skipped=tuple(skipped),
                  extra={"seconds": round(time.time() - started, 1),
                         "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                         "versions": library_versions("tensorflow", "keras", "numpy")})
    probe.save(out)  # last: the probe is complete once it names its files
    return probe
