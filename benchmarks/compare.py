"""Two models on the same images: which one to ship (``edge-compare``).

Each side is a run directory (its Keras model; TensorFlow) or a bundle (one TFLite variant
through the edge runtime, TensorFlow-free). Both see the same images: a folder the user kept
apart (``--data DIR/<class>/...``), or by default the union of both runs' test splits less
every image either run trained or validated on. The paired question "is B better than A on
these images" is answered as export answers it for a variant against Keras: the images only
one of them got right, and the exact McNemar test of :mod:`export.verify` on those counts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.bundle_reader import is_bundle, load_bundle, open_classifier
from common import figures
from common.errors import UserError
from common.fileio import sha256, write_json, write_text
from common.rundir import SPLITS, check_run, read_config
from edge_runtime.errors import ImageError
from edge_runtime.image import RESIZE_METHOD, load_model_pixels
from export.verify import SIGNIFICANCE_LEVEL, difference_kind, mcnemar_p
from train.splits import Splits, scan_folder

log = logging.getLogger(__name__)

VERDICTS = {"gain": "better", "loss": "worse", "noise": "same", "same": "same"}
""":func:`export.verify.difference_kind` of (A only, B only) → the verdict on B."""

BATCH = 32
"""Images decoded and run at once (memory stays bounded whatever the number of images)."""

LISTED = 20
"""Images only one side got right, listed by name in ``report.md`` (all are in report.json)."""


class CompareError(UserError):
    """The two models cannot be compared as asked."""


@dataclass
class Side:
    """One of the two models."""

    path: Path
    kind: str
    """``run`` (the Keras model) or ``bundle`` (a TFLite variant)."""
    labels: list[str]
    predict: Callable[[list[np.ndarray]], np.ndarray]
    """uint8 model pixels (H, W, 3) at :attr:`size` → top-1 indices."""
    size: tuple[int, int]
    resize: str
    splits: Splits | None = None
    """The training split of the run (of a bundle: of the run it sits in), when there."""
    variant: str | None = None

    @property
    def name(self) -> str:
        return f"{self.path}" + (f" ({self.variant})" if self.variant else "")


def needs_tensorflow(path: Path) -> bool:
    """Whether ``path`` is a run directory (its Keras model needs TensorFlow), not a bundle."""
    return not is_bundle(path)


def open_side(path: Path, variant: str | None = None) -> Side:
    """The model at ``path``: a bundle's ``variant`` (default int8, else its first), or a run's
    Keras model.

    Raises:
        UserError: not a finished run nor a bundle, an unknown variant, a broken bundle.
    """
    if is_bundle(path):
        manifest = load_bundle(path, f"re-run edge-export on the run {path} came from")
        variants = manifest.cpu_variants()  # the AI Camera's network runs on its sensor
        if not variants:
            raise CompareError(f"{path} has no variant that runs on the CPU")
        if variant is None:
            variant = "int8" if "int8" in variants else next(iter(variants))
        if variant not in variants:
            raise CompareError(f"{path} has no variant {variant!r} that runs here (it has "
                               f"{', '.join(variants)})")
        classifier = open_classifier(path / variants[variant].file, f"{path}", None, None)

        def predict_tflite(pixels: list[np.ndarray]) -> np.ndarray:
            return classifier.probabilities(np.stack(pixels)).argmax(axis=1)

        splits_file = path.parent / SPLITS  # a bundle still inside its run directory
        return Side(path, "bundle", list(classifier.labels), predict_tflite,
                    classifier.input_size, classifier.resize_method,
                    Splits.load(splits_file) if splits_file.is_file() else None, variant)
    if variant is not None:
        log.debug(f"--variant applies to bundles; {path} is a run: its Keras model is compared")
    check_run(path)
    from train.saved_run import load_run  # TensorFlow: only for a run directory

    model, splits, labels = load_run(path)
    height, width = (int(d) for d in model.input_shape[1:3])

    def predict_keras(pixels: list[np.ndarray]) -> np.ndarray:
        return np.asarray(model(np.stack(pixels).astype(np.float32), training=False)).argmax(1)

    return Side(path, "run", labels, predict_keras, (height, width),
                read_config(path).get("resize", RESIZE_METHOD), splits)


def default_images(a: Side, b: Side) -> list[tuple[Path, str]]:
    """The union of both sides' test splits, less every image either trained or validated on:
    ``(path, true label)``, sorted by path.

    Raises:
        CompareError: a side has no split to read (a bundle outside its run), or nothing is left.
    """
    for side in (a, b):
        if side.splits is None:
            raise CompareError(f"{side.path} is a bundle copied out of its run: there is no "
                               "test split to read; give --data DIR (DIR/<class>/... images "
                               "neither model trained on)")
    seen: set[Path] = set()
    for side in (a, b):
        for split in ("train", "val"):
            seen.update(p.resolve() for p in side.splits.paths(split))
    images: dict[Path, str] = {}
    for side in (a, b):
        splits = side.splits
        for path, label in zip(splits.paths("test"), splits.labels["test"]):
            path = path.resolve()
            if path not in seen:
                images.setdefault(path, splits.classes[label])
    # a retrained run's data is often a copy (photos/ merged with the old folder): the same
    # picture under another path is the same picture, so contents are compared too
    seen_content = {_digest(p) for p in seen}
    images = {p: label for p, label in images.items() if _digest(p) not in seen_content}
    if not images:
        raise CompareError("the two runs' test splits hold no image that neither trained or "
                           "validated on; give --data DIR (images kept apart)")
    return sorted(images.items())


def _digest(path: Path) -> str | None:
    """The sha256 of a file's bytes, None when it cannot be read (moved since training)."""
    try:
        return sha256(path)
    except OSError:
        return None


