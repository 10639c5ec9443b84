"""``--int8-target-drop POINTS`` (0.5 by default): keep layers in float, one at a time, only while
that helps.

After the plain int8 export, int8 is measured against Keras on the *validation* split (the test
split stays for the final, honest report). Past the target, the quantization debugger's signal
layers (:mod:`export.quant_debug`: never noise) are tried worst first: each is added to the
float set, int8 re-converted and re-measured, and kept only when validation accuracy rises;
the search stops at the target, at the first layer that does not help, or when no signal layer
is left. On a model without outlier layers nothing stands out and nothing is kept: the loss is
rounding noise, which more calibration images or quantization-aware training can reduce.

Whatever the outcome, what was measured says how sure it is: the images plain int8 alone and Keras
alone got right on validation (McNemar, :mod:`export.verify`), the debugger's verdict, and, when
layers were kept in float, the latency of both models on this machine beside their sizes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from export.quant_debug import SIGNAL

DEFAULT_TARGET_DROP = 0.5
"""``--int8-target-drop`` of a plain ``edge-export``: int8 may lose half a point on validation
before signal layers are tried in float (``off`` turns the check off)."""

WITHIN, NO_SIGNAL, REACHED, NO_GAIN, EXHAUSTED = (
    "within target", "no signal layer", "target reached", "no further gain",
    "no signal layer left")
"""How the search ended."""
NO_VALIDATION, OFF = "no validation images", "off"
"""The manifest's outcome when the run has no validation split to measure int8 on, and when
``--int8-target-drop off`` turned the check off."""


@dataclass(frozen=True)
class Step:
    """One layer tried."""

    layer: str
    """The tensor name added to the float set."""
    accuracy: float
    """Validation accuracy with it (and the layers kept before it) in float."""
    kept: bool


@dataclass(frozen=True)
class AutoFloat:
    """What the automatic mode tried, kept and cost."""

    target: float
    """``--int8-target-drop``: accuracy points int8 may lose against Keras on validation."""
    keras_accuracy: float
    plain_accuracy: float
    """Plain int8's validation accuracy."""
    plain_bytes: int
    outcome: str
    """One of :data:`WITHIN`, :data:`NO_SIGNAL`, :data:`REACHED`, :data:`NO_GAIN`,
    :data:`EXHAUSTED`."""
    steps: tuple[Step, ...] = ()
    float_layers: tuple[str, ...] = ()
    """The layers kept in float in the chosen model (empty: plain int8 is chosen)."""
    accuracy: float = 0.0
    """The chosen model's validation accuracy."""
    model: bytes = field(default=b"", repr=False)
    """The chosen flatbuffer."""
    paired: tuple[int, int, float] | None = None
    """Plain int8 against Keras on validation: (images only Keras got right, images only int8
    got right, McNemar p)."""
    debugger: tuple[int, int, float] | None = None
    """When the debugger ran: (layers, signal layers, the worst layer's multiple of the
    rounding-noise floor)."""
    latency_ms: tuple[float, float] | None = None
    """When layers were kept in float: median inference ms of plain int8 and of the chosen
    model, measured interleaved on this machine."""

    @property
    def drop(self) -> float:
        """The chosen model's loss against Keras on validation, in points."""
        return 100 * (self.keras_accuracy - self.accuracy)

    def to_json(self, split: str) -> dict:
        """The manifest's ``int8_target_drop`` entry (sizes in bytes)."""
        return {"points": self.target, "split": split, "outcome": self.outcome,
                "keras_accuracy": self.keras_accuracy, "int8_accuracy": self.plain_accuracy,
                "accuracy": self.accuracy, "float_layers": list(self.float_layers),
                "steps": [{"layer": s.layer, "accuracy": s.accuracy, "kept": s.kept}
                          for s in self.steps],
                "plain_bytes": self.plain_bytes, "bytes": len(self.model),
                "paired": None if self.paired is None else dict(zip(
                    ("keras_only_correct", "int8_only_correct", "mcnemar_p"), self.paired)),
                "debugger": None if self.debugger is None else dict(zip(
                    ("layers", "signal_layers", "worst_times_floor"), self.debugger)),
                "latency_ms": None if self.latency_ms is None else dict(zip(
                    ("plain", "chosen"), self.latency_ms))}


def search_float_layers(target: float, keras_accuracy: float, plain_accuracy: float,
                        plain: bytes, measure: Callable[[bytes], float],
                        report: Callable[[], list[dict]],
                        convert: Callable[[list[str]], bytes], *,
                        paired: tuple[int, int, float] | None = None,
                        latency: Callable[[bytes, bytes], tuple[float, float]] | None = None
                        ) -> AutoFloat:
    """Choose the int8 model: plain, or with signal layers kept in float while that helps.

    Args:
        target: accuracy points int8 may lose against Keras (``keras_accuracy``, validation).
        plain_accuracy, plain: the plain int8 flatbuffer and its validation accuracy.
        measure: a flatbuffer's validation accuracy.
        report: the debugger's rows, worst first (:func:`export.quant_debug.quantization_report`);
            called only when plain int8 misses the target.
        convert: the int8 flatbuffer with the given tensors left in float.
        paired: plain int8's paired counts against Keras on validation, kept for the report.
        latency: median inference ms of (plain, chosen) flatbuffers; called only when layers
            were kept in float, so the report puts the latency cost beside the size cost.
    """
    common = dict(target=target, keras_accuracy=keras_accuracy, plain_accuracy=plain_accuracy,
                  plain_bytes=len(plain), paired=paired)

    def missed(accuracy: float) -> bool:
        # rounded as the manifest's accuracy_drop_points is, so 0.999…-point float noise
        # does not count as a miss
        return round(100 * (keras_accuracy - accuracy), 2) > target

    if not missed(plain_accuracy):
        return AutoFloat(**common, outcome=WITHIN, accuracy=plain_accuracy, model=plain)
    rows = report()
    signal = [r["tensor_name"] for r in rows if r["verdict"] == SIGNAL and r["tensor_name"]]
    common["debugger"] = (len(rows), len(signal),
                          max((r["times_floor"] for r in rows), default=0.0))
    if not signal:
        return AutoFloat(**common, outcome=NO_SIGNAL, accuracy=plain_accuracy, model=plain)
    kept: list[str] = []
    steps: list[Step] = []
    best, best_model = plain_accuracy, plain
    outcome = EXHAUSTED
    for layer in signal:
        candidate = convert(kept + [layer])
        accuracy = measure(candidate)
        helps = accuracy > best
        steps.append(Step(layer, accuracy, helps))
        if not helps:
            outcome = NO_GAIN
            break
        kept.append(layer)
        best, best_model = accuracy, candidate
        if not missed(best):
            outcome = REACHED
            break
    timed = latency(plain, best_model) if kept and latency is not None else None
    return AutoFloat(**common, outcome=outcome, steps=tuple(steps), float_layers=tuple(kept),
                     accuracy=best, model=best_model, latency_ms=timed)
