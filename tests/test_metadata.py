"""TFLite model metadata: written into every exported variant, read back without TensorFlow.

A lone ``.tflite`` names its classes and knows its input contract; the metadata
changes no output of the interpreter; labels come in the documented order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from common.fileio import sha256
from common.labels import read_labels
from edge_runtime.classifier import Classifier
from edge_runtime.commands.classify import main
from edge_runtime.image import load_image
from edge_runtime.interpreter import ModelError
from edge_runtime.manifest import Manifest
from edge_runtime.model_metadata import (
    INPUT_CONTRACT_FILE,
    LABELS_FILE,
    METADATA_NAME,
    metadata_buffer,
    read_model_metadata,
)
from edge_runtime.tflite_metadata_schema import metadata_schema_generated as meta_fb
from export.calibration import calibration_files
from export.convert import convert, saved_model
from export.formats import FORMATS
from export.images import load_images
from export.metadata import MIN_PARSER_VERSION, add_metadata, mediapipe_line
from export.table import format_table
from tests.helpers import demo_images
from train.saved_run import load_run

CONTRACT = {"height": 64, "width": 64, "channels": 3, "color": "RGB", "range": [0, 255],
            "resize": "bilinear", "dtype": "float32"}


@pytest.fixture(scope="module")
def manifest(bundle) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


@pytest.fixture(scope="module")
def plain_models(tiny_run) -> dict[str, bytes]:
    """fp32 and int8 (uint8 I/O) straight from the converter: no metadata."""
    model, splits, _labels = load_run(tiny_run)
    calibration, _ = load_images(calibration_files(splits, 16), (64, 64))
    return {name: convert(model, FORMATS[name], calibration, "uint8")
            for name in ("fp32", "int8")}


def lone_copy(model, folder):
    """``model`` (a path or bytes) as the only file of ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.tflite"
    if isinstance(model, bytes):
        path.write_bytes(model)
    else:
        shutil.copy(model, path)
    return path


def schema_metadata(path) -> meta_fb.ModelMetadataT:
    """The metadata flatbuffer of a model, unpacked with the generated object API."""
    buffer = metadata_buffer(path.read_bytes())
    assert meta_fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    return meta_fb.ModelMetadataT.InitFromObj(meta_fb.ModelMetadata.GetRootAs(buffer, 0))


def test_every_exported_variant_carries_metadata(bundle, manifest):
    labels = read_labels(bundle / "labels.txt")
    assert set(manifest["variants"]) == {"fp32", "fp16", "int8"}
    for name, entry in manifest["variants"].items():
        path = bundle / entry["file"]
        assert entry["sha256"] == sha256(path)
        found = read_model_metadata(path)
        assert found is not None, name
        assert found.labels == labels
        assert found.input_contract == manifest["input"] == CONTRACT
        assert set(found.files) == {LABELS_FILE, INPUT_CONTRACT_FILE}
        assert found.name.endswith(f"({name})") and str(len(labels)) in found.description
        assert found.version == manifest["source"]["model_sha256"][:12]

        metadata = schema_metadata(path)
        assert metadata.minParserVersion.decode() == MIN_PARSER_VERSION
        (subgraph,) = metadata.subgraphMetadata
        (image,), (scores,) = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
        props = image.content.contentProperties
        assert image.content.contentPropertiesType == meta_fb.ContentProperties.ImageProperties
        assert props.colorSpace == meta_fb.ColorSpaceType.RGB
        assert (props.defaultSize.height, props.defaultSize.width) == (64, 64)
        assert list(image.stats.min) == [0.0] and list(image.stats.max) == [255.0]
        if entry["input_dtype"] == "float32":  # pixels 0-255 in, normalised in-graph
            (unit,) = image.processUnits
            assert unit.optionsType == meta_fb.ProcessUnitOptions.NormalizationOptions
            assert list(unit.options.mean) == [0.0] and list(unit.options.std) == [1.0]
        else:
            assert not image.processUnits
        (labels_file,) = scores.associatedFiles
        assert labels_file.name.decode() == LABELS_FILE
        assert labels_file.type == meta_fb.AssociatedFileType.TENSOR_AXIS_LABELS


