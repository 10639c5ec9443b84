"""The checks a bundle passes on a device before it becomes current, each by the means that fit it.

Each check is a function that returns what it found (a short detail) or raises :class:`Refused`
with one line saying why; :func:`deploy.store.activate` runs them in order and stops at the
first refusal:

- ``manifest`` (:func:`check_manifest`): it reads; it binds every file of the bundle by sha256
  (``files``, an export of this toolchain); it names a variant, each with a sha256; it has the
  variant the service runs (:data:`SERVICE_VARIANT`); and an evaluation set for the CPU ones;
- ``sha256`` (:func:`check_hashes`): manifest.json is the version's (its own sha256), and every
  file it binds is there with its bytes;
- ``labels`` (:func:`check_labels`): each label is one (:func:`common.labels.label_problem`),
  and labels.txt holds them, one a line;
- ``imx500`` (:func:`check_sensor`): the AI Camera's network opens whole and takes what the
  sensor feeds, at the model's size, with one score a class (``dnnParams.xml``);
- ``answers`` (:func:`check_answers`): every CPU variant runs the evaluation set here and gives
  the workstation's answers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from common.fileio import sha256
from common.labels import label_problem, read_labels
from common.quiet import quiet_output
from edge_runtime.classifier import Classifier
from edge_runtime.errors import EdgeError
from edge_runtime.eval_set import EvalSet, required_agreement
from edge_runtime.manifest import MANIFEST_FILE, RUNS_ON_CPU, RUNS_ON_SENSOR, Manifest
from edge_runtime.sensor_network import check_network

SERVICE_VARIANT = "int8"
"""The variant the service runs on the CPU (``edge-service install``'s ``--model
ROOT/current/model_int8.tflite``): a bundle without it never becomes current, so the file the
unit names is always one the store checked. With the AI Camera, the service runs the bundle's
``imx500`` variant instead, when the bundle has one."""
CHECKED_ON = (RUNS_ON_CPU, RUNS_ON_SENSOR)
"""Where the variants this module can check run."""
LABELS_FILE = "labels.txt"
REEXPORT = "re-export it with a current edge-export"


class Refused(Exception):
    """A check refused the bundle; ``str()`` is the one line that says why."""


def check_manifest(manifest: Manifest) -> str:
    """What the manifest must say for the store to bind the whole bundle to its version.

    Raises:
        Refused: naming what is missing.
    """
    if manifest.files is None:
        raise Refused("manifest.json binds no file but the variants (no 'files': an export "
                      f"older than this edge-model): unhashed files could be anything; {REEXPORT}")
    if not manifest.variants:
        raise Refused("the manifest names no variant: there is no model to run")
    unknown = [name for name, v in manifest.variants.items() if v.runs_on not in CHECKED_ON]
    if unknown:
        raise Refused(f"variant {unknown[0]} runs on "
                      f"{manifest.variants[unknown[0]].runs_on!r}, which this edge-model cannot "
                      f"check (it checks {' and '.join(CHECKED_ON)} variants): upgrade it")
    unhashed = [name for name, v in manifest.variants.items() if not v.sha256]
    if unhashed:
        raise Refused(f"variant {unhashed[0]} has no sha256 in the manifest; {REEXPORT}")
    try:
        manifest.bound_files()  # every variant among the files, with its own sha256
    except EdgeError as exc:
        raise Refused(str(exc)) from None
    if SERVICE_VARIANT not in manifest.cpu_variants():
        raise Refused(f"the bundle has no {SERVICE_VARIANT} variant, the one the service runs "
                      f"on the CPU; export with --formats ...,{SERVICE_VARIANT}")
    if manifest.eval_set is None:
        raise Refused(f"the bundle has no evaluation set to check its answers with; {REEXPORT}")
    return f"{len(manifest.variants)} variants, {len(manifest.files)} files"


def check_hashes(folder: Path, manifest: Manifest, version: str) -> str:
    """manifest.json is the one the version is named after, and every file it binds is in
    ``folder`` with its sha256.

    Raises:
        Refused: the first damaged file, with both hashes.
    """
    made = sha256(folder / MANIFEST_FILE)[:12]
    if made != version:
        raise Refused(f"{folder / MANIFEST_FILE} has sha256 {made}…, not the version's "
                      f"{version}…: it was changed or damaged")
    try:
        manifest.check_files(folder)
    except EdgeError as exc:
        raise Refused(str(exc)) from None
    return f"{len(manifest.files or {}) + 1} files"


def check_labels(folder: Path, manifest: Manifest) -> str:
    """Each label is one, and labels.txt (when the bundle carries it) holds them, one a line.

    Raises:
        Refused: naming the label or the file.
    """
    for label in manifest.labels:
        problem = label_problem(label)
        if problem:
            raise Refused(f"the manifest's {problem}")
    if LABELS_FILE in (manifest.files or {}):
        try:
            found = read_labels(folder / LABELS_FILE)
        except (OSError, ValueError) as exc:
            raise Refused(f"{folder / LABELS_FILE}: {exc}") from None
        if found != list(manifest.labels):
            raise Refused(f"{folder / LABELS_FILE} does not hold the manifest's labels, one a "
                          "line")
    return f"{len(manifest.labels)} classes"


def check_sensor(folder: Path, manifest: Manifest) -> str | None:
    """The sensor network (None when the bundle has none) opens whole (every member's CRC) and,
    by its ``dnnParams.xml``, takes a signed input of scale 1/128 (what the sensor feeds) at the
    model's size and gives one score a class. Its sha256 is :func:`check_hashes`'s; it cannot
    run on the CPU, so it has no answers.

    Raises:
        Refused: naming the variant and what is wrong.
    """
    height, width = manifest.input.size
    found = manifest.sensor_variant()
    if found is None:
        return None
    name, variant = found
    try:
        check_network(folder / variant.file, height, width, len(manifest.labels))
    except EdgeError as exc:
        raise Refused(f"{name}: {exc}") from None
    return f"{name} {height}x{width} → {len(manifest.labels)} scores"


def check_answers(folder: Path, manifest: Manifest, threads: int | None = None,
                  progress: Callable[[str], None] = lambda _: None) -> str:
    """Every CPU variant, run here on the bundle's evaluation set, gives the answers it gave on
    the workstation at export, on at least :func:`required_agreement` of them.

    Raises:
        Refused: the evaluation set does not read or holds no answers of a variant, a variant
            does not run here, or gives too few of its answers.
    """
    try:
        eval_set = EvalSet.load(folder / manifest.eval_set.file)
    except EdgeError as exc:
        raise Refused(str(exc)) from None
    labels = folder / LABELS_FILE
    shown = []
    for name, variant in manifest.cpu_variants().items():
        answers = eval_set.variant_top1.get(name)
        if answers is None:
            raise Refused(f"{manifest.eval_set.file} holds no workstation answers of {name}; "
                          f"{REEXPORT}")
        progress(f"{name}: {len(eval_set)} evaluation images")
        try:
            with quiet_output():  # the interpreter's "Created XNNPACK delegate" line
                classifier = Classifier(folder / variant.file,
                                        labels if labels.is_file() else None, threads)
            top1 = np.argmax(classifier.probabilities(eval_set.pixels), axis=1)
        except (EdgeError, ValueError) as exc:
            raise Refused(f"{name}: cannot run it here: {exc}") from None
        same = int(np.sum(top1 == answers))
        needed = required_agreement(name)
        shown.append(f"{name} {same}/{len(answers)}")
        if same < needed * len(answers):
            raise Refused(f"{name} gives the workstation's answer on {same} of {len(answers)} "
                          f"evaluation images here; at least {needed:.0%} are required")
    return ", ".join(shown)
