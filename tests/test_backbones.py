"""The backbones: MobileNetV2, MobileNetV3-Small and MobileNetV3-Large under the same head.

The quick tests build untrained models (shapes, layer names, preprocessing once, the fine-tune
defaults, weights files, the settings' validation, a config from before the choice). The
``long`` ones take each backbone through the whole pipeline at a tiny size: training from
scratch and from a weights file the test writes, export of fp32/fp16/int8 with metadata,
edge-classify, and both benches.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from common.errors import UserError
from common.labels import read_labels
from edge_runtime.model_metadata import read_model_metadata
from tests.helpers import demo_images
from train import backbones
from train import model as model_lib
from train.config import TrainConfig

APPLICATION_NAMES = {"mobilenet_v2": "mobilenetv2_", "mobilenet_v3_small": "MobileNetV3Small",
                     "mobilenet_v3_large": "MobileNetV3Large"}
"""How the nested Keras application names itself (MobileNetV2 adds alpha and size)."""
HEAD = ["pool", "dropout", "predictions"]


def _application(backbone: str, size: int, alpha: float) -> keras.Model:
    """The bare Keras application, built here independently of ``train.model``."""
    kwargs = {} if backbone == "mobilenet_v2" else {"include_preprocessing": False}
    constructor = {"mobilenet_v2": keras.applications.MobileNetV2,
                   "mobilenet_v3_small": keras.applications.MobileNetV3Small,
                   "mobilenet_v3_large": keras.applications.MobileNetV3Large}[backbone]
    return constructor(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None,
                       **kwargs)


@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_every_backbone_takes_raw_pixels_and_preprocesses_once(backbone):
    model = model_lib.build_model(3, img_size=32, alpha=0.35, weights="none", backbone=backbone)
    base = model_lib.backbone_of(model)
    assert base.name.startswith(APPLICATION_NAMES[backbone])
    assert [layer.name for layer in model.layers] == ["image", "preprocess", base.name, *HEAD]
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 3)
    # the features at "pool" are the backbone's on x / 127.5 - 1: scaled once, not twice
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    pooled = keras.Model(model.input, model.get_layer("pool").output)(pixels)
    expected = keras.ops.mean(base(pixels / 127.5 - 1.0), axis=(1, 2))
    np.testing.assert_allclose(pooled, expected, rtol=1e-4, atol=1e-5)
    rescalings = [layer for layer in base.layers if isinstance(layer, keras.layers.Rescaling)]
    assert rescalings == []


@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_fine_tune_default_names_the_layer_the_table_says(backbone):
    spec = backbones.SPECS[backbone]
    for alpha in spec.imagenet_alphas:
        base = _application(backbone, 32, alpha)
        assert len(base.layers) == spec.layers, alpha
        assert base.layers[spec.fine_tune_at].name == spec.fine_tune_layer, alpha
    assert TrainConfig(data="d", out="o", backbone=backbone).fine_tune_at == spec.fine_tune_at


def test_fine_tune_default_is_per_backbone_and_explicit_values_stay():
    v2 = TrainConfig(data="d", out="o")
    small = TrainConfig(data="d", out="o", backbone="mobilenet_v3_small")
    assert (v2.backbone, v2.fine_tune_at) == ("mobilenet_v2", 100)
    assert small.fine_tune_at == 108 != v2.fine_tune_at
    assert TrainConfig(data="d", out="o", backbone="mobilenet_v3_small", fine_tune_at=7) \
        .fine_tune_at == 7
    # config.json records the number used: a resume reads it back unchanged
    saved = json.loads(json.dumps(small.to_dict()))
    assert saved["backbone"] == "mobilenet_v3_small" and saved["fine_tune_at"] == 108
    assert TrainConfig.from_dict(saved) == small


@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_the_demo_preset_fine_tunes_each_backbone_from_its_own_default(backbone):
    from train.cli import parse_args
    from train.demo_data import DEMO_TRAIN_SETTINGS

    args = parse_args(["--preset", "demo", "--out", "o", "--backbone", backbone])
    config = TrainConfig(**{k: v for k, v in vars(args).items()
                            if k not in ("preset", "verbose", "quiet")})
    assert config.fine_tune_at == backbones.SPECS[backbone].fine_tune_at
    assert (config.weights, config.lr) == (DEMO_TRAIN_SETTINGS["weights"], 5e-3)  # the preset's stay


def test_a_config_from_before_the_choice_is_a_mobilenet_v2_run():
    old = {"data": "d", "out": "o", "img_size": 96, "alpha": 0.5, "fine_tune_at": 40,
           "resize": "bilinear", "versions": {}}
    config = TrainConfig.from_dict(old)
    assert (config.backbone, config.fine_tune_at) == ("mobilenet_v2", 40)
    assert backbones.run_model(old) == {"backbone": "mobilenet_v2", "alpha": 0.5,
                                        "img_size": 96, "name": "MobileNetV2 0.5/96"}
    assert backbones.run_model({})["name"] == "MobileNetV2"
    assert backbones.run_model({"backbone": "mobilenet_v3_large", "alpha": 1.0,
                                "img_size": 224})["name"] == "MobileNetV3-Large 1.0/224"


@pytest.mark.parametrize("settings, message", [
    (dict(backbone="resnet50"), "--backbone resnet50: expected one of mobilenet_v2, "),
    (dict(backbone="mobilenet_v3_small", alpha=0.35), "--alpha 0.35: mobilenet_v3_small has "
                                                      "ImageNet weights for alpha 0.75, 1.0"),
    (dict(backbone="mobilenet_v3_large", alpha=1.4), "--alpha 1.4: mobilenet_v3_large"),
    (dict(img_size=64), "--img-size 64: mobilenet_v2 has ImageNet weights for 96, "),
    (dict(backbone="mobilenet_v3_small", fine_tune_at=156),
     "--fine-tune-at 156: mobilenet_v3_small has 156 layers; expected 0 to 155"),
])
def test_impossible_settings_are_named_before_training(settings, message):
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(")):
        TrainConfig(data="d", out="o", **settings).validate()


@pytest.mark.parametrize("settings", [
    dict(backbone="mobilenet_v3_small", img_size=64),  # V3: one set of ImageNet weights, any size
    dict(backbone="mobilenet_v3_large", alpha=0.75, img_size=200),
    dict(backbone="mobilenet_v3_small", alpha=0.35, weights="none"),
    dict(alpha=0.35, img_size=64, weights="none"),
])
def test_possible_settings_pass(settings):
    config = TrainConfig(data="d", out="o", **settings)
    try:
        config.validate()
    except UserError as exc:
        pytest.fail(f"{settings} refused: {exc}")
    # what validate() consults says yes too: weights to load, a layer to fine-tune from
    if config.weights == "imagenet":
        assert backbones.imagenet_problem(config.backbone, config.alpha, config.img_size) is None
    assert 0 <= config.fine_tune_at < backbones.spec(config.backbone).layers


def test_cli_rejects_an_unknown_backbone_and_impossible_weights_in_one_line(tmp_path, capsys,
                                                                             demo_dir):
    from train.cli import main

    cases = [["--backbone", "mobilenet_v4"],
             ["--backbone", "mobilenet_v3_small", "--alpha", "0.5"]]
    for extra in cases:
        assert main(["--data", str(demo_dir), "--out", str(tmp_path / "r"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("edge-train: error:") and "\n" not in err, err
        assert extra[-1] in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_weights_file_loads_into_its_backbone_and_phases_freeze_it(backbone, tmp_path):
    base = _application(backbone, 32, 0.35)
    path = tmp_path / f"{backbone}.weights.h5"
    base.save_weights(path)
    model = model_lib.build_model(3, img_size=32, alpha=0.35, weights=str(path),
                                  backbone=backbone)
    loaded = model_lib.backbone_of(model)
    for a, b in zip(base.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    head = base.output_shape[-1] * 3 + 3
    assert model_lib.count_params(model.trainable_weights) == head
    at = backbones.SPECS[backbone].fine_tune_at
    model_lib.set_phase(model, 2, at)
    expected = head + model_lib.count_params(
        w for layer in loaded.layers[at:] for w in layer.trainable_weights)
    assert model_lib.count_params(model.trainable_weights) == expected > head


@pytest.mark.parametrize("backbone, other", [("mobilenet_v3_small", "mobilenet_v2"),
                                             ("mobilenet_v2", "mobilenet_v3_large")])
def test_a_weights_file_of_another_backbone_is_refused_naming_the_backbone(backbone, other,
                                                                           tmp_path):
    path = tmp_path / "other.weights.h5"
    _application(other, 32, 0.35).save_weights(path)
    title = backbones.SPECS[backbone].title
    with pytest.raises(UserError, match=f"^--weights {path}: does not fit {title} "):
        model_lib.build_model(2, img_size=32, alpha=0.35, weights=str(path), backbone=backbone)


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small", "mobilenet_v3_large"])
def test_v3_imagenet_download_failure_names_the_backbone(backbone, monkeypatch):
    from keras.src.applications import mobilenet_v3

    # a closed local port: the real download code fails as it does offline
    monkeypatch.setattr(mobilenet_v3, "BASE_WEIGHT_PATH", "http://127.0.0.1:9/")
    with pytest.raises(model_lib.WeightsUnavailable) as info:
        model_lib.build_model(2, img_size=32, alpha=0.75, weights="imagenet", backbone=backbone)
    title = backbones.SPECS[backbone].title
    assert f"--weights FILE (a {title} backbone weights file) or --weights none" in str(info.value)


@pytest.mark.parametrize("backbone, alpha, size", [("mobilenet_v2", 0.5, 96),
                                                   ("mobilenet_v3_small", 0.75, 64),
                                                   ("mobilenet_v3_large", 1.0, 160)])
def test_the_imagenet_file_named_for_offline_machines_is_the_one_keras_fetches(
        backbone, alpha, size, monkeypatch):
    from keras.src.utils import file_utils

    asked = []

    def offline(fname, *args, **kwargs):
        asked.append(fname)
        raise Exception("offline")  # as Keras's own download error: a bare Exception

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(model_lib.WeightsUnavailable):
        model_lib.build_model(2, img_size=size, alpha=alpha, weights="imagenet", backbone=backbone)
    assert asked == [backbones.SPECS[backbone].imagenet_file.format(alpha=alpha, size=size)]


# --- each backbone through the whole pipeline (long: each trains and exports its own) ---

TINY = dict(img_size=32, alpha=0.35, batch_size=16, lr=3e-3, seed=1)
EXPORT = dict(formats=("fp32", "fp16", "int8"), calibration_samples=40, max_accuracy_drop=100.0,
              progress=False)
TINY_NAMES = {"mobilenet_v2": "MobileNetV2 0.35/32", "mobilenet_v3_small": "MobileNetV3-Small 0.35/32",
              "mobilenet_v3_large": "MobileNetV3-Large 0.35/32"}
QUICK_BENCH = ["--runs", "4", "--repeats", "2", "--warmup", "1", "--no-progress", "--no-memory"]


def _recorded(run: Path, backbone: str) -> None:
    """The run says which backbone it trained, and its saved model holds that application."""
    from train.saved_run import load_run

    assert json.loads((run / "config.json").read_text())["backbone"] == backbone
    model, _, _ = load_run(run)
    assert model_lib.backbone_of(model).name.startswith(APPLICATION_NAMES[backbone])
    assert [layer.name for layer in model.layers][-3:] == HEAD


@pytest.mark.long
@pytest.mark.parametrize("backbone", backbones.BACKBONES)
def test_backbone_from_a_weights_file_exports_classifies_and_benches(backbone, demo_dir,
                                                                      tmp_path, capfd):
    from benchmarks.cli import main as bench
    from edge_runtime.commands.classify import main as classify
    from export.exporter import ExportConfig, export
    from train.report import read_history
    from train.trainer import train

    weights = tmp_path / "backbone.weights.h5"
    _application(backbone, TINY["img_size"], TINY["alpha"]).save_weights(weights)
    run = tmp_path / "run"
    train(TrainConfig(data=str(demo_dir), out=str(run), backbone=backbone, weights=str(weights),
                      epochs=1, fine_tune_epochs=1, **TINY))
    _recorded(run, backbone)
    config = json.loads((run / "config.json").read_text())
    assert config["fine_tune_at"] == backbones.SPECS[backbone].fine_tune_at
    assert [row["phase"] for row in read_history(run / "history.csv")] == [1, 2]

    result = export(ExportConfig(run=str(run), **EXPORT))
    assert result.failures == []
    bundle = run / "export"
    manifest = json.loads((bundle / "manifest.json").read_text())
    name = TINY_NAMES[backbone]
    assert manifest["model"] == {"backbone": backbone, "alpha": TINY["alpha"],
                                 "img_size": TINY["img_size"], "name": name}
    for variant, entry in manifest["variants"].items():
        assert read_model_metadata(bundle / entry["file"]).description.startswith(
            f"{name} image classifier of 5 classes"), variant
    int8 = manifest["variants"]["int8"]
    assert int8["input_dtype"] == "uint8" and int8["max_abs_diff"] < 0.1, int8

    labels = read_labels(bundle / "labels.txt")
    images = demo_images(demo_dir)[:3]
    capfd.readouterr()
    assert classify(["--model", str(bundle / "model_int8.tflite"), "--json",
                     *map(str, images)]) == 0
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert len(lines) == len(images)
    assert all(line["top_k"][0]["label"] in labels for line in lines)

    device = tmp_path / "device"
    shutil.copytree(bundle, device)
    for target, title in ((run, f"# Benchmark of {run} ({name})"),
                          (device, f"# Device benchmark of {device} ({name})")):
        with contextlib.redirect_stdout(io.StringIO()):
            assert bench([str(target), *QUICK_BENCH]) == 0, target
        report = json.loads((target / "bench" / "report.json").read_text())
        assert report["network"] == name
        assert {"fp32", "fp16", "int8"} <= {row["model"] for row in report["rows"]}
        assert (target / "bench" / "report.md").read_text().splitlines()[0] == title