def test_model_schema_subset_reads_what_tensorflow_reads(bundle):
    """The hand-cut model schema keeps the full schema's slots: both find the same buffer."""
    from tensorflow.lite.python import schema_py_generated as schema_fb

    data = (bundle / "model_int8.tflite").read_bytes()
    model = schema_fb.Model.GetRootAs(data, 0)
    names = [model.Metadata(i).Name().decode() for i in range(model.MetadataLength())]
    assert METADATA_NAME in names and len(names) > 1  # beside the converter's own entries
    entry = model.Metadata(names.index(METADATA_NAME))
    expected = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    assert metadata_buffer(data) == expected


def raw_outputs(model: bytes, folder, pictures) -> np.ndarray:
    """The interpreter's output tensor for each picture, as it comes (uint8 for int8 I/O)."""
    classifier = Classifier(lone_copy(model, folder), threads=1)
    raw = []
    for picture in pictures:
        classifier.set_input_tensor(classifier.input_tensor(load_image(picture)))
        classifier.invoke()
        index = classifier.interpreter.get_output_details()[0]["index"]
        raw.append(classifier.interpreter.get_tensor(index).copy())
    return np.stack(raw)


def test_metadata_changes_no_output_of_the_interpreter(plain_models, tmp_path, demo_dir):
    pictures = demo_images(demo_dir)[::7]
    for name, plain in plain_models.items():
        with_metadata = add_metadata(plain, name="m", description="d", version="1",
                                     labels=list("abcde"), input_spec=CONTRACT)
        assert read_model_metadata(plain) is None and read_model_metadata(with_metadata)
        outputs = [raw_outputs(model, tmp_path / name / variant, pictures)
                   for variant, model in (("plain", plain), ("with", with_metadata))]
        assert outputs[0].dtype == outputs[1].dtype
        assert outputs[0].tobytes() == outputs[1].tobytes(), name  # bitwise equal


def test_one_saved_model_converts_to_the_variants_the_keras_model_does(plain_models, tiny_run,
                                                                     tmp_path, demo_dir):
    """export writes the SavedModel once for all variants: the same models as converting the
    Keras model each time (which writes it anew), and no folder left behind."""
    model, splits, _labels = load_run(tiny_run)
    calibration, _ = load_images(calibration_files(splits, 16), (64, 64))
    pictures = demo_images(demo_dir)[::7]
    with saved_model(model) as folder:
        assert (Path(folder) / "saved_model.pb").is_file()
        shared = {name: convert(folder, FORMATS[name], calibration, "uint8")
                  for name in plain_models}
    assert not Path(folder).exists()
    for name, plain in plain_models.items():
        assert len(shared[name]) == len(plain), name
        ours, theirs = (raw_outputs(m, tmp_path / name / which, pictures)
                        for which, m in (("shared", shared[name]), ("plain", plain)))
        assert ours.dtype == theirs.dtype and ours.tobytes() == theirs.tobytes(), name


def test_adding_metadata_twice_replaces_it(plain_models):
    once = add_metadata(plain_models["fp32"], name="a", description="d", version="1",
                        labels=list("abcde"), input_spec=CONTRACT)
    twice = add_metadata(once, name="b", description="d", version="2", labels=list("vwxyz"),
                         input_spec=CONTRACT)
    found = read_model_metadata(twice)
    assert (found.name, found.version, found.labels) == ("b", "2", list("vwxyz"))
    assert len(twice) == len(once)  # one metadata buffer, one archive: nothing piles up
    # a label is any printable name: one a line in the model's labels.txt, spaces kept
    spaced = ["golden retriever", "crème brûlée", "日本酒", "no. 2", "tasse à café"]
    found = read_model_metadata(add_metadata(twice, name="c", description="d", version="3",
                                             labels=spaced, input_spec=CONTRACT))
    assert found.labels == spaced