def folder_images(folder: Path) -> list[tuple[Path, str]]:
    """Every image of ``folder/<class>/...`` with its class (``--data``).

    Raises:
        DataError: no such folder, fewer than 2 classes, a class without an image.
    """
    root, _classes, per_class, skipped = scan_folder(folder)
    for rel, reason in skipped:
        log.warning(f"skipping {root / rel}: {reason}")
    return sorted((root / rel, name) for name, files in per_class.items() for rel in files)


def _answers(side: Side, images: Sequence[tuple[Path, str]],
             unreadable: set[Path]) -> list[str | None]:
    """``side``'s top-1 label for each image (None for one that cannot be read)."""
    out: list[str | None] = []
    for start in range(0, len(images), BATCH):
        chunk = images[start:start + BATCH]
        pixels, where = [], []
        for i, (path, _) in enumerate(chunk):
            try:
                pixels.append(load_model_pixels(path, side.size, side.resize))
                where.append(i)
            except ImageError as exc:
                if path not in unreadable:
                    log.warning(f"skipping {exc}")
                unreadable.add(path)
        answers: list[str | None] = [None] * len(chunk)
        if pixels:
            for i, index in zip(where, side.predict(pixels)):
                answers[i] = side.labels[int(index)]
        out.extend(answers)
    return out


@dataclass
class Comparison:
    """What ``edge-compare`` measured (``report.json``)."""

    a: dict
    b: dict
    images: int
    per_class: dict[str, dict] = field(default_factory=dict)
    a_only: list[str] = field(default_factory=list)
    b_only: list[str] = field(default_factory=list)
    mcnemar_p: float = 1.0
    verdict: str = "same"
    source: str = ""
    unreadable: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"a": self.a, "b": self.b, "images": self.images, "source": self.source,
                "per_class": self.per_class, "a_only_correct": self.a_only,
                "b_only_correct": self.b_only, "mcnemar_p": self.mcnemar_p,
                "significance_level": SIGNIFICANCE_LEVEL, "verdict": self.verdict,
                "unreadable": self.unreadable}


def tally(images: Sequence[tuple[Path, str]], a: Sequence[str | None],
          b: Sequence[str | None]) -> tuple[dict[str, dict], list[str], list[str], int, int]:
    """Per class ``{"images", "a", "b"}`` accuracies, the images only A and only B got right,
    and how many each got right. Images either side could not read (None) are left out."""
    counts: dict[str, list[int]] = {}
    a_only, b_only = [], []
    a_right = b_right = 0
    for (path, truth), answer_a, answer_b in zip(images, a, b):
        if answer_a is None or answer_b is None:
            continue
        row = counts.setdefault(truth, [0, 0, 0])
        ok_a, ok_b = answer_a == truth, answer_b == truth
        row[0] += 1
        row[1] += ok_a
        row[2] += ok_b
        a_right += ok_a
        b_right += ok_b
        if ok_a and not ok_b:
            a_only.append(str(path))
        elif ok_b and not ok_a:
            b_only.append(str(path))
    per_class = {label: {"images": n, "a": ra / n, "b": rb / n}
                 for label, (n, ra, rb) in sorted(counts.items())}
    return per_class, a_only, b_only, a_right, b_right


