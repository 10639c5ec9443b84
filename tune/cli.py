"""edge-tune: the most accurate model that meets a latency budget measured on your own device.

    edge-tune probe probe/                                  # workstation: untrained candidates
    edge-bench probe/                                       # on the Pi: probe/bench/report.json
    edge-tune search --data photos/ --device probe/bench/report.json --budget-ms 40 --out runs/pets

probe writes untrained candidates (backbone × width × input size, int8 as edge-export converts
them) that the TensorFlow-free device bench times on the board. search trains only the
candidates whose measured p50 meets the budget, by successive halving (all briefly, the best
longer), ranks them by int8 accuracy on the validation split, trains the winner fully into
--out (an ordinary run directory, ready for edge-export) and writes --out/tune/report.md,
report.json and pareto.png. Without --device it measures on this machine, and says so.

Exit codes: 0 done; 2 bad usage or input (a missing or foreign report, a budget no candidate
fits, an --out in use); 3 internal error; 130 interrupted (search: continue with --resume).
"""

from __future__ import annotations

import argparse
import sys

from common import argtypes as types
from common.argtypes import Parser, add_verbosity, parse_command_line
from common.command import check_first, run_command, say
from common.errors import EXIT_USAGE

TRAINING_FLAGS = (
    ("--rung-epochs", types.positive_int, 1,
     "epochs of the first rung; each later rung trains --eta times longer"),
    ("--eta", types.positive_int, 2, "each rung keeps 1/eta of the previous one (at least 2)"),
    ("--finalists", types.positive_int, 2,
     "halving stops at this many; the winner is the best of them"),
    ("--epochs", types.positive_int, 10, "the winner's phase 1 epochs"),
    ("--fine-tune-epochs", types.non_negative_int, 10, "the winner's phase 2 epochs"),
    ("--batch-size", types.positive_int, 32, "batch size"),
    ("--lr", types.positive_float, None,
     "phase 1 learning rate (default: {pretrained:g} with pretrained weights, {scratch:g} "
     "from scratch)"),
    ("--val-split", types.fraction, 0.2,
     "share of each class for validation (ranks the candidates)"),
    ("--test-split", types.fraction, 0.1,
     "share of each class for the test (the winner's final check only)"),
    ("--seed", int, 83, "seed of the split and training"),
    ("--calibration-samples", types.positive_int, 100,
     "train images calibrating each candidate's int8 conversion"),
    ("--threads", types.positive_int, None,
     "interpreter threads (default: every core this process may use)"),
)
"""edge-tune search's training settings as data: (flag, type, default, help)."""


def _list(kind, what: str):
    def parse(text: str) -> tuple:
        try:
            values = tuple(dict.fromkeys(kind(t.strip()) for t in text.split(",") if t.strip()))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                             f"{what}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: empty list")
        return values
    return parse


def _candidate_flags(parser: argparse.ArgumentParser, *, for_search: bool) -> None:
    from train.backbones import BACKBONES
    from tune.probe import DEFAULT_ALPHAS, DEFAULT_SIZES

    group = parser.add_argument_group(
        "candidates" + (" (without --device: what is measured on this machine)"
                        if for_search else ""))
    group.add_argument("--backbones", type=_list(str, "names"), default=None,
                       help=f"comma-separated backbones (default: all: {','.join(BACKBONES)})")
    group.add_argument("--alphas", type=_list(float, "numbers"),
                       default=",".join(f"{a:g}" for a in DEFAULT_ALPHAS),
                       help="comma-separated width multipliers")
    group.add_argument("--sizes", type=_list(int, "integers"),
                       default=",".join(map(str, DEFAULT_SIZES)),
                       help="comma-separated square input sides, pixels")


