"""``manifest.json``: what a bundle holds and how its models take their input, as typed values.

``edge-export`` writes it, :class:`~edge_runtime.classifier.Classifier` and ``edge-bench`` read
it, all through this module: one definition of the file. It depends on nothing but the
standard library (and :mod:`edge_runtime.image` for the resize methods), so it loads on a device.

Layout (``format_version`` 1; keys not named here are kept in ``extra`` and written back)::

    {"format_version": 1,
     "input": {"height", "width", "channels": 3, "color": "RGB", "range": [0, 255],
               "resize": "bilinear", "dtype": "float32"},
     "labels": [...],
     "variants": {"fp32": {"file", "bytes", "sha256", "input_dtype", "output_dtype",
                           "input_quantization": {"scale", "zero_point"}, "output_quantization",
                           "accuracy", "agreement", "max_abs_diff", "accuracy_drop_points",
                           "backend", "convert_seconds", ...}, ...},
     "keras_accuracy", "eval_split", "num_eval",
     "eval_set": {"file", "samples", "split"} or null,
     "files": {"labels.txt": "<sha256>", "model_int8.tflite": "<sha256>",
               "imx500/packerOut.zip": "<sha256>", ...},
     "calibration", "source", "versions", "created", ...}

``files`` binds the bundle whole: the sha256 of every file it carries but ``manifest.json``
(whose own sha256 is the bundle's version on a device). An older export has none (None here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edge_runtime.errors import ManifestError
from edge_runtime.image import RESIZE_METHOD, RESIZE_METHODS

FORMAT_VERSION = 1
"""The manifest layout this code writes; it reads this one and older ones."""

MANIFEST_FILE = "manifest.json"
COLORS = ("RGB",)
"""Channel orders a model may take (the edge path produces RGB)."""
PIXEL_RANGE = (0, 255)
"""The value range of the pixels the models take (they normalise in-graph)."""
RUNS_ON_CPU = "cpu"
"""``runs_on`` of a variant the interpreter runs: a ``.tflite`` (the default)."""
RUNS_ON_SENSOR = "imx500"
"""``runs_on`` of the Raspberry Pi AI Camera's network: it runs on the camera's IMX500 sensor
(``imx500/packerOut.zip``), never on the interpreter."""


NUMBER = (int, float)
_KIND_NAMES = {int: "an integer", NUMBER: "a number", str: "a string", Mapping: "an object"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(value: Any, key: str, kind: type | tuple[type, ...], where: str):
    """``value`` when it is of ``kind`` (never a bool); else a ManifestError naming ``key``."""
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ManifestError(f"{where}: '{key}' is {_shown(value)}, not {_KIND_NAMES[kind]}")
    return value


def _require(data: Mapping, key: str, kind: type | tuple[type, ...], where: str):
    if key not in data:
        raise ManifestError(f"{where}: '{key}' is missing")
    return _check(data[key], key, kind, where)


def _optional(data: Mapping, key: str, kind: type | tuple[type, ...], where: str,
              default: Any = None):
    """``data[key]`` checked like :func:`_require`; ``default`` when it is absent or null."""
    value = data.get(key)
    return default if value is None else _check(value, key, kind, where)


def _number(data: Mapping, key: str, where: str, default: float | None = None) -> float | None:
    value = _optional(data, key, NUMBER, where)
    return default if value is None else float(value)


def _file_name(data: Mapping, where: str) -> str:
    """``data["file"]``: a file name inside the bundle, or in one folder of it
    (``imx500/packerOut.zip``), never a path that leads out of it."""
    return _check_file_name(_require(data, "file", str, where), where)


def _check_file_name(name: str, where: str) -> str:
    parts = name.split("/")
    if len(parts) > 2 or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise ManifestError(f"{where}: 'file' is {name!r}, not a file name in the bundle")
    return name


def _files(data: Any) -> dict[str, str] | None:
    """The ``files`` object: bundle-relative file name → sha256 (64 hex digits); None when absent."""
    if data is None:
        return None
    _check(data, "files", Mapping, MANIFEST_FILE)
    where = f"{MANIFEST_FILE}: files"
    for name, digest in data.items():
        _check_file_name(name, where)
        if (not isinstance(digest, str) or len(digest) != 64
                or any(c not in "0123456789abcdef" for c in digest)):
            raise ManifestError(f"{where}: {name!r} has sha256 {_shown(digest)}, not 64 "
                                "lower-case hex digits")
    return dict(data)


def _split(data: Mapping, known: set[str]) -> dict:
    return {k: v for k, v in data.items() if k not in known}


@dataclass(frozen=True)
class InputSpec:
    """How a picture becomes the models' input: size, channel order, value range, resize."""

    height: int
    width: int
    channels: int = 3
    color: str = "RGB"
    """Channel order; only RGB is produced by the edge path."""
    range: tuple[int, int] = PIXEL_RANGE
    """Pixel values the model takes: raw 0–255 (normalisation is inside the model)."""
    resize: str = RESIZE_METHOD
    """Resize filter used in training (:data:`edge_runtime.image.RESIZE_METHODS`)."""
    dtype: str = "float32"
    """The Keras model's input type (the variants' own types are in each :class:`Variant`)."""

    def __post_init__(self) -> None:
        where = f"{MANIFEST_FILE}: input"
        if self.height < 1 or self.width < 1:
            raise ManifestError(f"{where}: size {self.height}x{self.width} is not an image size")
        if self.channels != 3:
            raise ManifestError(f"{where}: {self.channels} channels, expected 3")
        if self.color not in COLORS:
            raise ManifestError(f"{where}: color {self.color!r}, expected one of {COLORS}")
        if tuple(self.range) != PIXEL_RANGE:
            raise ManifestError(f"{where}: range {list(self.range)}, expected {list(PIXEL_RANGE)}")
        if self.resize not in RESIZE_METHODS:
            raise ManifestError(f"{where}: resize {self.resize!r}, expected one of "
                                f"{', '.join(RESIZE_METHODS)}")

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.height, self.width

    def to_json(self) -> dict:
        return {"height": self.height, "width": self.width, "channels": self.channels,
                "color": self.color, "range": list(self.range), "resize": self.resize,
                "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: Any) -> InputSpec:
        where = f"{MANIFEST_FILE}: input"
        _check(data, "input", Mapping, MANIFEST_FILE)
        value_range = data.get("range", list(PIXEL_RANGE))
        if not isinstance(value_range, list | tuple) or len(value_range) != 2:
            raise ManifestError(f"{where}: range {value_range!r} is not [low, high]")
        return cls(height=_require(data, "height", int, where),
                   width=_require(data, "width", int, where),
                   channels=_optional(data, "channels", int, where, 3),
                   color=_optional(data, "color", str, where, "RGB"),
                   range=(value_range[0], value_range[1]),
                   resize=_optional(data, "resize", str, where, RESIZE_METHOD),
                   dtype=_optional(data, "dtype", str, where, "float32"))


@dataclass(frozen=True)
class Quantization:
    """A tensor's affine quantization: real = (q - zero_point) * scale; scale 0 means float."""

    scale: float = 0.0
    zero_point: int = 0

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_json(cls, data: Mapping | None, where: str = MANIFEST_FILE) -> Quantization:
        """Parse one ``*_quantization`` object (None: float); ``where`` names it in errors."""
        if data is None:
            return cls()
        return cls(_number(data, "scale", where, 0.0), _optional(data, "zero_point", int, where, 0))


@dataclass(frozen=True)
class Variant:
    """One ``.tflite`` file of the bundle and what export measured of it."""

    file: str
    """File name inside the bundle."""
    bytes: int
    input_dtype: str
    output_dtype: str
    accuracy: float
    """Top-1 accuracy on the evaluation split, through the edge runtime."""
    agreement: float
    """Share of evaluation images where its top-1 equals Keras's."""
    max_abs_diff: float
    """Largest probability difference from Keras over the evaluation images."""
    sha256: str | None = None
    input_quantization: Quantization = Quantization()
    output_quantization: Quantization = Quantization()
    accuracy_drop_points: float | None = None
    """Keras accuracy minus this variant's, in percentage points."""
    backend: str | None = None
    """The interpreter that verified it."""
    convert_seconds: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Keys of particular variants (``float_layers`` of int8_keepfloat, ...)."""

    @property
    def runs_on(self) -> str:
        """Where the variant runs: :data:`RUNS_ON_CPU` (a ``.tflite`` for the interpreter) or
        :data:`RUNS_ON_SENSOR` (the Raspberry Pi AI Camera's sensor: ``imx500/packerOut.zip``)."""
        return str(self.extra.get("runs_on", RUNS_ON_CPU))

    @property
    def on_cpu(self) -> bool:
        """True for a variant the interpreter runs; the one test of it everywhere."""
        return self.runs_on == RUNS_ON_CPU

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        for optional in ("sha256", "accuracy_drop_points", "backend", "convert_seconds"):
            if data[optional] is None:
                del data[optional]  # unknown is left out, not written as null
        data["input_quantization"] = self.input_quantization.to_json()
        data["output_quantization"] = self.output_quantization.to_json()
        return {**data, **self.extra}

    @classmethod
    def from_json(cls, name: str, data: Any) -> Variant:
        where = f"{MANIFEST_FILE}: variant {name}"
        _check(data, name, Mapping, f"{MANIFEST_FILE}: variants")
        quantization = {
            key: Quantization.from_json(_optional(data, key, Mapping, where), f"{where}: {key}")
            for key in ("input_quantization", "output_quantization")}
        known = {f.name for f in fields(cls)}
        return cls(file=_file_name(data, where),
                   bytes=_optional(data, "bytes", int, where, 0),
                   input_dtype=_optional(data, "input_dtype", str, where, ""),
                   output_dtype=_optional(data, "output_dtype", str, where, ""),
                   accuracy=_number(data, "accuracy", where, 0.0),
                   agreement=_number(data, "agreement", where, 0.0),
                   max_abs_diff=_number(data, "max_abs_diff", where, 0.0),
                   sha256=_optional(data, "sha256", str, where),
                   **quantization,
                   accuracy_drop_points=_number(data, "accuracy_drop_points", where),
                   backend=_optional(data, "backend", str, where),
                   convert_seconds=_number(data, "convert_seconds", where),
                   extra=_split(data, known))


@dataclass(frozen=True)
class EvalSet:
    """The evaluation images packed into the bundle (see :mod:`edge_runtime.eval_set`)."""

    file: str
    samples: int
    split: str

    def to_json(self) -> dict:
        return {"file": self.file, "samples": self.samples, "split": self.split}

    @classmethod
    def from_json(cls, data: Any) -> EvalSet | None:
        """Parse the ``eval_set`` object; None (an export without one) stays None."""
        if data is None:
            return None
        _check(data, "eval_set", Mapping, MANIFEST_FILE)
        where = f"{MANIFEST_FILE}: eval_set"
        return cls(_file_name(data, where), _optional(data, "samples", int, where, 0),
                   _optional(data, "split", str, where, "test"))


@dataclass(frozen=True)
class Manifest:
    """The whole of ``manifest.json``."""

    input: InputSpec
    labels: tuple[str, ...]
    variants: Mapping[str, Variant]
    keras_accuracy: float | None = None
    eval_split: str | None = None
    num_eval: int | None = None
    eval_set: EvalSet | None = None
    files: Mapping[str, str] | None = None
    """Every file of the bundle but manifest.json → its sha256; None: an older export."""
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Everything else export records: calibration, source, versions, timings."""

    def to_json(self) -> dict:
        return {"format_version": self.format_version, "input": self.input.to_json(),
                "labels": list(self.labels),
                "variants": {name: v.to_json() for name, v in self.variants.items()},
                "keras_accuracy": self.keras_accuracy, "eval_split": self.eval_split,
                "num_eval": self.num_eval,
                "eval_set": self.eval_set.to_json() if self.eval_set else None,
                **({"files": dict(self.files)} if self.files is not None else {}),
                **self.extra}

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """Parse and validate; raises :class:`ManifestError` naming what is wrong."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"{MANIFEST_FILE} is not a JSON object")
        where = MANIFEST_FILE
        version = _optional(data, "format_version", int, where, 1)  # unversioned: this layout
        if version > FORMAT_VERSION:
            raise ManifestError(f"{MANIFEST_FILE}: format_version {version!r} is newer than this "
                                f"edge-toolchain reads ({FORMAT_VERSION}); upgrade it")
        labels = data.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ManifestError(f"{MANIFEST_FILE}: 'labels' is {_shown(labels)}, not a list of "
                                "names")
        variants = _optional(data, "variants", Mapping, where, {})
        known = {f.name for f in fields(cls)}
        return cls(input=InputSpec.from_json(_require(data, "input", Mapping, where)),
                   labels=tuple(labels),
                   variants={name: Variant.from_json(name, v) for name, v in variants.items()},
                   keras_accuracy=_number(data, "keras_accuracy", where),
                   eval_split=_optional(data, "eval_split", str, where),
                   num_eval=_optional(data, "num_eval", int, where),
                   eval_set=EvalSet.from_json(data.get("eval_set")),
                   files=_files(data.get("files")), format_version=version, extra=_split(data, known))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        """Read a ``manifest.json`` file, or the one in a bundle folder."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ManifestError(f"{path} does not exist") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{path}: not valid JSON ({exc})") from None
        try:
            return cls.from_json(data)
        except ManifestError as exc:
            raise ManifestError(str(exc).replace(MANIFEST_FILE, str(path), 1)) from None

    def bound_files(self) -> dict[str, str | None]:
        """Every file the manifest binds → its sha256 (None: a variant of an older export
        without one).

        Raises:
            ManifestError: a variant whose file ``files`` lists with another sha256, or does
                not list.
        """
        hashes: dict[str, str | None] = {v.file: v.sha256 for v in self.variants.values()}
        if self.files is None:
            return hashes
        for name, variant in self.variants.items():
            listed = self.files.get(variant.file)
            if listed is None:
                raise ManifestError(f"variant {name}: {variant.file} is not among the "
                                    "manifest's files: the manifest does not bind it")
            if variant.sha256 is not None and variant.sha256 != listed:
                raise ManifestError(f"variant {name}: manifest.json gives {variant.file} two "
                                    f"sha256s ({variant.sha256[:12]}… and {listed[:12]}… in "
                                    "files)")
        return {**hashes, **self.files}

    def damaged_files(self, folder: str | os.PathLike) -> list[tuple[str, str]]:
        """The files the manifest binds that ``folder`` does not hold as exported, as (file
        name, what is wrong): missing, a link or not a regular file, or other bytes (both
        sha256s named). Every file is looked at; empty when all are intact.

        Raises:
            ManifestError: the manifest contradicts itself (see :meth:`check_files`).
        """
        from common.fileio import sha256

        damaged = []
        for name, digest in self.bound_files().items():
            path = Path(folder) / name
            if path.is_symlink():
                damaged.append((name, "a link, not a file"))
            elif not path.exists():
                damaged.append((name, "missing"))
            elif not path.is_file():
                damaged.append((name, "not a regular file"))
            elif digest and (actual := sha256(path)) != digest:
                damaged.append((name, f"sha256 {actual[:12]}…, manifest.json says "
                                      f"{digest[:12]}…"))
        return damaged

    def check_files(self, folder: str | os.PathLike) -> None:
        """Check that every file the manifest names is in ``folder`` as a regular file and,
        where the manifest records its sha256, unchanged: a file altered or truncated in copying
        is caught before it is used. With ``files`` (a current export) that is every file of
        the bundle, and each variant's file must be listed there with its own sha256.

        Raises:
            ManifestError: the first missing or altered file, named with both hashes; a variant
                ``files`` does not list, or lists with another sha256.
        """
        damaged = self.damaged_files(folder)
        if not damaged:
            return
        name, problem = damaged[0]
        variant = next((n for n, v in self.variants.items() if v.file == name), None)
        what = f"variant {variant}: " if variant else ""
        path = Path(folder) / name
        if problem == "missing":
            raise ManifestError(f"{what}{path} is missing")
        if problem.startswith("sha256"):
            raise ManifestError(f"{what}{path} does not match the manifest ({problem}): the file "
                                "was changed or damaged after export")
        raise ManifestError(f"{what}{path} is {problem}")

    def cpu_variants(self) -> dict[str, Variant]:
        """The variants the interpreter runs (:attr:`Variant.on_cpu`), in the manifest's order:
        what export verifies and the benches and ``edge-model activate`` run."""
        return {name: v for name, v in self.variants.items() if v.on_cpu}

    def sensor_variant(self) -> tuple[str, Variant] | None:
        """The AI Camera's variant (``runs_on`` :data:`RUNS_ON_SENSOR`) and its name; None when
        the bundle has none."""
        return next(((name, v) for name, v in self.variants.items()
                     if v.runs_on == RUNS_ON_SENSOR), None)

    @classmethod
    def beside(cls, model_path: str | os.PathLike) -> Manifest | None:
        """The manifest of the bundle ``model_path`` belongs to: :func:`find_manifest`."""
        return find_manifest(model_path)

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically to ``path`` (a file, or a bundle folder)."""
        from common.fileio import write_json

        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_FILE
        return write_json(path, self.to_json())


def bundle_folder(model_path: str | os.PathLike) -> Path | None:
    """The bundle a ``--model`` path belongs to: the model's own folder when it holds
    ``manifest.json``, else the folder above when that one does (a variant kept in a folder of
    its own, as the AI Camera's ``BUNDLE/imx500/packerOut.zip``); None for a model outside any
    bundle (a lone ``.tflite``)."""
    model = Path(model_path)
    for folder in (model.parent, model.parent.parent):
        if (folder / MANIFEST_FILE).is_file():
            return folder
    return None


def find_manifest(model_path: str | os.PathLike) -> Manifest | None:
    """The manifest of the bundle a ``--model`` path belongs to (:func:`bundle_folder`), the one
    way every model finds its bundle's contract; None for a lone model.

    Raises:
        ManifestError: the manifest is there but unreadable or invalid.
    """
    folder = bundle_folder(model_path)
    return Manifest.load(folder) if folder is not None else None
