"""Peak memory and load time of one model, measured alone in a fresh process.

    python -m benchmarks.memprobe --kind tflite --model runs/demo/export/model_int8.tflite

``edge-bench`` runs this once per model, so a model's peak RSS is not
inflated by the other models (or TensorFlow) already loaded in the
benchmark's own process. Prints one JSON object: ``baseline_rss_mb`` (after
the imports, before the model), ``peak_rss_mb`` (after loading and a few
inferences), ``load_seconds`` and ``first_inference_ms``. A TFLite probe
imports only the edge runtime, as a device would.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

from common.argtypes import Parser, add_verbosity, positive_int
from common.command import run_main
from common.errors import UserError

PROG = "python -m benchmarks.memprobe"
KINDS = ("keras", "keras_compiled", "tflite")


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``, the high-water mark
    of this program's own memory. ``getrusage``'s ``ru_maxrss`` is used
    elsewhere; on Linux it is inherited across fork and exec, so a probe
    started by a benchmark holding TensorFlow would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports kibibytes, macOS bytes
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _keras_runner(kind: str, model_path: str, threads: int | None):
    """Import TensorFlow, then return (load, infer) for a Keras model."""
    import numpy as np
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    import keras

    state = {}

    def load():
        model = keras.models.load_model(model_path, safe_mode=True, compile=False)
        size = tuple(int(d) for d in model.input_shape[1:3])
        state["x"] = np.zeros((1, *size, 3), np.float32)
        if kind == "keras":
            state["infer"] = lambda: model.predict(state["x"], verbose=0)
        else:
            compiled = tf.function(lambda x: model(x, training=False))
            tensor = tf.constant(state["x"])
            state["infer"] = lambda: compiled(tensor).numpy()

    return load, lambda: state["infer"]()


def _tflite_runner(model_path: str, threads: int | None, backend: str | None):
    """Import the edge runtime (and its interpreter), then return (load, infer)."""
    import numpy as np

    from edge_runtime.classifier import Classifier
    from edge_runtime.interpreter import interpreter_class

    if backend:
        interpreter_class(backend)  # its import belongs to the baseline, not to the model
    state = {}

    def load():
        classifier = Classifier(model_path, threads=threads, backend=backend)
        state["classifier"] = classifier
        state["x"] = np.zeros((1, *classifier.input_size, 3), np.uint8)

    return load, lambda: state["classifier"].probabilities(state["x"])


def probe(kind: str, model_path: str, threads: int | None = None, backend: str | None = None,
          inferences: int = 3) -> dict:
    """Load ``model_path`` as ``kind`` in this process and measure it (see module docstring).

    Meaningful only in a process that has loaded nothing else, which is why
    :func:`benchmarks.memory.measure_memory` calls it through ``python -m``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "tflite":
        load, infer = _tflite_runner(model_path, threads, backend)
    else:
        load, infer = _keras_runner(kind, model_path, threads)
    baseline = peak_rss_mb()
    started = time.perf_counter()
    load()
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    infer()
    first_ms = (time.perf_counter() - started) * 1000
    for _ in range(max(0, inferences - 1)):
        infer()
    return {"kind": kind, "model": model_path, "baseline_rss_mb": round(baseline, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1), "load_seconds": round(load_seconds, 4),
            "first_inference_ms": round(first_ms, 2)}


def build_parser() -> Parser:
    """The command-line parser."""
    parser = Parser(prog=PROG, description=__doc__)
    parser.add_argument("--kind", required=True, choices=KINDS, help="how the model is run")
    parser.add_argument("--model", required=True, help=".keras or .tflite file")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="CPU threads (default: all)")
    parser.add_argument("--backend", default=None, help="TFLite interpreter backend to force")
    parser.add_argument("--inferences", type=positive_int, default=3,
                        help="inferences after loading")
    add_verbosity(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Probe one model and print its JSON line; the exit code (:mod:`common.errors`: 2 when
    the model cannot be loaded or run, which the parent reports from the last stderr line)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    def work(args) -> int:
        try:
            result = probe(args.kind, args.model, args.threads, args.backend, args.inferences)
        except UserError:
            raise
        except (OSError, ValueError, RuntimeError) as exc:  # a model that will not load or run
            raise UserError(f"{type(exc).__name__}: {exc}") from exc
        print(json.dumps(result))
        return 0

    # TensorFlow is imported by the Keras runner only: before it, the baseline is measured;
    # stdout is the JSON line alone
    return run_main(build_parser(), argv, work, progress_to="stderr")


if __name__ == "__main__":
    sys.exit(main())
