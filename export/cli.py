"""edge-export: write float32, float16 and int8 TFLite models, each verified against Keras.

    edge-export runs/pets

Writes runs/pets/export/ (the bundle to copy to a device): the .tflite
files, labels.txt, eval_set.npz (a sample of the test split for on-device
checks) and manifest.json with each variant's accuracy, agreement with Keras,
size and sha256. The bundle is built aside and swapped in whole: an
interrupted export leaves the previous one as it was.

The table shows, beside each variant's loss against Keras, the test images
it won and lost against Keras and whether that difference is significant
(exact McNemar test) or within noise. int8 is first measured on the
validation split: past --int8-target-drop (0.5 points) the layers that
stand out above rounding noise are kept in float while that helps, and one
line under the table says what was tried, kept and what it cost.

Exit codes: 0 ok; 1 a variant lost more than --max-accuracy-drop points
(named, and whether that loss is significant or within noise); 2 bad usage,
an unreadable run, or an export/ that is a file or holds files edge-export
did not write (named: nothing is deleted); 3 an internal error (traceback
saved); 130 interrupted.

--sign-key KEY signs the bundle with an OpenSSH key (manifest.json.sig, as `edge-model sign`
writes it): devices that keep an allowed_signers file accept only bundles signed by a key it
lists (docs/raspberry-pi.md, 'Signed bundles').
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.argtypes import (
    Parser,
    add_verbosity,
    non_negative_float,
    non_negative_int,
    parse_command_line,
    positive_int,
)
from common.command import run_command
from common.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE
from edge_runtime.eval_set import DEFAULT_SAMPLES
from export.auto_float import DEFAULT_TARGET_DROP, OFF
from export.formats import DEFAULT_FORMATS, FORMATS, INT8_IO_TYPES


def build_parser() -> argparse.ArgumentParser:
    formats = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
    p = Parser(
        prog="edge-export", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Example: edge-export runs/pets --formats fp32,fp16,int8 --debug-quant")
    p.add_argument("run", help="run directory written by edge-train")
    p.add_argument("--formats", type=_formats, default=",".join(DEFAULT_FORMATS),
                   help=f"comma-separated variants ({formats})")
    p.add_argument("--calibration-samples", type=positive_int, default=200,
                   help="train-split images (stratified) that calibrate int8 ranges")
    p.add_argument("--force-calibration", action="store_true",
                   help="accept a calibration set below the safe minimum")
    p.add_argument("--int8-io", default="uint8", choices=INT8_IO_TYPES,
                   help="input/output type of the int8 model (uint8 takes camera frames as is)")
    p.add_argument("--max-accuracy-drop", type=non_negative_float, default=1.0,
                   help="accuracy points a variant may lose against Keras; more fails the export")
    p.add_argument("--debug-quant", action="store_true",
                   help="write quant_report.csv: per-layer int8 error (QuantizationDebugger), "
                        "worst first, each layer signal or noise against the rounding floor")
    p.add_argument("--keep-float", type=non_negative_int, default=0, metavar="N",
                   help="also export int8 with at most N layers left in float, only layers "
                        "clearly above the rounding-noise floor (none if none is), and report "
                        "the accuracy it recovers")
    p.add_argument("--int8-target-drop", type=_target_drop, default=None, metavar="POINTS",
                   help="if int8 loses more than POINTS against Keras on the validation split, "
                        "keep signal layers in float one at a time while validation accuracy "
                        "rises, up to the target; model_int8.tflite is the model chosen; "
                        f"default: {DEFAULT_TARGET_DROP:g} (with int8); 'off': plain int8")
    p.add_argument("--eval-samples", type=non_negative_int, default=DEFAULT_SAMPLES, metavar="N",
                   help="evaluation-split images (stratified) saved in the bundle as "
                        "eval_set.npz for on-device accuracy checks; 0: none")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="interpreter threads for verification (default: every usable core)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the calibration and evaluation-set samples")
    p.add_argument("--sign-key", type=Path, default=None, metavar="KEY",
                   help="sign the bundle with this OpenSSH key (~/.ssh/id_ed25519, or its .pub "
                        "when ssh-agent holds it): manifest.json.sig; default: unsigned")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide progress bars")
    add_verbosity(p)
    return p


def _target_drop(text: str) -> float | str:
    """``--int8-target-drop``: points ≥ 0, or ``off``."""
    return OFF if text == OFF else non_negative_float(text)


def target_drop(given: float | str | None, formats: tuple[str, ...]) -> float | None:
    """The ``int8_target_drop`` of the export config: the given points, None for ``off``, and
    by default :data:`export.auto_float.DEFAULT_TARGET_DROP` when int8 is exported.

    Raises:
        ValueError: points given without int8 among ``formats``.
    """
    if given is None:
        return DEFAULT_TARGET_DROP if "int8" in formats else None
    if given == OFF:
        return None
    if "int8" not in formats:
        raise ValueError("--int8-target-drop chooses the int8 variant: add int8 to --formats")
    return float(given)


def _formats(text: str) -> tuple[str, ...]:
    from export.formats import parse_formats

    try:
        return parse_formats(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--formats {text!r}: ")) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(lambda: build_parser().parse_args(argv))
    if isinstance(args, int):
        return args
    try:
        target = target_drop(args.int8_target_drop, args.formats)
    except ValueError as exc:
        print(f"edge-export: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def work() -> int:
        from common.command import import_tensorflow_quietly
        from common.rundir import check_run

        check_run(Path(args.run))  # a wrong path fails before TensorFlow's seconds of start-up
        if args.sign_key is not None:
            from deploy.signature import check_key

            check_key(args.sign_key, "--sign-key")  # as early: no ssh-keygen, no key file
        if not import_tensorflow_quietly("edge-export"):
            return EXIT_USAGE

        from export.exporter import ExportConfig, export
        from export.table import (
            calibration_line,
            format_auto_float,
            format_quant_report,
            format_table,
            guard_message,
        )

        config = ExportConfig(run=args.run, formats=args.formats,
                              calibration_samples=args.calibration_samples,
                              force_calibration=args.force_calibration,
                              max_accuracy_drop=args.max_accuracy_drop, int8_io=args.int8_io,
                              debug_quant=args.debug_quant, keep_float=args.keep_float,
                              int8_target_drop=target,
                              eval_samples=args.eval_samples, threads=args.threads,
                              seed=args.seed, progress=args.progress,
                              sign_key=args.sign_key)
        result = export(config)
        settled = calibration_line(result.manifest.extra.get("calibration"))
        if settled:
            print(settled)
        if result.quant_report is not None:
            print(format_quant_report(result.quant_report))
        if result.auto_float is not None and result.auto_float.steps:
            print(format_auto_float(result.auto_float))  # each layer tried; the table says the rest
        print(format_table(result.manifest))
        print(f"bundle: {result.out} ({result.manifest.extra['export_seconds']:.0f} s)"
              + (f", signed with {result.signed_with}" if result.signed_with else ""))
        if result.failures:  # a loss within noise fails too: the limit is the user's to set
            print("edge-export: " + guard_message(result.manifest, result.failures,
                                                  config.max_accuracy_drop), file=sys.stderr)
            return EXIT_CHECK_FAILED
        return EXIT_OK

    return run_command("edge-export", work,
                       "the previous export/ (if any) is untouched; run edge-export again",
                       needs_tensorflow=False, verbose=args.verbose, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
