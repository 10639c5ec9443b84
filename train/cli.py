"""edge-train: fine-tune a MobileNet (V2, V3-Small or V3-Large) on a folder of images.

    edge-train --data photos/ --out runs/pets

Phase 1 trains a new head on the frozen ImageNet backbone, phase 2 fine-tunes
the top of the backbone at a tenth of the learning rate. The run directory
then holds model.keras, labels.txt, metrics.json, learning_curves.png and
everything ``edge-export`` needs.
"""

from __future__ import annotations

import argparse
import sys

from common.argtypes import (
    Parser,
    add_verbosity,
    fraction,
    non_negative_int,
    parse_command_line,
    positive_float,
    positive_int,
)
from common.command import run_command
from train.backbones import BACKBONES, DEFAULT_BACKBONE, SPECS

BACKBONE_HELP = (
    "the network under the classifier. mobilenet_v2 (ImageNet weights at 96-224 px, alpha "
    "0.35-1.4) and mobilenet_v3_large (alpha 0.75 or 1.0, any size) suit a Pi 4 or 5; "
    "mobilenet_v3_small (alpha 0.75 or 1.0, any size) a Pi 3 or Zero 2 W (a Pi 3's cores, "
    "slower clock), at some accuracy (Keras's table, ImageNet top-1 at 224: V3-Small 68.1, "
    "V3-Large 75.6). XNNPACK's README, float 1.0/224 on all cores: Pi 4: V2 44 ms, V3-Large "
    "41, V3-Small 14; Pi 3+: 79, 67, 23. Measure yours with edge-bench")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="edge-train", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Example: edge-train --data photos/ --out runs/pets   |   "
               "offline: edge-train --data demo --out runs/demo --weights none   |   "
               "retrain: edge-train --data photos/ --init-from runs/pets --out runs/pets-2",
    )
    data = p.add_argument_group("data")
    data.add_argument("--preset", choices=("demo",), default=None,
                      help="start from a named set of settings (flags given still win): demo = "
                           "the built-in data learnt from scratch on a CPU in minutes")
    data.add_argument("--data", required=False,
                      help="image folder (DIR/<class>/... or DIR/train|validation[/test]/<class>/...), "
                           "'demo' (built-in offline dataset) or 'cats_vs_dogs' (the tutorials' "
                           "dataset, downloaded once)")
    data.add_argument("--out", required=True, help="run directory to create")
    data.add_argument("--val-split", type=fraction, default=0.2,
                      help="share of each class held out for validation (DIR/<class> layout)")
    data.add_argument("--test-split", type=fraction, default=0.1,
                      help="share of each class held out for the final test (DIR/<class> layout)")
    data.add_argument("--seed", type=int, default=83, help="seed of the split, shuffling and init")
    data.add_argument("--cache", default="memory",
                      help="tf.data cache of decoded images: memory, none, or a file prefix")
    data.add_argument("--no-augment", dest="augment", action="store_false",
                      help="disable random flip, rotation and zoom of training images")
    model = p.add_argument_group("model")
    model.add_argument("--backbone", choices=BACKBONES, default=DEFAULT_BACKBONE, help=BACKBONE_HELP)
    model.add_argument("--img-size", type=positive_int, default=160, help="square input side in pixels")
    model.add_argument("--alpha", type=positive_float, default=1.0, help="backbone width multiplier")
    model.add_argument("--weights", default="imagenet",
                       help="backbone weights: imagenet (downloaded by Keras), none, or a FILE")
    model.add_argument("--dropout", type=float, default=0.2, help="dropout before the head")
    model.add_argument("--bn-momentum", type=float, default=None,
                       help="BatchNorm momentum (default: Keras's 0.999 with pretrained weights, "
                            "0.9 from scratch so short runs learn usable statistics)")
    fit = p.add_argument_group("training")
    fit.add_argument("--epochs", type=positive_int, default=10, help="phase 1 epochs (head only)")
    fit.add_argument("--fine-tune-epochs", type=non_negative_int, default=10,
                     help="phase 2 epochs (top of the backbone too); 0 skips fine-tuning")
    fit.add_argument("--fine-tune-at", type=non_negative_int, default=None,
                     help="unfreeze backbone layers from this index on in phase 2 (default: about "
                          "the top third of the backbone's layers: "
                          + ", ".join(f"{s.name} {s.fine_tune_at}" for s in SPECS.values()) + ")")
    fit.add_argument("--batch-size", type=positive_int, default=32, help="global batch size")
    fit.add_argument("--lr", type=positive_float, default=1e-4, help="phase 1 learning rate; phase 2: lr/10")
    fit.add_argument("--patience", type=positive_int, default=5,
                     help="early stopping: epochs without a better val_accuracy; the best epoch's "
                          "weights are kept")
    fit.add_argument("--deterministic", action="store_true",
                     help="deterministic ops: the same --seed gives the same model on the same "
                          "machine and library versions (slower on a GPU)")
    fit.add_argument("--resume", action="store_true",
                     help="continue the interrupted run in --out from its last checkpoint "
                          "(its saved settings are used)")
    hw = p.add_argument_group("hardware")
    hw.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                    help="float16 compute (default: on for GPUs with tensor cores, off on CPU)")
    hw.add_argument("--strategy", default="auto", choices=("auto", "mirrored", "multiworker", "none"),
                    help="tf.distribute strategy: auto mirrors over several local GPUs; "
                         "multiworker reads TF_CONFIG")
    cached = p.add_argument_group("phase 1 on cached features (pretrained weights)")
    cached.add_argument("--feature-views", type=non_negative_int, default=1,
                        help="cached views of each training image: 1 (or 0) the image alone, K "
                             "the image and K-1 augmented copies, one per epoch at random")
    cached.add_argument("--no-feature-cache", dest="feature_cache", action="store_false",
                        help="phase 1 end to end: the frozen backbone over every image in every "
                             "epoch, instead of once into a feature cache")
    again = p.add_argument_group("retraining from a finished run")
    again.add_argument("--init-from", metavar="RUN",
                       help="start from RUN's model (its backbone, size and weights unless given): "
                            "classes RUN knows keep their head row, new class folders get new "
                            "rows; config.json records RUN as the parent")
    again.add_argument("--allow-dropped-classes", action="store_true",
                       help="with --init-from: a class of RUN that --data has no folder for is "
                            "dropped from the head (default: refused, the model would forget it)")
    add_verbosity(p)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.preset == "demo":
        from train.demo_data import DEMO_TRAIN_SETTINGS

        parser.set_defaults(**DEMO_TRAIN_SETTINGS)
        args = parser.parse_args(argv)
    if args.init_from is not None:
        from common.errors import UserError
        from train.init_from import parent_settings

        if args.resume:
            parser.error("--init-from starts a new run; --resume continues one (its parent is "
                         "in its config.json)")
        try:  # the parent's network, unless a flag says otherwise (then checked in training)
            parser.set_defaults(**parent_settings(args.init_from))
        except UserError as exc:
            parser.error(f"--init-from {args.init_from}: {exc}")
        args = parser.parse_args(argv)
    elif args.allow_dropped_classes:
        parser.error("--allow-dropped-classes applies to --init-from only")
    if args.data is None and not args.resume:
        parser.error("the following arguments are required: --data (or --preset)")
    args.data = args.data or ""  # --resume reads the data folder from the run's config.json
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(lambda: parse_args(argv))
    if isinstance(args, int):
        return args
    config_args = {k: v for k, v in vars(args).items()
                   if k not in ("preset", "verbose", "quiet")}

    def work() -> int:
        from train.config import TrainConfig
        from train.trainer import train

        train(TrainConfig(**config_args))
        return 0

    return run_command("edge-train", work, "the last finished epoch is saved. Continue with: "
                       f"edge-train --out {args.out} --resume",
                       verbose=args.verbose, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
