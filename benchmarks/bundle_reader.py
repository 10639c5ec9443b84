"""An exported bundle as the benchmark sees it: its manifest, checked files, and its variants
ready to time. TensorFlow-free: the device bench and the workstation bench both use it.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.config import BenchError
from benchmarks.runners import TFLiteRunner
from benchmarks.timing import ModelResult
from edge_runtime.errors import EdgeError
from edge_runtime.manifest import MANIFEST_FILE, Manifest


def is_bundle(path: Path) -> bool:
    """Whether ``path`` is a bundle (a folder holding manifest.json), not a run directory."""
    return (path / MANIFEST_FILE).is_file()


def load_bundle(folder: Path, remedy: str) -> Manifest:
    """The bundle's manifest, after checking that every variant file is there and intact.

    Each variant's sha256 is checked when the manifest records one: a file changed or
    truncated in copying would otherwise be benchmarked as if it were the exported model.

    Args:
        remedy: what the user should do about a broken bundle (``re-run `edge-export RUN```).

    Raises:
        BenchError: an unreadable manifest, no variants, a missing or altered variant file.
    """
    try:
        manifest = Manifest.load(folder)
    except EdgeError as exc:
        raise BenchError(f"{exc}; {remedy}") from None
    if not manifest.variants:
        raise BenchError(f"{folder / MANIFEST_FILE} lists no variants; {remedy}")
    try:
        manifest.check_files(folder)
    except EdgeError as exc:
        raise BenchError(f"{exc}; copy the bundle again or {remedy}") from None
    return manifest


def open_classifier(path: Path, what: str, threads: int, backend: str | None):
    """The edge runtime's ``Classifier`` on ``path``, quietly.

    Raises:
        BenchError: the interpreter cannot load it (``what`` names it), or no backend at all.
    """
    from common.quiet import quiet_output
    from edge_runtime.classifier import Classifier

    try:
        with quiet_output():  # the interpreter's "Created XNNPACK delegate" log line
            return Classifier(path, threads=threads, backend=backend)
    except EdgeError as exc:
        raise BenchError(f"{what}: {exc}") from None


def open_variants(folder: Path, manifest: Manifest, threads: int, backend: str | None
                  ) -> tuple[dict[str, TFLiteRunner], dict[str, ModelResult], str | None]:
    """A runner and an empty result per variant, and the interpreter backend they run on.

    Raises:
        BenchError: a variant the interpreter cannot load, or no backend at all.
    """
    runners: dict[str, TFLiteRunner] = {}
    results: dict[str, ModelResult] = {}
    used = None
    # the AI Camera's network runs on its sensor, not the interpreter
    for name, variant in manifest.cpu_variants().items():
        path = folder / variant.file
        classifier = open_classifier(path, f"variant {name}", threads, backend)
        used = used or classifier.backend
        runners[name] = TFLiteRunner(classifier)
        results[name] = ModelResult(
            name, "tflite", variant.file, path.stat().st_size,
            details={"input_dtype": classifier.input_dtype.name, "backend": classifier.backend,
                     "export_accuracy": variant.accuracy, "export_agreement": variant.agreement})
    return runners, results, used
