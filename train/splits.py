"""Finding images, deciding the train/val/test split, and ``splits.json``.

This is the one definition of dataset splitting: training writes
``splits.json`` with it, export draws calibration images from its train
split, and the benchmark and export checks evaluate on its test split.
No TensorFlow here.
"""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import DataError
from common.fileio import write_json
from common.labels import label_problem
from edge_runtime.image import ImageError, is_image_file, load_image

SPLIT_NAMES = ("train", "val", "test")
TRAIN_DIRS = ("train",)
VAL_DIRS = ("validation", "val")
TEST_DIRS = ("test",)
TUTORIAL_TEST_FRACTION = 0.2
"""With train/ and validation/ but no test/, this share of validation becomes
test, as the tutorials do (``validation_dataset.take(val_batches // 5)``)."""


@dataclass
class Splits:
    """Which file goes to which split, with its class index.

    Attributes:
        root: the data folder; paths in ``files`` are relative to it (POSIX style).
        classes: class names in output-index order.
        files: split name → relative paths.
        labels: split name → class indices, parallel to ``files``.
        layout: "class_folders" or "split_folders".
        skipped: (relative path, reason) of every file left out.
    """

    root: Path
    classes: list[str]
    files: dict[str, list[str]]
    labels: dict[str, list[int]]
    layout: str = "class_folders"
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def paths(self, split: str) -> list[Path]:
        """Absolute paths of ``split``'s files."""
        return [self.root / rel for rel in self.files[split]]

    def count(self, split: str) -> int:
        return len(self.files[split])

    def eval_split(self) -> str:
        """The split to report accuracy on: test, or val when test is empty."""
        return "test" if self.files["test"] else "val"

    def to_json(self) -> dict:
        return {
            "root": str(self.root),
            "layout": self.layout,
            "classes": self.classes,
            **{name: self.files[name] for name in SPLIT_NAMES},
            "labels": {name: self.labels[name] for name in SPLIT_NAMES},
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }

    def save(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Splits:
        """Read a ``splits.json`` written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            root=Path(data["root"]),
            classes=list(data["classes"]),
            files={name: list(data[name]) for name in SPLIT_NAMES},
            labels={name: list(data["labels"][name]) for name in SPLIT_NAMES},
            layout=data.get("layout", "class_folders"),
            skipped=[(s["path"], s["reason"]) for s in data.get("skipped", [])],
        )


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _find_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    for child in _visible_dirs(folder):
        if child.name.lower() in names:
            return child
    return None


def _walk_files(folder: Path) -> list[Path]:
    """Every non-hidden file under ``folder``, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return found


def _check_image(path: Path) -> str | None:
    """None when ``path`` decodes as an image, else the reason it does not."""
    try:
        load_image(path)
    except ImageError as exc:
        return str(exc).split(": ", 1)[-1]
    return None


def _scan_classes(class_root: Path, classes: list[str], root: Path,
                  skipped: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Usable images per class under ``class_root``, as paths relative to ``root``.

    Every candidate is decoded once, here, so a corrupt file is reported
    before training rather than crashing an epoch.
    """
    candidates: list[tuple[str, Path]] = []
    for name in classes:
        folder = class_root / name
        for path in _walk_files(folder) if folder.is_dir() else []:
            if is_image_file(path):
                candidates.append((name, path))
            else:
                skipped.append((path.relative_to(root).as_posix(), "not an image file type"))
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        reasons = list(pool.map(_check_image, [p for _, p in candidates]))
    usable: dict[str, list[str]] = {name: [] for name in classes}
    for (name, path), reason in zip(candidates, reasons):
        rel = path.relative_to(root).as_posix()
        if reason is None:
            usable[name].append(rel)
        else:
            skipped.append((rel, reason))
    return usable


def _split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    """Sizes of the held-out parts of ``n`` items: at least one per non-zero fraction."""
    return [max(1, round(n * f)) if f > 0 else 0 for f in fractions]


def _stratified(per_class: dict[str, list[str]], fractions: tuple[float, ...],
                seed: int) -> list[dict[str, list[str]]]:
    """Split each class's files into ``1 + len(fractions)`` parts, the first the remainder.

    Each class is shuffled with its own seeded generator, so adding a class
    does not reshuffle the others.
    """
    parts: list[dict[str, list[str]]] = [{} for _ in range(len(fractions) + 1)]
    for name, files in per_class.items():
        files = sorted(files)
        random.Random(f"{seed}:{name}").shuffle(files)
        start = 0
        held = []
        for size in _split_counts(len(files), fractions):
            held.append(sorted(files[start:start + size]))
            start += size
        parts[0][name] = sorted(files[start:])
        for i, chunk in enumerate(held, start=1):
            parts[i][name] = chunk
    return parts


def _require_nonempty(part: dict[str, list[str]], split: str, hint: str) -> None:
    for name, files in part.items():
        if not files:
            raise DataError(f"class '{name}' has no image in the {split} split ({hint})")


def discover(root: str | os.PathLike, val_split: float = 0.2, test_split: float = 0.1,
             seed: int = 83) -> Splits:
    """Find the classes and images under ``root`` and split them.

    Two layouts are accepted: ``root/<class>/...`` (split here, stratified by
    ``seed``), and ``root/train|validation|val|test/<class>/...`` (the
    tutorials' layout; with no ``test/``, a fifth of validation becomes test).

    Raises:
        DataError: missing folder, fewer than 2 classes, a class without a
            usable image, or a split that leaves a class empty.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    if not 0 < val_split < 1 or not 0 <= test_split < 1 or val_split + test_split >= 1:
        raise DataError(f"--val-split {val_split} and --test-split {test_split}: each must be in "
                        "[0, 1) with val > 0 and their sum < 1")
    skipped: list[tuple[str, str]] = []
    train_dir = _find_dir(root, TRAIN_DIRS)
    val_dir = _find_dir(root, VAL_DIRS)
    if train_dir is not None and val_dir is not None:
        return _discover_split_folders(root, train_dir, val_dir, _find_dir(root, TEST_DIRS), skipped)

    classes = [d.name for d in _visible_dirs(root)]
    _require_classes(root, classes)
    per_class = _scan_classes(root, classes, root, skipped)
    _require_images(per_class, root)
    train, val, test = _stratified(per_class, (val_split, test_split), seed)
    hint = (f"too few images for --val-split {val_split} and --test-split {test_split}; "
            "add images or lower the splits")
    for part, split in ((train, "train"), (val, "val")):
        _require_nonempty(part, split, hint)
    return _assemble(root, classes, {"train": train, "val": val, "test": test},
                     "class_folders", skipped)


def scan_folder(root: str | os.PathLike) -> tuple[Path, list[str], dict[str, list[str]],
                                                  list[tuple[str, str]]]:
    """Every usable image of a ``root/<class>/...`` folder, unsplit (a set kept apart for
    ``edge-compare --data``): ``(root resolved, classes, class → paths relative to root,
    skipped (path, reason))``.

    Raises:
        DataError: missing folder, fewer than 2 classes, a class without a usable image.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist")
    classes = [d.name for d in _visible_dirs(root)]
    _require_classes(root, classes)
    skipped: list[tuple[str, str]] = []
    per_class = _scan_classes(root, classes, root, skipped)
    _require_images(per_class, root)
    return root, classes, per_class, sorted(skipped)


def _discover_split_folders(root: Path, train_dir: Path, val_dir: Path, test_dir: Path | None,
                            skipped: list[tuple[str, str]]) -> Splits:
    classes = [d.name for d in _visible_dirs(train_dir)]
    _require_classes(train_dir, classes)
    train = _scan_classes(train_dir, classes, root, skipped)
    _require_images(train, train_dir)
    val = _scan_classes(val_dir, classes, root, skipped)
    if test_dir is not None:
        test = _scan_classes(test_dir, classes, root, skipped)
    else:
        val, test = _stratified(val, (TUTORIAL_TEST_FRACTION,), seed=0)
    hint = f"the {val_dir.name}/ folder needs at least 2 images of each class in {train_dir.name}/"
    _require_nonempty(val, "val", hint)
    return _assemble(root, classes, {"train": train, "val": val, "test": test},
                     "split_folders", skipped)


def _require_classes(folder: Path, classes: list[str]) -> None:
    """At least two class folders, each named by a label (:func:`common.labels.label_problem`:
    the name becomes a line of labels.txt and the label on every device)."""
    for name in classes:
        problem = label_problem(name)
        if problem:
            raise DataError(f"{folder / name}: the folder's name is the class label, and "
                            f"{problem}: rename the folder")
    if len(classes) < 2:
        found = f" (found: {', '.join(classes)})" if classes else ""
        raise DataError(f"{folder} needs at least 2 class folders, one per label{found}")


def _require_images(per_class: dict[str, list[str]], folder: Path) -> None:
    for name, files in per_class.items():
        if not files:
            raise DataError(f"class '{name}' in {folder} has no usable image")


def _assemble(root: Path, classes: list[str], parts: dict[str, dict[str, list[str]]],
              layout: str, skipped: list[tuple[str, str]]) -> Splits:
    files: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    for split, per_class in parts.items():
        files[split], labels[split] = [], []
        for index, name in enumerate(classes):
            chosen = per_class.get(name, [])
            files[split].extend(chosen)
            labels[split].extend([index] * len(chosen))
    return Splits(root=root, classes=classes, files=files, labels=labels,
                  layout=layout, skipped=sorted(skipped))


def main(argv: list[str] | None = None) -> int:
    """Print files of one split, e.g. a few test images to try a model on:

        python -m train.splits runs/demo/splits.json --split test --per-class 1
    """
    from common.argtypes import Parser, add_verbosity, non_negative_int
    from common.command import run_main

    prog = "python -m train.splits"
    parser = Parser(prog=prog, description=main.__doc__)
    parser.add_argument("splits_json", help="a run's splits.json")
    parser.add_argument("--split", default="test", choices=SPLIT_NAMES, help="which split")
    parser.add_argument("--per-class", type=non_negative_int, default=0,
                        help="at most this many per class (0: all)")
    add_verbosity(parser)

    def work(args) -> int:
        try:
            splits = Splits.load(args.splits_json)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{args.splits_json}: not a readable splits.json "
                            f"({type(exc).__name__}: {exc})") from exc
        taken: dict[int, int] = {}
        for path, label in zip(splits.paths(args.split), splits.labels[args.split]):
            if args.per_class and taken.get(label, 0) >= args.per_class:
                continue
            taken[label] = taken.get(label, 0) + 1
            print(path)
        return 0

    # stdout is the list of paths alone (make demo passes it to edge-classify)
    return run_main(parser, argv, work, progress_to="stderr")


if __name__ == "__main__":
    raise SystemExit(main())