def build_parser() -> Parser:
    from tune.config import PRETRAINED_LR, SCRATCH_LR

    p = Parser(prog="edge-tune", description=__doc__.split("\n\n", 1)[1].split("\n\nExit")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="{probe,search}",
                           parser_class=Parser)

    probe = sub.add_parser("probe", help="write untrained candidates for edge-bench to time",
                           description="Write PROBE_DIR: one int8 .tflite per candidate "
                                       "(random weights) and probe.json. Copy it to the device "
                                       "and run edge-bench PROBE_DIR there (the [edge] extra "
                                       "suffices). Cost: a few seconds per candidate.")
    probe.add_argument("probe_dir", metavar="PROBE_DIR", help="folder to create (new or empty)")
    _candidate_flags(probe, for_search=False)
    probe.add_argument("--classes", type=types.positive_int, default=10,
                       help="outputs of the candidates' head (your number of classes)")
    probe.add_argument("--no-progress", dest="progress", action="store_false",
                       help="hide progress bars")
    add_verbosity(probe)

    search = sub.add_parser(
        "search", help="train the candidates that fit the budget, keep the most accurate",
        description="Train only the candidates whose measured p50 fits --budget-ms, rank them "
                    "by int8 accuracy on the validation split after successive halving, and "
                    "train the winner fully into --out. Cost: a few epochs per candidate, then "
                    "one full training.")
    search.add_argument("--data", help="image folder (the layouts edge-train accepts)")
    search.add_argument("--device", metavar="REPORT",
                        help="PROBE_DIR/bench/report.json from edge-bench on the device "
                             "(default: measure on this machine, which the report says)")
    search.add_argument("--budget-ms", type=types.positive_float,
                        help="the p50 latency per image a candidate must not exceed")
    search.add_argument("--out", required=True, help="run directory for the winner (new)")
    search.add_argument("--weights", default="imagenet",
                        help="backbone weights for every candidate: imagenet (candidates "
                             "without ImageNet weights are left out, with a note), none, or a "
                             "FILE (which fits one backbone and width: probe those alone)")
    search.add_argument("--resume", action="store_true",
                        help="continue an interrupted search of --out with its saved settings "
                             "(finished candidates are not trained again)")
    _candidate_flags(search, for_search=True)
    fit = search.add_argument_group("training")
    for flag, kind, default, what in TRAINING_FLAGS:
        fit.add_argument(flag, type=kind, default=default,
                         help=what.format(pretrained=PRETRAINED_LR, scratch=SCRATCH_LR))
    search.add_argument("--no-progress", dest="progress", action="store_false",
                        help="hide progress bars")
    add_verbosity(search)
    return p


def _probe(args) -> int:
    from tune.probe import ProbeConfig

    settings = ProbeConfig(out=args.probe_dir, backbones=args.backbones or (), alphas=args.alphas,
                             sizes=args.sizes, classes=args.classes, progress=args.progress)

    def work() -> int:
        from benchmarks.probe_bench import PROBE_FILE
        from tune.probe import build_probe

        probe = build_probe(settings)
        print(f"{len(probe.candidates)} candidate(s) in {args.probe_dir} "
              f"({len(probe.skipped)} skipped); {args.probe_dir}/{PROBE_FILE} lists them.")
        print(f"next: copy {args.probe_dir} to the device and run edge-bench {args.probe_dir} "
              f"there; then edge-tune search --device {args.probe_dir}/bench/report.json ...")
        return 0

    return run_command("edge-tune", work, "the probe is incomplete: delete "
                       f"{args.probe_dir} and probe again", verbose=args.verbose,
                       quiet=args.quiet)


def _search(args) -> int:
    from tune.search import SearchConfig, preflight

    if not args.resume:
        missing = [flag for flag, value in (("--data", args.data), ("--budget-ms", args.budget_ms))
                   if value is None]
        if missing:
            say("edge-tune search", f"error: search needs {' and '.join(missing)} (or --resume)"
                " (see edge-tune search --help)")
            return EXIT_USAGE
    config = SearchConfig(
        data=args.data or "", out=args.out, budget_ms=args.budget_ms or 1.0, device=args.device,
        weights=args.weights, backbones=args.backbones or (), alphas=args.alphas, sizes=args.sizes,
        rung_epochs=args.rung_epochs, eta=args.eta, finalists=args.finalists,
        epochs=args.epochs, fine_tune_epochs=args.fine_tune_epochs, batch_size=args.batch_size,
        lr=args.lr, val_split=args.val_split, test_split=args.test_split, seed=args.seed,
        calibration_samples=args.calibration_samples, threads=args.threads,
        progress=args.progress, resume=args.resume)
    if (refused := check_first("edge-tune", lambda: preflight(config))) is not None:
        return refused  # before TensorFlow's seconds of start-up

    def work() -> int:
        from tune.report import format_markdown
        from tune.search import search

        result = search(config)
        print(format_markdown(result.report))
        print(f"report: {result.report_dir / 'report.md'}")
        return 0

    return run_command("edge-tune", work, "finished candidates are saved. Continue with: "
                       f"edge-tune search --out {args.out} --resume",
                       verbose=args.verbose, quiet=args.quiet)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_command_line(lambda: parser.parse_args(argv))
    if isinstance(args, int):
        return args
    if args.command == "probe":
        return _probe(args)
    return _search(args)


if __name__ == "__main__":
    sys.exit(main())
