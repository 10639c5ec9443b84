"""edge-export: write float32, float16 and int8 TFLite models, each verified against Keras.

    edge-export runs/pets

Writes runs/pets/export/ (the bundle to copy to a device): the .tflite
files, labels.txt and manifest.json with each variant's accuracy, agreement
with Keras and size. Exits 1 when a variant loses more than
--max-accuracy-drop points, naming it.
"""

from __future__ import annotations

import argparse
import sys

from common.command import run_command
from export.formats import DEFAULT_FORMATS, FORMATS, INT8_IO_TYPES


def build_parser() -> argparse.ArgumentParser:
    formats = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())
    p = argparse.ArgumentParser(
        prog="edge-export", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Example: edge-export runs/pets --formats fp32,fp16,int8 --debug-quant",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run", help="run directory written by edge-train")
    p.add_argument("--formats", type=_formats, default=",".join(DEFAULT_FORMATS),
                   help=f"comma-separated variants ({formats})")
    p.add_argument("--calibration-samples", type=int, default=200,
                   help="train-split images (stratified) that calibrate int8 ranges")
    p.add_argument("--force-calibration", action="store_true",
                   help="accept a calibration set below the safe minimum")
    p.add_argument("--int8-io", default="uint8", choices=INT8_IO_TYPES,
                   help="input/output type of the int8 model (uint8 takes camera frames as is)")
    p.add_argument("--max-accuracy-drop", type=float, default=1.0,
                   help="accuracy points a variant may lose against Keras; more fails the export")
    p.add_argument("--debug-quant", action="store_true",
                   help="write quant_report.csv: per-layer int8 error (QuantizationDebugger), "
                        "worst first")
    p.add_argument("--keep-float", type=int, default=0, metavar="N",
                   help="also export int8 with the N most damaged layers left in float and "
                        "report the accuracy it recovers")
    p.add_argument("--threads", type=int, default=None,
                   help="interpreter threads for verification (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration sample")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide progress bars")
    return p


def _formats(text: str) -> tuple[str, ...]:
    from export.formats import parse_formats

    try:
        return parse_formats(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--formats {text!r}: ")) from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        from export.exporter import ExportConfig, export, format_table

        config = ExportConfig(run=args.run, formats=args.formats,
                              calibration_samples=args.calibration_samples,
                              force_calibration=args.force_calibration,
                              max_accuracy_drop=args.max_accuracy_drop, int8_io=args.int8_io,
                              debug_quant=args.debug_quant, keep_float=args.keep_float,
                              threads=args.threads, seed=args.seed, progress=args.progress)
        result = export(config)
        print(format_table(result.manifest))
        print(f"bundle: {result.out} ({result.manifest['export_seconds']:.0f} s)")
        if result.failures:
            print(f"edge-export: {', '.join(result.failures)} lost more than "
                  f"{config.max_accuracy_drop:g} accuracy point(s) against Keras", file=sys.stderr)
            return 1
        return 0

    return run_command("edge-export", work, "files already written are complete")


if __name__ == "__main__":
    sys.exit(main())
