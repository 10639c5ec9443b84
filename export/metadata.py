"""Writing TFLite model metadata into an exported model, so the ``.tflite`` alone is the model.

The metadata follows the published TFLite metadata schema
(``edge_runtime/tflite_metadata_schema/metadata_schema.fbs``), packed the way
tflite-support's ``MetadataPopulator`` packs it, which is what MediaPipe Tasks
and the other metadata readers expect:

* the metadata flatbuffer (identifier ``M001``) goes into a new buffer of the
  model, named by a ``TFLITE_METADATA`` entry in the model's ``metadata`` list;
* the associated files it names (``labels.txt``, ``input_contract.json``) are
  appended to the model file as an uncompressed zip archive, so the file is at
  once a TFLite flatbuffer and a zip.

The maintained writers cannot be used today: mediapipe 1.2.2's
``metadata_writers`` fail at import (``mediapipe.tasks.cc`` is missing from the
wheel) and tflite-support 0.4.4 needs protobuf 3.20, which TensorFlow 2.21 cannot
share. The model flatbuffer is rewritten with TensorFlow's own
``flatbuffer_utils`` (this runs on the workstation only); the device reads the
result with :mod:`edge_runtime.model_metadata`.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping

import flatbuffers

from common.labels import labels_text
from edge_runtime.model_metadata import (
    INPUT_CONTRACT_FILE,
    LABELS_FILE,
    METADATA_IDENTIFIER,
    METADATA_NAME,
)
from edge_runtime.tflite_metadata_schema import metadata_schema_generated as meta_fb
from export.formats import ExportFormat

MIN_PARSER_VERSION = "1.0.0"
"""Oldest metadata parser that understands every field written here.