def compare(a: Side, b: Side, images: Sequence[tuple[Path, str]], source: str) -> Comparison:
    """Run both sides on ``images`` and compare them (B against A).

    Raises:
        CompareError: no image could be read.
    """
    unreadable: set[Path] = set()
    answers_a = _answers(a, images, unreadable)
    answers_b = _answers(b, images, unreadable)
    per_class, a_only, b_only, a_right, b_right = tally(images, answers_a, answers_b)
    n = sum(row["images"] for row in per_class.values())
    if n == 0:
        raise CompareError("no image could be read")
    p = mcnemar_p(len(a_only), len(b_only))
    verdict = VERDICTS[difference_kind(len(a_only), len(b_only), p)]

    def about(side: Side, right: int) -> dict:
        unknown = sorted({label for _, label in images} - set(side.labels))
        return {"path": str(side.path), "kind": side.kind, "variant": side.variant,
                "accuracy": right / n, "correct": right, "labels": side.labels,
                "unknown_labels": unknown}

    return Comparison(about(a, a_right), about(b, b_right), n, per_class, a_only, b_only, p,
                      verdict, source, sorted(str(p) for p in unreadable))


def report_markdown(c: Comparison) -> str:
    """``report.md``: the verdict, both accuracies, per class, the images only one got right."""
    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    lines = [
        "# edge-compare", "",
        f"**Verdict: B is {c.verdict}** than A" if c.verdict != "same" else
        "**Verdict: the same within noise**",
        f"(exact McNemar p = {c.mcnemar_p:.4g}; a difference counts below "
        f"{SIGNIFICANCE_LEVEL:g})", "",
        f"{c.images} images: {c.source}", "",
        "| | model | accuracy | right |", "| --- | --- | --- | --- |",
        f"| A | `{c.a['path']}` {c.a['variant'] or c.a['kind']} | {pct(c.a['accuracy'])} | "
        f"{c.a['correct']} |",
        f"| B | `{c.b['path']}` {c.b['variant'] or c.b['kind']} | {pct(c.b['accuracy'])} | "
        f"{c.b['correct']} |", "",
        f"Only A right: {len(c.a_only)} images; only B right: {len(c.b_only)}.", "",
        "| class | images | A | B |", "| --- | --- | --- | --- |",
        *(f"| {label} | {row['images']} | {pct(row['a'])} | {pct(row['b'])} |"
          for label, row in c.per_class.items()), ""]
    for side, key, only in (("A", "a", c.a_only), ("B", "b", c.b_only)):
        unknown = c.a["unknown_labels"] if key == "a" else c.b["unknown_labels"]
        if unknown:
            lines.append(f"{side} has no class {', '.join(unknown)}: its images count as wrong "
                         "for it.")
        if only:
            lines += ["", f"Only {side} right ({len(only)}; all in report.json):", "",
                      *(f"- {p}" for p in only[:LISTED])]
    if c.unreadable:
        lines += ["", f"{len(c.unreadable)} unreadable image(s) left out (report.json)."]
    return "\n".join(lines) + "\n"


def plot(c: Comparison, path: Path) -> bool:
    """Per-class accuracy bars, A beside B; False when matplotlib is missing."""
    if figures.missing():
        return False
    labels = list(c.per_class)
    x = np.arange(len(labels))
    figure = figures.new_figure(max(5.0, 0.8 * len(labels) + 2), 3.6)
    ax = figure.add_subplot()
    ax.bar(x - 0.2, [c.per_class[k]["a"] for k in labels], 0.4,
           label=f"A {100 * c.a['accuracy']:.1f}%")
    ax.bar(x + 0.2, [c.per_class[k]["b"] for k in labels], 0.4,
           label=f"B {100 * c.b['accuracy']:.1f}%")
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(f"B is {c.verdict}" + (" within noise" if c.verdict == "same" else "")
                 + f" (McNemar p = {c.mcnemar_p:.3g}, {c.images} images)")
    ax.legend(loc="lower right")
    figures.save(figure, path)
    return True


def write_report(c: Comparison, out: Path) -> list[Path]:
    """``report.json``, ``report.md`` and ``per_class.png`` (with matplotlib) in ``out``."""
    written = [write_json(out / "report.json", c.to_json()),
               write_text(out / "report.md", report_markdown(c))]
    if plot(c, out / "per_class.png"):
        written.append(out / "per_class.png")
    return written
