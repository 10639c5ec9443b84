"""edge-tune end to end, timed: probe, bench on this machine, search with a budget from that bench.

    python -m tune.e2e /tmp/tune-e2e            # 10 classes × 300 pictures of 64 px, 27 candidates
    python -m tune.e2e /tmp/tune-e2e --quick    # a rehearsal: 10 × 40 pictures, 8 candidates

The data set is made here: ten classes of small drawn pictures (the demo's five shapes, each
in colour and in grey), a few thousand files. The three commands run as a user runs them (each
its own process), the budget is the p50 that a third of the probe's candidates on this machine
meet (``--fit-share``), and the result — each step's seconds, the budget, the candidate chosen and
whether it fits — goes to ``OUT/e2e.json`` and is printed. The target (issue 21): under 30
minutes on 2 cores, a candidate within the budget. A benchmark, not a test: it exits 1 when the
chosen candidate is over the budget, 0 otherwise, whatever the time.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common.argtypes import (
    Parser,
    add_verbosity,
    non_negative_int,
    positive_int,
    probability,
)
from common.command import run_main, say
from common.errors import EXIT_CHECK_FAILED, UsageError
from common.fileio import write_json

PROG = "python -m tune.e2e"
TARGET_SECONDS = 30 * 60
ROOT = Path(__file__).resolve().parents[1]


def write_ten_classes(root: Path, per_class: int, size: int, seed: int = 0) -> Path:
    """``root/<shape>[_grey]/<n>.jpg``: the demo's shapes (:mod:`train.demo_data`), each in
    colour and in grey, ``per_class`` pictures of ``size`` pixels each; kept if already there."""
    from train.demo_data import CLASSES, draw_example

    if root.is_dir() and sum(1 for _ in root.rglob("*.jpg")) == 10 * per_class:
        return root
    for index, kind in enumerate(CLASSES):
        for grey in (False, True):
            folder = root / (f"{kind}_grey" if grey else kind)
            folder.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng([seed, index, int(grey)])
            for n in range(per_class):
                picture = draw_example(kind, rng, size)
                if grey:
                    picture = picture.convert("L").convert("RGB")
                picture.save(folder / f"{n:04d}.jpg", quality=90)
    return root


def budget_for(latencies: list[float], share: float) -> float:
    """The budget ``share`` of the sorted ``latencies`` meet: the slowest of them, rounded up
    to the microsecond so it still fits.

    >>> budget_for([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 1 / 3)
    2.0
    """
    keep = max(1, min(len(latencies), round(share * len(latencies))))
    return math.ceil(latencies[keep - 1] * 1000) / 1000


class StepFailed(Exception):
    """One of the three commands ended with a non-zero exit code (exit code 1 here)."""


def _run(step: str, args: list[str], log: Path) -> float:
    """Run one command (``python -m MODULE ...``), its output to ``log``; its seconds."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    print(f"== {step}: {' '.join(args)}", flush=True)
    started = time.time()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n== {step}: {' '.join(args)}\n")
        out.flush()
        done = subprocess.run([sys.executable, "-m", *args], stdout=out, stderr=subprocess.STDOUT,
                              env=env)
    seconds = time.time() - started
    if done.returncode != 0:
        raise StepFailed(f"{step} failed (exit {done.returncode}); see {log}")
    print(f"   {seconds:.0f} s", flush=True)
    return seconds


SEARCH_FLAGS = (
    ("--rung-epochs", positive_int, 2,
     "from scratch, one epoch barely leaves chance; two rank the candidates"),
    ("--eta", positive_int, 3, "each rung keeps a third"),
    ("--finalists", positive_int, 3, "halving stops at this many"),
    ("--epochs", positive_int, 12, "the winner's phase 1 epochs"),
    ("--fine-tune-epochs", non_negative_int, 0, "the winner's phase 2 epochs"),
)
"""The search's settings this benchmark chooses: (flag, type, default, why), passed on as given."""


def build_parser() -> Parser:
    """The command-line parser."""
    p = Parser(prog=PROG, description=__doc__)
    p.add_argument("out", type=Path, help="working folder (data, probe, run, e2e.json)")
    p.add_argument("--per-class", type=positive_int, default=300,
                   help="pictures per class (10 classes)")
    p.add_argument("--image-size", type=positive_int, default=64,
                   help="side of the pictures, pixels")
    p.add_argument("--backbones", default="mobilenet_v2,mobilenet_v3_small,mobilenet_v3_large")
    p.add_argument("--alphas", default="0.35,0.75,1.0")
    p.add_argument("--sizes", default="64,96,128")
    p.add_argument("--weights", default="none",
                   help="none works offline; imagenet downloads weights once (phase 1 then "
                        "trains on cached backbone features)")
    p.add_argument("--fit-share", type=probability, default=1 / 3,
                   help="share of the candidates the budget lets through (the budget is the "
                        "p50 of the slowest of them)")
    for flag, kind, default, what in SEARCH_FLAGS:
        p.add_argument(flag, type=kind, default=default, help=f"edge-tune search {flag}: {what}")
    p.add_argument("--quick", action="store_true",
                   help="a rehearsal: 40 pictures per class, mobilenet_v2 and mobilenet_v3_small "
                        "at widths 0.35 and 1.0 and sizes 64 and 96, 1-epoch rungs, a 3-epoch "
                        "winner")
    add_verbosity(p)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the three steps and print the result; the exit code (:mod:`common.errors`: 1 when a
    step failed or the chosen candidate is over the budget)."""
    def work(args) -> int:
        if args.quick:
            args.per_class, args.sizes, args.alphas = 40, "64,96", "0.35,1.0"
            args.backbones, args.epochs = "mobilenet_v2,mobilenet_v3_small", 3
            args.rung_epochs, args.finalists, args.fit_share = 1, 2, 0.5
        try:
            return _end_to_end(args)
        except StepFailed as failed:
            say(PROG, f"error: {failed}")
            return EXIT_CHECK_FAILED

    return run_main(build_parser(), argv, work, "what ran is in OUT; start again in a new "
                    "OUT folder")


def _end_to_end(args) -> int:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "e2e.log"
    seconds: dict[str, float] = {}

    started = time.time()
    data = write_ten_classes(out / "data", args.per_class, args.image_size)
    seconds["data"] = time.time() - started
    images = sum(1 for _ in data.rglob("*.jpg"))
    probe, run = out / "probe", out / "runs" / "best"
    for folder in (probe, run, run.with_name(run.name + ".tune")):
        if folder.exists():
            raise UsageError(f"{folder} exists: use a new OUT folder")

    seconds["probe"] = _run("probe", ["tune.cli", "probe", str(probe), "--backbones",
                                      args.backbones, "--alphas", args.alphas, "--sizes",
                                      args.sizes, "--classes", "10", "--no-progress"], log)
    seconds["bench"] = _run("bench", ["benchmarks.cli", str(probe), "--no-progress"], log)
    report = json.loads((probe / "bench" / "report.json").read_text())
    budget = budget_for(sorted(r["latency_ms"]["p50"] for r in report["rows"]), args.fit_share)
    seconds["search"] = _run("search", [
        "tune.cli", "search", "--data", str(data), "--device",
        str(probe / "bench" / "report.json"), "--budget-ms", str(budget), "--out", str(run),
        "--weights", args.weights, "--rung-epochs", str(args.rung_epochs), "--eta", str(args.eta),
        "--finalists", str(args.finalists), "--epochs", str(args.epochs),
        "--fine-tune-epochs", str(args.fine_tune_epochs), "--no-progress"], log)
    total = sum(seconds.values())
    tuned = json.loads((run / "tune" / "report.json").read_text())
    chosen = tuned["chosen"]
    result = {
        "images": images, "image_size": args.image_size, "classes": 10,
        "candidates": len(report["rows"]),
        "trained": sum(c["val_accuracy"] is not None for c in tuned["candidates"]),
        "budget_ms": budget, "chosen": chosen, "within_budget": chosen["p50_ms"] <= budget,
        "seconds": {k: round(v, 1) for k, v in seconds.items()}, "total_seconds": round(total, 1),
        "target_seconds": TARGET_SECONDS, "under_target": total < TARGET_SECONDS,
        "cores": os.cpu_count(), "load_average_at_end": list(os.getloadavg()),
        "settings": {k: str(v) for k, v in vars(args).items()},
    }
    write_json(out / "e2e.json", result)
    print(json.dumps(result, indent=2))
    print(f"chosen {chosen['name']} (p50 {chosen['p50_ms']:.2f} ms, budget {budget:.2f} ms); "
          f"{total / 60:.1f} min end to end (target {TARGET_SECONDS // 60} min)")
    return 0 if result["within_budget"] else 1


if __name__ == "__main__":
    sys.exit(main())
