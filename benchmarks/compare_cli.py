"""edge-compare: two models on the same images, and a verdict: is the second better, the same, or worse?

    edge-compare runs/pets runs/pets-2                      # the runs' own test images
    edge-compare runs/pets/export runs/pets-2/export --data kept-apart/

Each side is a run directory (its Keras model; needs TensorFlow) or a bundle (a folder with
manifest.json; its --variant, int8 by default, through the edge runtime, TensorFlow-free). By
default the images are the union of both runs' test splits less every image either run
trained or validated on (a bundle inside its run reads the run's splits.json); --data DIR
takes DIR/<class>/... instead, a set the user keeps apart. The report gives both accuracies,
per class, the images only one got right and the exact McNemar p of those counts; B is
better or worse when p < 0.05, else the same within noise. report.md, report.json and
per_class.png go to --out.

Exit codes: 0 B is better or the same within noise; 1 B is worse (a script can gate a
deploy on it); 2 bad usage, a run or bundle that cannot be read, no image to compare on;
3 internal error; 130 interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from common.argtypes import Parser, add_verbosity, parse_command_line
from common.command import run_command
from common.errors import EXIT_CHECK_FAILED, EXIT_OK

PROG = "edge-compare"


def build_parser() -> Parser:
    p = Parser(prog=PROG, description=__doc__.split("\n\n", 1)[1].split("\n\nExit codes")[0],
               epilog="Example: edge-compare runs/pets runs/pets-2 && edge-export runs/pets-2")
    p.add_argument("a", metavar="A", help="the model in use: a run directory or a bundle")
    p.add_argument("b", metavar="B", help="the candidate: a run directory or a bundle")
    p.add_argument("--data", metavar="DIR",
                   help="compare on DIR/<class>/... (default: both runs' test images that "
                        "neither trained or validated on)")
    p.add_argument("--variant", metavar="NAME",
                   help="the variant of a bundle side (default: int8, else its first)")
    p.add_argument("--out", metavar="DIR",
                   help="where report.md/json and per_class.png go (default: B/compare for a "
                        "run B, ./edge-compare for a bundle B)")
    add_verbosity(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(lambda: build_parser().parse_args(argv))
    if isinstance(args, int):
        return args
    from benchmarks.compare import needs_tensorflow

    a, b = Path(args.a), Path(args.b)

    def work() -> int:
        from benchmarks.compare import (
            compare,
            default_images,
            folder_images,
            open_side,
            write_report,
        )

        side_a, side_b = open_side(a, args.variant), open_side(b, args.variant)
        if args.data:
            images, source = folder_images(Path(args.data)), f"--data {args.data}"
        else:
            images = default_images(side_a, side_b)
            source = "both runs' test splits, less what either trained or validated on"
        result = compare(side_a, side_b, [(p, label) for p, label in images], source)
        out = Path(args.out) if args.out else (b / "compare" if side_b.kind == "run"
                                               else Path("edge-compare"))
        written = write_report(result, out)
        verdict = ("the same within noise" if result.verdict == "same"
                   else f"{result.verdict} than A")
        print(f"A {100 * result.a['accuracy']:.1f}%  B {100 * result.b['accuracy']:.1f}%  on "
              f"{result.images} images; only A right {len(result.a_only)}, only B right "
              f"{len(result.b_only)}; McNemar p = {result.mcnemar_p:.3g}: B is {verdict}")
        print(f"report: {', '.join(str(p) for p in written)}")
        return EXIT_CHECK_FAILED if result.verdict == "worse" else EXIT_OK

    return run_command(PROG, work, needs_tensorflow=needs_tensorflow(a) or needs_tensorflow(b),
                       verbose=args.verbose, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