tflite-support's populator computes this from the fields present
(``GetMinimumMetadataParserVersion``); everything :func:`add_metadata` writes
(image properties, normalization, stats, ``TENSOR_AXIS_LABELS`` and ``UNKNOWN``
associated files without a ``version``) is in schema 1.0.0, as the schema's
history comments show. Check it again when adding fields.
"""
AUTHOR = "edge-toolchain"
MEDIAPIPE_INPUT_DTYPES = ("uint8", "float32")
"""Image input types MediaPipe Tasks accepts; it refuses the rest (``--int8-io int8``)."""


def add_metadata(tflite: bytes, *, name: str, description: str, version: str,
                 labels: list[str], input_spec: dict, author: str | None = AUTHOR) -> bytes:
    """``tflite`` with TFLite model metadata and its associated files added.

    Args:
        tflite: a TFLite flatbuffer with one image input (1, H, W, 3) and one
            output of ``len(labels)`` scores. Metadata it already carries
            (``TFLITE_METADATA`` and any appended archive) is replaced.
        name, description, version, author: the ``ModelMetadata`` fields.
        labels: class names in output order, packed as ``labels.txt``, the
            output's ``TENSOR_AXIS_LABELS`` file.
        input_spec: the input contract (``height``, ``width``, ``color``,
            ``range``, ``resize``...: the manifest's ``input``), packed as
            ``input_contract.json``.

    Returns:
        The new model; its tensors and weights are those of ``tflite``.

    Raises:
        ValueError: the model is not a single-image-in, scores-out classifier
            matching ``labels`` and ``input_spec``.
    """
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tflite))
    subgraph = model.subgraphs[0]
    if len(model.subgraphs) != 1 or len(subgraph.inputs) != 1 or len(subgraph.outputs) != 1:
        raise ValueError("expected a model with one subgraph, one input and one output")
    image = subgraph.tensors[subgraph.inputs[0]]
    scores = subgraph.tensors[subgraph.outputs[0]]
    shape = [int(d) for d in image.shape]
    if len(shape) != 4 or shape[3] != 3:
        raise ValueError(f"expected an image input (1, H, W, 3), got {tuple(shape)}")
    if (input_spec.get("height"), input_spec.get("width")) != (shape[1], shape[2]):
        raise ValueError(f"input contract {input_spec.get('height')}x{input_spec.get('width')} "
                         f"but the model takes {shape[1]}x{shape[2]}")
    if int(scores.shape[-1]) != len(labels):
        raise ValueError(f"{len(labels)} labels but the model has {scores.shape[-1]} outputs")

    is_float = image.type == schema_fb.TensorType.FLOAT32
    metadata = _model_metadata(name=name, description=description, version=version,
                               author=author, height=shape[1], width=shape[2],
                               labels=labels, input_spec=input_spec, is_float=is_float)
    _set_metadata_buffer(model, metadata, schema_fb)
    flatbuffer = flatbuffer_utils.convert_object_to_bytearray(model)
    return _append_archive(flatbuffer, {
        LABELS_FILE: labels_text(labels).encode("utf-8"),
        INPUT_CONTRACT_FILE: (json.dumps(input_spec, indent=2) + "\n").encode("utf-8"),
    })


def add_variant_metadata(tflite: bytes, fmt: ExportFormat, *, run_name: str, version: str,
                         labels: list[str], input_spec: dict, model: str) -> bytes:
    """:func:`add_metadata` with the name and description of one exported variant; ``model``
    names the network (``train.backbones.run_model``: "MobileNetV3-Small 1.0/160")."""
    shown = ", ".join(labels[:8]) + (f" and {len(labels) - 8} more" if len(labels) > 8 else "")
    description = (f"{model} image classifier of {len(labels)} classes ({shown}), {fmt.name}: "
                   f"{fmt.description}. Input: {input_spec['height']}x{input_spec['width']} "
                   f"{input_spec.get('color', 'RGB')} pixels 0-255, resized "
                   f"{input_spec.get('resize', '')}; output: class probabilities.")
    return add_metadata(tflite, name=f"{run_name} ({fmt.name})", description=description,
                        version=version, labels=labels, input_spec=input_spec)


def mediapipe_line(input_dtypes: Mapping[str, str]) -> str:
    """The export table's last line: which variants MediaPipe Tasks' ImageClassifier loads.

    ``input_dtypes``: each variant's name → its input type (``uint8``, ``int8``, ``float32``).
    """
    loads = [n for n, dtype in input_dtypes.items() if dtype in MEDIAPIPE_INPUT_DTYPES]
    refused = [n for n in input_dtypes if n not in loads]
    line = f"MediaPipe Tasks loads: {', '.join(loads) or 'none'}"
    if refused:
        line += (f"; not {', '.join(refused)} (int8 input: MediaPipe takes uint8 or float32 "
                 "images, export with --int8-io uint8)")
    return line


def _model_metadata(*, name: str, description: str, version: str, author: str | None,
                    height: int, width: int, labels: list[str], input_spec: dict,
                    is_float: bool) -> bytes:
    """The ``ModelMetadata`` flatbuffer (identifier ``M001``)."""
    low, high = (float(v) for v in input_spec.get("range", (0, 255)))

    image = meta_fb.TensorMetadataT()
    image.name = "image"
    image.description = (f"{input_spec.get('color', 'RGB')} image, {height}x{width}, raw pixel "
                         f"values {low:g}-{high:g}: the model normalises in-graph")
    image.content = meta_fb.ContentT()
    image.content.contentPropertiesType = meta_fb.ContentProperties.ImageProperties
    image.content.contentProperties = meta_fb.ImagePropertiesT()
    image.content.contentProperties.colorSpace = meta_fb.ColorSpaceType.RGB
    image.content.contentProperties.defaultSize = meta_fb.ImageSizeT()
    image.content.contentProperties.defaultSize.width = width
    image.content.contentProperties.defaultSize.height = height
    if is_float:
        # (x - mean) / std maps what a client has (pixels 0-255) onto what the model
        # takes (the same pixels); readers such as MediaPipe refuse a float image
        # input without it. Integer inputs take the pixels as they are.
        normalization = meta_fb.ProcessUnitT()
        normalization.optionsType = meta_fb.ProcessUnitOptions.NormalizationOptions
        normalization.options = meta_fb.NormalizationOptionsT()
        normalization.options.mean = [0.0]
        normalization.options.std = [1.0]
        image.processUnits = [normalization]
    image.stats = meta_fb.StatsT()
    image.stats.min = [low]
    image.stats.max = [high]
    image.associatedFiles = [_associated_file(
        INPUT_CONTRACT_FILE, "edge-toolchain input contract: size, resize method, colour and "
        "value range of the pixels the model was trained on", meta_fb.AssociatedFileType.UNKNOWN)]

    probabilities = meta_fb.TensorMetadataT()
    probabilities.name = "probability"
    probabilities.description = f"Probabilities of the {len(labels)} classes"
    probabilities.content = meta_fb.ContentT()
    probabilities.content.contentPropertiesType = meta_fb.ContentProperties.FeatureProperties
    probabilities.content.contentProperties = meta_fb.FeaturePropertiesT()
    probabilities.stats = meta_fb.StatsT()
    probabilities.stats.min = [0.0]
    probabilities.stats.max = [1.0]
    probabilities.associatedFiles = [_associated_file(
        LABELS_FILE, "Class names, one per line in output order",
        meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS)]

    subgraph = meta_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [image]
    subgraph.outputTensorMetadata = [probabilities]

    metadata = meta_fb.ModelMetadataT()
    metadata.name = name
    metadata.description = description
    metadata.version = version
    metadata.author = author
    metadata.subgraphMetadata = [subgraph]
    metadata.minParserVersion = MIN_PARSER_VERSION

    builder = flatbuffers.Builder(0)
    builder.Finish(metadata.Pack(builder), METADATA_IDENTIFIER)
    return bytes(builder.Output())


def _associated_file(name: str, description: str, file_type: int):
    associated = meta_fb.AssociatedFileT()
    associated.name = name
    associated.description = description
    associated.type = file_type
    return associated


def _set_metadata_buffer(model, metadata: bytes, schema_fb) -> None:
    """Point the model's ``TFLITE_METADATA`` entry at a buffer holding ``metadata``."""
    buffer = schema_fb.BufferT()
    buffer.data = metadata
    model.metadata = model.metadata or []
    model.buffers = model.buffers or []
    for entry in model.metadata:
        if entry.name.decode("utf-8") == METADATA_NAME:
            model.buffers[entry.buffer] = buffer
            return
    model.buffers.append(buffer)
    entry = schema_fb.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)


def _append_archive(flatbuffer: bytes, files: dict[str, bytes]) -> bytes:
    """``flatbuffer`` followed by a zip archive of ``files``, as the populator writes it.

    Appending in zip's "a" mode to a file that is not yet a zip puts the archive
    after the existing bytes with offsets counted from the start of the file, so
    readers that do not correct for leading data find the entries too. Entries are
    stored uncompressed, as the populator stores them.
    """
    buffer = io.BytesIO(flatbuffer)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
