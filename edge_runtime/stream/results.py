"""How results are written: one JSON object per line, or an aligned table a person reads."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, TextIO

from edge_runtime.classifier import Prediction

if TYPE_CHECKING:
    from edge_runtime.stream.summary import StreamSummary


def result_json(source: str, predictions: list[Prediction], latency_ms: float) -> dict:
    """The ``--json`` object for one classified picture or frame."""
    return {"source": source,
            "top_k": [{"label": p.label, "index": p.index, "score": round(p.score, 6)}
                      for p in predictions],
            "latency_ms": round(latency_ms, 3)}


class ResultWriter:
    """Writes results as JSON lines or as an aligned table with a header.

    Args:
        as_json: one JSON object per line instead of a table.
        k: the ``--top-k`` asked for (the table gets a column per extra class).
        source_width: width of the source column: the longest name, so every path is shown
            whole (to open or copy) and the columns stay aligned.
        label_width: width of a label (the longest class name).
        stream: where to write (stdout by default).

    A model reloaded mid-run may bring longer class names or more classes: the first row that
    no longer fits widens the table, under a header written again.
    """

    def __init__(self, as_json: bool, k: int, source_width: int, label_width: int,
                 stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.k = k
        self.source_width = max(6, source_width)
        self.label_width = max(5, label_width)
        self.stream = stream
        self._header_done = False

    def _write(self, line: str) -> None:
        # flushed per line: a camera run or a long folder is read while it runs
        print(line, file=self.stream or sys.stdout, flush=True)

    def result(self, source: str, predictions: list[Prediction], latency_ms: float) -> None:
        """Write one picture's or frame's predictions."""
        if self.as_json:
            self._write(json.dumps(result_json(source, predictions, latency_ms)))
            return
        widest = max((len(p.label) for p in predictions), default=0)
        if widest > self.label_width or len(predictions) > self.k:
            self.label_width = max(self.label_width, widest)
            self.k = max(self.k, len(predictions))
            self._header_done = False
        if not self._header_done:
            self._write(self._row("SOURCE", "LABEL", "SCORE", "MS",
                                  [f"TOP-{i}" for i in range(2, self.k + 1)]))
            self._header_done = True
        best = predictions[0] if predictions else None
        others = [f"{p.label} {p.score:.3f}" for p in predictions[1:]]
        others += ["-"] * (self.k - 1 - len(others))
        self._write(self._row(source, best.label if best else "-",
                              f"{best.score:.3f}" if best else "-", f"{latency_ms:.2f}", others))

    def _row(self, source: str, label: str, score: str, ms: str, others: list[str]) -> str:
        cells = [source.ljust(self.source_width), label.ljust(self.label_width),
                 score.rjust(5), ms.rjust(8)]
        cells += [cell.ljust(self.label_width + 6) for cell in others]
        return "  ".join(cells).rstrip()

    def period(self, name: str, period: StreamSummary) -> None:
        """Write the line of one period of ``--summary-every``: frames, rate, inference time,
        the label most often first."""
        p50, top = period.inference_ms_p50, period.most_frequent
        if self.as_json:
            out = {"seconds": round(period.seconds, 3), "frames": period.frames,
                   "fps": round(period.fps, 3),
                   "inference_ms_p50": round(p50, 3) if p50 is not None else None,
                   "top_label": top[0] if top else None, "top_label_frames": top[1] if top else 0}
            if period.shadow is not None:
                out["shadow"] = period.shadow
            self._write(json.dumps({"period": out}))
            return
        self._write(f"{name}: last {period.seconds:.0f} s: {period.frames} frames, "
                    f"{period.fps:.1f} fps, inference p50 "
                    + (f"{p50:.2f} ms" if p50 is not None else "-")
                    + (f", most often {top[0]} ({top[1]} frames)" if top else
                       ", no label above the threshold")
                    + (f"; {shadow_words(period.shadow)}" if period.shadow else ""))

    def summary(self, name: str, summary: StreamSummary) -> None:
        """Write the closing line of a camera or video run."""
        if self.as_json:
            self._write(json.dumps(summary.to_json()))
            return
        p50 = summary.inference_ms_p50
        line = (f"{name}: {summary.frames} frames in {summary.seconds:.1f} s, "
                f"{summary.fps:.1f} fps, inference p50 "
                + (f"{p50:.2f} ms" if p50 is not None else "-"))
        if summary.dropped:
            line += f" ({summary.dropped} older frames skipped to stay live)"
        if summary.shadow is not None:
            line += f"; {shadow_words(summary.shadow)}"
        self._write(line)


def shadow_words(shadow: dict) -> str:
    """A shadow's agreement in a summary line: ``shadow 9b21d0c4e7aa agreed on 96.2 % of 812
    frames (least: dog 91.0 %)``."""
    if not shadow["frames"]:
        return f"shadow {shadow['candidate']}: no frame compared yet"
    per_class = shadow.get("per_class") or {}
    least = min(per_class.items(), key=lambda item: (item[1]["agreement"], item[0]),
                default=None)
    return (f"shadow {shadow['candidate']} agreed on {100 * shadow['agreement']:.1f} % of "
            f"{shadow['frames']} frames"
            + (f" (least: {least[0]} {100 * least[1]['agreement']:.1f} %)" if least else ""))
