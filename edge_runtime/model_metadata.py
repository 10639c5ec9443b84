"""Reading the TFLite model metadata a ``.tflite`` carries: class names and input contract.

An exported model is self-describing: its flatbuffer holds a ``TFLITE_METADATA``
buffer (the published TFLite metadata schema, the one MediaPipe Tasks reads), and
the file is also a zip archive of associated files: ``labels.txt`` (the output's
``TENSOR_AXIS_LABELS``) and ``input_contract.json`` (size, resize method, colour,
range). ``export/metadata.py`` writes them; this module reads them with the
``flatbuffers`` package and :mod:`zipfile` only, so the device needs no TensorFlow.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from common.labels import parse_labels
from edge_runtime.errors import ModelError
from edge_runtime.interpreter import TFLITE_MAGIC
from edge_runtime.tflite_metadata_schema import metadata_schema_generated as meta_fb
from edge_runtime.tflite_metadata_schema import model_schema_subset_generated as model_fb

METADATA_NAME = "TFLITE_METADATA"
"""Name of the model's metadata entry holding the metadata flatbuffer (the spec's name)."""
METADATA_IDENTIFIER = b"M001"
"""File identifier of the metadata flatbuffer (``metadata_schema.fbs``)."""
LABELS_FILE = "labels.txt"
"""Associated file with the class names, one per line in output order."""
INPUT_CONTRACT_FILE = "input_contract.json"
"""Associated file with our input contract: the manifest's ``input`` entry."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model's own metadata says about it."""

    name: str | None
    description: str | None
    version: str | None
    labels: list[str] | None
    """Class names from the output's ``TENSOR_AXIS_LABELS`` file, or None."""
    input_contract: dict | None
    """Input size, resize method, colour and range (``input_contract.json``), or None."""
    files: tuple[str, ...]
    """Names of the associated files packed in the model."""


def metadata_buffer(model: bytes) -> bytes | None:
    """The ``TFLITE_METADATA`` flatbuffer inside a TFLite model, or None when it has none.

    Raises:
        ModelError: not a TFLite flatbuffer, or one whose tables point out of the file.
    """
    if len(model) < 8 or model[4:8] != TFLITE_MAGIC:
        raise ModelError("not a TFLite model (no TFL3 identifier)")
    try:
        root = model_fb.Model.GetRootAs(model, 0)
        for i in range(root.MetadataLength()):
            entry = root.Metadata(i)
            if entry.Name() != METADATA_NAME.encode():
                continue
            buffer = root.Buffers(entry.Buffer())
            if buffer.Offset() > 1:  # models over 2 GB keep buffers after the flatbuffer
                data = model[buffer.Offset():buffer.Offset() + buffer.Size()]
            else:
                data = buffer.DataAsNumpy()
                data = data.tobytes() if not isinstance(data, int) else b""
            return bytes(data)
    except (struct.error, IndexError, ValueError, TypeError) as exc:
        raise ModelError(f"damaged TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    return None


def read_model_metadata(model: str | os.PathLike | bytes) -> ModelMetadata | None:
    """The metadata of a ``.tflite`` file (a path) or model (bytes); None when it has none.

    Raises:
        ModelError: the file cannot be read, or its metadata is damaged (a metadata
            buffer that is not the TFLite metadata schema, a named associated file
            missing from the archive, a labels or contract file that does not parse).
    """
    if isinstance(model, bytes):
        data, source = model, "model"
    else:
        try:
            data, source = Path(model).read_bytes(), str(model)
        except OSError as exc:
            raise ModelError(f"cannot read {model}: {exc.strerror or exc}") from None
    try:
        buffer = metadata_buffer(data)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    if buffer is None:
        return None
    try:
        return _parse(data, buffer)
    except (struct.error, IndexError, TypeError, KeyError, ValueError, UnicodeDecodeError,
            zipfile.BadZipFile) as exc:
        raise ModelError(f"{source}: damaged model metadata ({type(exc).__name__}: {exc})") \
            from None


def _parse(model: bytes, buffer: bytes) -> ModelMetadata:
    if not meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0):
        raise ValueError(f"{METADATA_NAME} is not a TFLite metadata flatbuffer (no "
                         f"{METADATA_IDENTIFIER.decode()} identifier)")
    metadata = meta_fb.ModelMetadata.GetRootAs(buffer, 0)
    archive = _archive(model)
    labels = contract = None
    if metadata.SubgraphMetadataLength():
        subgraph = metadata.SubgraphMetadata(0)
        labels_name = _associated_file(subgraph.OutputTensorMetadata,
                                       subgraph.OutputTensorMetadataLength(),
                                       file_type=meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS)
        contract_name = _associated_file(subgraph.InputTensorMetadata,
                                         subgraph.InputTensorMetadataLength(),
                                         name=INPUT_CONTRACT_FILE)
        for named in (labels_name, contract_name):
            if named and named not in archive:
                raise ValueError(f"{named} is named in the metadata but not packed in the model")
        if labels_name:
            labels = parse_labels(archive[labels_name].decode("utf-8"), labels_name)
        if contract_name:
            contract = json.loads(archive[contract_name].decode("utf-8"))
            if not isinstance(contract, dict):
                raise ValueError(f"{contract_name} is not a JSON object")
    return ModelMetadata(name=_text(metadata.Name()), description=_text(metadata.Description()),
                         version=_text(metadata.Version()), labels=labels,
                         input_contract=contract, files=tuple(archive))


def _associated_file(tensor, count: int, file_type: int | None = None,
                     name: str | None = None) -> str | None:
    """Name of the first associated file of the first tensor of that type (or name)."""
    for t in range(min(count, 1)):  # our models have one input and one output tensor
        meta = tensor(t)
        for f in range(meta.AssociatedFilesLength()):
            associated = meta.AssociatedFiles(f)
            found = _text(associated.Name())
            if (file_type is not None and associated.Type() == file_type) or \
                    (name is not None and found == name):
                return found
    return None


def _archive(model: bytes) -> dict[str, bytes]:
    """The associated files appended to the model as a zip archive (empty when none)."""
    if not zipfile.is_zipfile(io.BytesIO(model)):
        return {}
    with zipfile.ZipFile(io.BytesIO(model)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8") if value is not None else None
