"""edge-bench: measure exported models on this machine — a run on the workstation, a bundle on the device.

    edge-bench runs/pets              # workstation: Keras against every variant (TensorFlow)
    edge-bench ~/models/pets          # device: an export/ folder copied anywhere (no TensorFlow)
    edge-bench ~/probe                # device: edge-tune probe's untrained candidates, timed

What PATH holds decides. A run directory (edge-train + edge-export) gets the Keras model and
every exported variant on the test split, into runs/pets/bench/. A bundle (a folder with
manifest.json: the run's export/ folder, copied to a Raspberry Pi) gets every TFLite variant on
the evaluation set export packed into it, with only the [edge] extra installed, into
BUNDLE/bench/; there each variant's answers are also compared with the ones it gave on the
workstation at export. Both measure top-1 accuracy and agreement with Keras, single-image
latency (p50/p90/p99/mean, invoke() alone), throughput, size, load time and peak memory (a
fresh process per model), read the SoC temperature and throttling before and after (a
throttled Raspberry Pi is flagged: its timings are pessimistic), and write report.md and
report.json, plus latency.png and accuracy_size.png where matplotlib is installed. Models are
timed interleaved, round-robin, so load from other programs spreads over all of them; results
whose spread is wider than the difference they claim are flagged as noisy. A probe (a folder
with probe.json, written by edge-tune probe) gets each untrained candidate's latency, size and
peak memory, for edge-tune search --device.

Exit codes: 0 done; 2 bad usage, a broken run or bundle (missing or altered variant file, no
evaluation set); 3 internal error; 130 interrupted.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from common.argtypes import (
    Parser,
    add_verbosity,
    non_negative_int,
    parse_command_line,
    positive_int,
)
from common.command import check_first, run_command
from common.errors import UserError
from edge_runtime.interpreter import BACKENDS


def build_parser() -> Parser:
    p = Parser(
        prog="edge-bench", description=__doc__.split("\n\n", 1)[1].split("\n\nExit codes")[0],
        epilog="Examples: edge-bench runs/pets --threads 4 | edge-bench runs/pets/export (the "
               "device bench, on the workstation) | offline demo: edge-bench --demo runs/demo. "
               "Cost with the defaults: under a minute for the demo run (5 models, 150 test "
               "images) on a 2-core CPU, half of it TensorFlow start-up and the memory-probe "
               "processes; --demo adds about a minute of training and export the first time. --runs and "
               "--repeats scale only the timing part.")
    p.add_argument("path", metavar="PATH",
                   help="a run directory written by edge-train and edge-export, or a bundle "
                        "(a folder with manifest.json, e.g. the run's export/ copied to the "
                        "device); with --demo: where to build the demo run")
    timing = p.add_argument_group("timing")
    timing.add_argument("--runs", type=positive_int, default=100,
                        help="timed single-image inferences per model, split over the repeats")
    timing.add_argument("--warmup", type=non_negative_int, default=10,
                        help="untimed inferences per model before timing")
    timing.add_argument("--repeats", type=positive_int, default=5,
                        help="interleaved rounds; the spread of their medians measures the noise")
    timing.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads for TFLite and TensorFlow (default: every core this "
                             "process may use)")
    timing.add_argument("--backend", choices=BACKENDS, default=None,
                        help="TFLite interpreter to use (default: the first that works, in the "
                             "order listed)")
    timing.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the per-model subprocess that measures peak RSS and load time")
    prep = p.add_argument_group("preparing a run (workstation only)")
    prep.add_argument("--export", dest="export_first", action="store_true",
                      help="run edge-export (default formats) on the run first")
    prep.add_argument("--demo", action="store_true",
                      help="train and export the built-in demo model (about a minute on a CPU) "
                           "into PATH unless already there, then benchmark it")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide progress bars")
    add_verbosity(p)
    return p


def _print_result(result) -> None:
    from benchmarks.report import format_table
    from benchmarks.thermal import throttle_warning

    print(format_table(result.report))
    print()
    for line in result.report["verdicts"].values():
        print(line)
    thermal = result.report["machine"]["thermal"]
    if thermal["throttled"]:
        print(throttle_warning(thermal))
    print(f"report: {result.out / 'report.md'}")


def _tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported here, without importing it."""
    try:
        return importlib.util.find_spec("tensorflow") is not None
    except (ImportError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_command_line(lambda: parser.parse_args(argv))
    if isinstance(args, int):
        return args
    from benchmarks.bundle_reader import is_bundle
    from benchmarks.config import BenchConfig, validate
    from benchmarks.probe_bench import is_probe

    path = Path(args.path)
    probe = is_probe(path)  # edge-tune probe's candidates: timed like a bundle, on the device
    device = probe or is_bundle(path)
    if device and (args.export_first or args.demo):
        what = "probe (it holds probe.json)" if probe else "bundle (it holds manifest.json)"
        parser.error(f"{'--export' if args.export_first else '--demo'} needs a run directory; "
                     f"{path} is a {what}")
    config = BenchConfig(path=args.path, runs=args.runs, warmup=args.warmup,
                         threads=args.threads, repeats=args.repeats,
                         export_first=args.export_first, memory=args.memory,
                         progress=args.progress, backend=args.backend)
    if (refused := check_first("edge-bench", lambda: validate(config))) is not None:
        return refused  # before TensorFlow's seconds of start-up
    # asked only for a run: the device path must not even look for TensorFlow
    has_tensorflow = not device and _tensorflow_installed()

    def work() -> int:
        if probe:
            from benchmarks.probe_bench import bench_probe, format_probe_table

            result = bench_probe(config)
            print(format_probe_table(result.report))
            print(f"report: {result.out / 'report.json'}")
            return 0
        if device:
            from benchmarks.device_bench import bench_bundle

            _print_result(bench_bundle(config))
            return 0
        if not path.exists() and not args.demo:
            raise UserError(f"{path} does not exist (expected a run directory or a bundle "
                            "folder holding manifest.json)")
        if not has_tensorflow:
            bundle = path / "export"
            hint = (f"edge-bench {bundle}" if is_bundle(bundle)
                    else "edge-bench BUNDLE (an export/ folder)")
            raise UserError(f"{path} is a run directory: benchmarking it needs TensorFlow "
                            f"(pip install '.[train]'); without TensorFlow, benchmark the bundle: "
                            f"{hint}")
        from benchmarks.bench import benchmark
        from benchmarks.demo import prepare_demo

        if args.demo:
            prepare_demo(path)
        _print_result(benchmark(config))
        return 0

    return run_command("edge-bench", work, "files already written are complete",
                       needs_tensorflow=has_tensorflow,
                       verbose=args.verbose, quiet=args.quiet)


if __name__ == "__main__":
    sys.exit(main())
