"""Finding a TFLite interpreter that works on this machine.

Backends are tried in order: LiteRT (``ai_edge_litert``, the successor of
tflite-runtime), ``tflite_runtime``, then ``tensorflow.lite``. A backend must
import *and* create an interpreter for the model to be chosen: tflite-runtime
2.14, for one, imports under numpy 2 but fails when the interpreter is made.
TensorFlow is only imported when both lighter backends are unusable, which
never happens on a device installed with ``pip install ".[edge]"``; it is then
used with a warning (export verifies "the code that ships", and TensorFlow's
interpreter is not that), or silently when asked for with ``backend="tensorflow"``.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from edge_runtime.errors import BackendError, ModelError

BACKENDS = ("ai_edge_litert", "tflite_runtime", "tensorflow")
_MODULES = {
    "ai_edge_litert": ("ai_edge_litert.interpreter", "Interpreter"),
    "tflite_runtime": ("tflite_runtime.interpreter", "Interpreter"),
    "tensorflow": ("tensorflow.lite", "Interpreter"),
}
TFLITE_MAGIC = b"TFL3"  # flatbuffer file identifier, at bytes 4..8

log = logging.getLogger(__name__)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: taskset, cgroups, containers).

    ``os.cpu_count()`` counts the machine's cores, more than a pinned process may use; more
    interpreter threads than usable cores makes them wait on each other.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def stream_threads() -> int:
    """Interpreter threads for a camera or video stream: every usable core but one.

    The stream overlaps capture, preprocessing and inference (:mod:`edge_runtime.stream.loop`); an
    interpreter using every core leaves the other two stages waiting for a core. Measured on a
    2-core x86 with MobileNetV2 1.0/160 int8 and a 640x480 MJPG clip: 1 thread gave 7.3
    ms/frame, 2 threads 8.3 (``python -m benchmarks.camera_loop``). Files, one at a time,
    get every core.
    """
    return max(1, available_cores() - 1)


def check_model_file(path: str | os.PathLike) -> Path:
    """Return ``path`` if it looks like a TFLite flatbuffer, else raise :class:`ModelError`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    with path.open("rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != TFLITE_MAGIC:
        raise ModelError(f"{path} is not a TFLite model (no TFL3 identifier)")
    return path


def interpreter_class(backend: str):
    """Import ``backend`` and return its Interpreter class (raises ImportError)."""
    if backend not in _MODULES:
        raise BackendError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    module_name, attr = _MODULES[backend]
    return getattr(importlib.import_module(module_name), attr)


def make_interpreter(model_path: str | os.PathLike, threads: int | None = None,
                     backend: str | None = None):
    """Create an allocated interpreter for ``model_path`` with the first backend that works.

    Args:
        threads: CPU threads for the interpreter (default: every core this process may use).
        backend: force one of :data:`BACKENDS` instead of trying them in order.

    Returns:
        ``(interpreter, backend_name)``.

    Raises:
        ModelError: the file is not a loadable TFLite model.
        BackendError: no backend is installed and working.
    """
    path = check_model_file(model_path)
    threads = threads or available_cores()
    failures = []
    model_errors = []
    for name in [backend] if backend else BACKENDS:
        try:
            cls = interpreter_class(name)
        except ImportError as exc:
            failures.append(f"{name}: not installed ({exc})")
            continue
        except Exception as exc:  # a broken install can raise anything at import
            failures.append(f"{name}: import failed ({type(exc).__name__}: {exc})")
            continue
        try:
            interpreter = cls(model_path=str(path), num_threads=threads)
            interpreter.allocate_tensors()
            if name == "tensorflow" and backend is None:
                # the device never has TensorFlow: results from it say nothing of the device's
                log.warning("no LiteRT or tflite_runtime interpreter works here (%s); using "
                            "tensorflow.lite, which is not what a device runs — pip install "
                            "ai-edge-litert", "; ".join(failures))
            return interpreter, name
        except ValueError as exc:  # how every backend reports a model it cannot parse
            model_errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            failures.append(f"{name}: cannot load the model ({exc})")
        except Exception as exc:
            failures.append(f"{name}: cannot create an interpreter ({type(exc).__name__}: {exc})")
    # a model error counts when every backend that imported rejected the file
    if model_errors and len(model_errors) == len(
            [f for f in failures if "not installed" not in f and "import failed" not in f]):
        raise ModelError(f"{path}: not a loadable TFLite model ({model_errors[0] or 'invalid'})")
    raise BackendError("no TFLite interpreter works here: " + "; ".join(failures) +
                       ' — install one with: pip install ai-edge-litert')


def available_backends() -> dict[str, str]:
    """Each backend → its version, or why it cannot be imported (for reports)."""
    found = {}
    for name in BACKENDS:
        if name == "tensorflow":
            continue  # importing it only to report a version would cost seconds
        try:
            module = importlib.import_module(name)
            found[name] = getattr(module, "__version__", "installed")
        except Exception as exc:
            found[name] = f"unavailable ({type(exc).__name__})"
    return found
