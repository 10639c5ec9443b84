"""edge-bench: compare a run's Keras model with each exported TFLite variant on this machine.

    edge-bench runs/pets

Measures top-1 accuracy and agreement with Keras on the test split,
single-image latency (p50/p90/p99/mean), throughput, size on disk, load time
and peak memory, and writes runs/pets/bench/ (report.md, report.json,
latency.png, accuracy_size.png). Models are timed interleaved, round-robin,
so load from other programs spreads over all of them; results whose spread
is wider than the difference they claim are flagged as noisy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.command import run_command


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown for options that take a value; on/off flags and "None" say nothing."""

    def _get_help_string(self, action):
        if action.nargs == 0 or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-bench", description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog="Example: edge-bench runs/pets --threads 4   |   offline demo: edge-bench --demo "
               "runs/demo. Cost with the defaults: under a minute for the demo run (5 models, "
               "150 test images) on a 2-core CPU, half of it TensorFlow start-up and the "
               "memory-probe processes; --demo adds a few minutes of training the first time. "
               "--runs and --repeats scale only the timing part.",
        formatter_class=_Formatter)
    p.add_argument("run", help="run directory written by edge-train and edge-export "
                               "(with --demo: where to build the demo run)")
    timing = p.add_argument_group("timing")
    timing.add_argument("--runs", type=int, default=100,
                        help="timed single-image inferences per model, split over the repeats")
    timing.add_argument("--warmup", type=int, default=10,
                        help="untimed inferences per model before timing")
    timing.add_argument("--repeats", type=int, default=5,
                        help="interleaved rounds; the spread of their medians measures the noise")
    timing.add_argument("--threads", type=int, default=None,
                        help="CPU threads for TFLite and TensorFlow (default: all cores)")
    timing.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the per-model subprocess that measures peak RSS and load time")
    prep = p.add_argument_group("preparing the run")
    prep.add_argument("--export", dest="export_first", action="store_true",
                      help="run edge-export (default formats) on RUN first")
    prep.add_argument("--demo", action="store_true",
                      help="train (a few minutes on a CPU) and export the built-in demo model "
                           "into RUN unless already there, then benchmark it")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> int:
        from benchmarks.bench import BenchConfig, benchmark, format_table, prepare_demo

        config = BenchConfig(run=args.run, runs=args.runs, warmup=args.warmup, threads=args.threads,
                             repeats=args.repeats, export_first=args.export_first,
                             memory=args.memory, progress=args.progress)
        if args.demo:
            prepare_demo(Path(args.run))
        result = benchmark(config)
        print(format_table(result.report))
        print()
        for line in result.report["verdicts"].values():
            print(line)
        print(f"report: {result.out / 'report.md'}")
        return 0

    return run_command("edge-bench", work, "files already written are complete")


if __name__ == "__main__":
    sys.exit(main())
