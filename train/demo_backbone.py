"""The demo's pre-trained backbone: MobileNetV3-Small weights learnt on ten *other* drawn shapes.

    python -m train.demo_backbone            # make demo-backbone: rewrites the shipped file

``make demo`` shows what ``edge-train`` does first with a user's photos — a new head on a frozen
pre-trained backbone, trained on its features cached once — without the ImageNet download an
offline machine cannot make. The backbone it starts from comes with the repository
(:data:`WEIGHTS`): a MobileNetV3-Small 1.0/96 trained from scratch on
:data:`~train.demo_data.PRETRAIN_CLASSES` (arrows, crescents, hearts, rings...), pictures drawn
like the demo's own but of no class the demo has, and with another seed, so the demo still has to
learn its five shapes: it borrows edges, corners and curves, as a photo classifier borrows them
from ImageNet. This module remakes the file (about ten minutes on two cores) and :data:`RECORD`
says how it was made and what it scored.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from common.argtypes import Parser, add_verbosity, parse_command_line, positive_int
from common.command import run_command
from common.fileio import atomic_write, sha256, write_json
from train.demo_data import DEMO_BACKBONE as WEIGHTS
from train.demo_data import PRETRAIN_CLASSES, cache_dir, write_demo_dataset

RECORD = WEIGHTS.with_name("demo_backbone.json")
"""How :data:`WEIGHTS` was made: settings, classes, accuracy, the file's sha256."""
PER_CLASS = 400
SEED = 7
"""The pre-training pictures' seed: none of them is a picture of the demo's data set."""
PRETRAIN_SETTINGS = dict(
    weights="none", backbone="mobilenet_v3_small", alpha=1.0, img_size=96, epochs=24,
    fine_tune_epochs=0, lr=5e-3, batch_size=32, patience=24, val_split=0.1, test_split=0.05,
    deterministic=True,
)
"""From scratch, one phase: the whole network trains on the pre-training shapes."""


def pretrain(out: Path = WEIGHTS, per_class: int = PER_CLASS, **overrides) -> dict:
    """Train the backbone on ``per_class`` pictures of each pre-training shape with
    :data:`PRETRAIN_SETTINGS` (``overrides`` replacing some), write its weights to ``out``
    (renamed into place whole) and the record next to it; returns the record."""
    from train.config import TrainConfig
    from train.model import backbone_of
    from train.saved_run import load_run
    from train.trainer import train

    settings = {**PRETRAIN_SETTINGS, **overrides}
    data = cache_dir() / f"demo-pretrain-v1-{per_class}"
    if not data.is_dir():
        write_demo_dataset(data, per_class=per_class, seed=SEED, classes=PRETRAIN_CLASSES)
    with tempfile.TemporaryDirectory(prefix="edge-demo-backbone-") as tmp:
        run = Path(tmp) / "run"
        result = train(TrainConfig(data=str(data), out=str(run), **settings))
        model, _, _ = load_run(run)
        atomic_write(out, backbone_of(model).save_weights)
    record = {
        "file": out.name, "sha256": sha256(out), "classes": list(PRETRAIN_CLASSES),
        "per_class": per_class, "seed": SEED, "settings": settings,
        "val_accuracy": result.metrics["val_accuracy"],
        "test_accuracy": result.metrics["test_accuracy"],
    }
    write_json(out.with_name(RECORD.name), record)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m train.demo_backbone",
                    description="Remake the demo's pre-trained backbone (train/demo_backbone.weights"
                                ".h5): MobileNetV3-Small 1.0/96 from scratch on ten drawn shapes "
                                "the demo does not have, about ten minutes on two cores.")
    parser.add_argument("--out", type=Path, default=WEIGHTS,
                        help="the weights file to write, ending .weights.h5 (default: the "
                             "shipped one); its record is written next to it as demo_backbone.json")
    parser.add_argument("--per-class", type=positive_int, default=PER_CLASS,
                        help="pictures drawn of each shape (default: %(default)s)")
    parser.add_argument("--img-size", type=positive_int, default=PRETRAIN_SETTINGS["img_size"],
                        help="input side in pixels: the demo's (default: %(default)s)")
    parser.add_argument("--epochs", type=positive_int, default=PRETRAIN_SETTINGS["epochs"],
                        help="epochs from scratch (default: %(default)s)")
    add_verbosity(parser)
    args = parse_command_line(lambda: parser.parse_args(argv))
    if isinstance(args, int):
        return args

    def work() -> int:
        record = pretrain(args.out, args.per_class, img_size=args.img_size, epochs=args.epochs,
                          patience=args.epochs)
        print(f"wrote {args.out}: val accuracy {record['val_accuracy']:.3f}, test accuracy "
              f"{record['test_accuracy']:.3f} on the {len(record['classes'])} pre-training "
              f"shapes; how it was made: {args.out.with_name(RECORD.name)}")
        return 0

    return run_command("demo-backbone", work, "nothing was replaced", verbose=args.verbose,
                       quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