def test_lone_model_classifies_with_class_names(capfd, bundle, demo_dir, tmp_path):
    labels = read_labels(bundle / "labels.txt")
    picture = demo_images(demo_dir)[0]
    for name in ("fp32", "int8"):
        lone = lone_copy(bundle / f"model_{name}.tflite", tmp_path / name)
        code = main(["--model", str(lone), "--json", "--top-k", "5", str(picture)])
        out, err = capfd.readouterr()
        assert code == 0, err
        alone = json.loads(out)["top_k"]
        main(["--model", str(bundle / f"model_{name}.tflite"), "--json", "--top-k", "5",
              str(picture)])
        in_bundle = json.loads(capfd.readouterr().out)["top_k"]
        assert sorted(p["label"] for p in alone) == sorted(labels)
        assert alone == in_bundle


def test_labels_order_flag_then_beside_then_metadata_then_manifest(bundle, plain_models,
                                                                   tmp_path):
    embedded = read_labels(bundle / "labels.txt")
    lone = lone_copy(bundle / "model_fp32.tflite", tmp_path / "lone")
    assert Classifier(lone).labels == embedded
    (tmp_path / "lone" / "manifest.json").write_text(json.dumps(
        {"input": CONTRACT, "labels": [f"manifest{i}" for i in range(5)]}))
    assert Classifier(lone).labels == embedded  # the model's own metadata beats the manifest
    (tmp_path / "lone" / "labels.txt").write_text("".join(f"beside{i}\n" for i in range(5)))
    assert Classifier(lone).labels == [f"beside{i}" for i in range(5)]
    flag = tmp_path / "flag.txt"
    flag.write_text("".join(f"flag{i}\n" for i in range(5)))
    assert Classifier(lone, labels_path=flag).labels == [f"flag{i}" for i in range(5)]

    plain = lone_copy(plain_models["fp32"], tmp_path / "plain")
    assert Classifier(plain).labels == [str(i) for i in range(5)]
    shutil.copy(tmp_path / "lone" / "manifest.json", tmp_path / "plain")
    assert Classifier(plain).labels == [f"manifest{i}" for i in range(5)]


def test_input_contract_comes_from_metadata_without_a_manifest(plain_models, tmp_path):
    nearest = add_metadata(plain_models["fp32"], name="m", description="d", version="1",
                           labels=list("abcde"), input_spec={**CONTRACT, "resize": "nearest"})
    lone = lone_copy(nearest, tmp_path / "lone")
    assert Classifier(lone).resize_method == "nearest"
    (tmp_path / "lone" / "manifest.json").write_text(json.dumps({"input": CONTRACT}))
    assert Classifier(lone).resize_method == "bilinear"  # the bundle's manifest comes first

    with pytest.raises(ValueError, match="input contract 32x32 but the model takes 64x64"):
        add_metadata(plain_models["fp32"], name="m", description="d", version="1",
                     labels=list("abcde"), input_spec={**CONTRACT, "height": 32, "width": 32})
    with pytest.raises(ValueError, match="3 labels but the model has 5 outputs"):
        add_metadata(plain_models["fp32"], name="m", description="d", version="1",
                     labels=list("abc"), input_spec=CONTRACT)


def test_damaged_metadata_is_one_line_and_exit_2(capfd, bundle, demo_dir, tmp_path):
    data = (bundle / "model_int8.tflite").read_bytes()
    lone = lone_copy(data[:-40], tmp_path / "cut")  # the archive's directory is cut off
    with pytest.raises(ModelError, match="damaged model metadata"):
        read_model_metadata(lone)
    code = main(["--model", str(lone), str(demo_images(demo_dir)[0])])
    err = capfd.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and "damaged model metadata" in err
    with pytest.raises(ModelError, match="not a TFLite model"):
        read_model_metadata(b"PK\x03\x04 not a model")


def test_export_table_says_which_variants_mediapipe_loads(manifest):
    assert format_table(Manifest.from_json(manifest)).splitlines()[-1] == \
        "MediaPipe Tasks loads: fp32, fp16, int8"
    int8_io = {"fp32": "float32", "int8": "int8"}
    assert mediapipe_line(int8_io) == ("MediaPipe Tasks loads: fp32; not int8 (int8 input: "
                                       "MediaPipe takes uint8 or float32 images, export with "
                                       "--int8-io uint8)")
