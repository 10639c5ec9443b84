"""Proof with a client no one here wrote: MediaPipe Tasks' ImageClassifier loads the exported models.

MediaPipe runs in a virtual environment of its own (it needs opencv-contrib-python,
which clashes with our opencv-python-headless), made once and cached outside the repository:
``$EDGE_MEDIAPIPE_VENV``, default ``~/.cache/edge-toolchain/mediapipe-venv``. The
first run installs mediapipe there with pip (a minute or two); without a package
index the test is skipped, saying so.

The session's tiny MobileNetV2 is barely trained and answers the same for every
picture, so top-1 agreement on it would prove nothing about preprocessing. These
tests export, with the real ``export()``, a small CNN trained here for a few seconds
whose answers do depend on the picture, and compare MediaPipe's top-1 with our
:class:`Classifier`'s on every demo image at its own size (64 px: no resizing) and
upscaled to 160 px (both sides resize, each its own way). Each backbone's int8
(``test_mediapipe_loads_each_backbones_int8``: MobileNetV3's hard-swish included) is
checked on its scores, which must be ours, class for class, within two steps of the
uint8 output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.labels import read_labels
from edge_runtime.classifier import Classifier
from export.exporter import ExportConfig, export
from export.images import load_images
from tests.helpers import demo_images
from train import backbones
from train.saved_run import load_run

pytestmark = pytest.mark.mediapipe

MEDIAPIPE = "mediapipe>=1.2,<1.3"
SCRIPT = Path(__file__).with_name("mediapipe_classify.py")
MIN_AGREEMENT = 0.95
MAX_QUANTA = 2
"""Largest difference between MediaPipe's int8 scores and ours, in steps of the uint8 output."""
VARIANTS = ("fp32", "fp16", "int8")


def _clean_env() -> dict:
    """This environment without our venv and source tree on the path."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(args: list, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=_clean_env())


@pytest.fixture(scope="session")
def mediapipe_python() -> Path:
    """The python of a venv holding mediapipe, created (once) when missing."""
    default = Path.home() / ".cache" / "edge-toolchain" / "mediapipe-venv"
    venv = Path(os.environ.get("EDGE_MEDIAPIPE_VENV") or default)
    python = venv / "bin" / "python"
    if python.exists() and _run([python, "-c", "import mediapipe"], 300).returncode == 0:
        return python
    if not python.exists():
        done = _run([sys.executable, "-m", "venv", venv], 300)
        assert done.returncode == 0, done.stderr
    done = _run([python, "-m", "pip", "install", "--quiet", MEDIAPIPE], 1200)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"pip could not install {MEDIAPIPE} into {venv}: {reason}")
    return python


def _discriminating_model(splits, num_classes: int):
    """A small CNN trained on the train split: it gives different pictures different answers."""
    import keras

    images, kept = load_images(splits.paths("train"), (64, 64))
    images = images.astype(np.float32)
    truth = np.asarray(splits.labels["train"])[kept]
    keras.utils.set_random_seed(0)
    net = keras.Sequential([
        keras.Input((64, 64, 3)),
        keras.layers.Rescaling(1 / 127.5, offset=-1),  # in-graph, as our models normalise
        keras.layers.Conv2D(16, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(32, 3, strides=2, activation="relu"),
        keras.layers.Conv2D(64, 3, strides=2, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(num_classes, activation="softmax"),
    ])
    net.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    net.fit(images, truth, epochs=40, batch_size=16, verbose=0)
    return net


@pytest.fixture(scope="module")
def bundles(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """``export/`` folders of the small CNN: fp32, fp16, int8 (uint8 I/O); int8 with int8 I/O."""
    root = tmp_path_factory.mktemp("mediapipe")
    run = root / "cnn"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export", "checkpoints"))
    _, splits, labels = load_run(run)
    _discriminating_model(splits, len(labels)).save(run / "model.keras")
    int8_io = root / "cnn_int8_io"
    shutil.copytree(run, int8_io)
    quiet = dict(calibration_samples=40, max_accuracy_drop=100.0, progress=False)
    export(ExportConfig(run=str(run), formats=VARIANTS, **quiet))
    export(ExportConfig(run=str(int8_io), formats=("int8",), int8_io="int8", **quiet))
    return {"uint8": run / "export", "int8": int8_io / "export"}


@pytest.fixture(scope="module")
def pictures(demo_dir, tmp_path_factory) -> dict[str, list[Path]]:
    """Every demo image at its own 64 px, and upscaled to 160 px."""
    native = demo_images(demo_dir)
    folder = tmp_path_factory.mktemp("upscaled")
    upscaled = []
    for path in native:
        big = folder / f"{path.parent.name}_{path.stem}.png"
        Image.open(path).convert("RGB").resize((160, 160), Image.Resampling.BICUBIC).save(big)
        upscaled.append(big)
    return {"64px": native, "160px": upscaled}


def _mediapipe(python: Path, models: list[Path], images: list[Path]) -> dict:
    done = _run([python, SCRIPT, *models, "--", *images], 1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_mediapipe_names_the_classes_and_agrees_with_edge_classify(mediapipe_python, bundles,
                                                                    pictures, record_property):
    bundle = bundles["uint8"]
    labels = read_labels(bundle / "labels.txt")
    models = [bundle / f"model_{v}.tflite" for v in VARIANTS]
    measured = {}
    for size, images in pictures.items():
        report = _mediapipe(mediapipe_python, models, images)["models"]
        for variant, model in zip(VARIANTS, models):
            answer = report[str(model)]
            assert "error" not in answer, f"MediaPipe refused {model.name}: {answer.get('error')}"
            results = answer["results"]
            assert len(results) == len(images)
            for categories in results:
                assert sorted(c["label"] for c in categories) == sorted(labels)
                assert all(labels[c["index"]] == c["label"] for c in categories)
            ours = Classifier(model)
            our_top1 = [ours.classify_file(image, k=1)[0][0].label for image in images]
            their_top1 = [categories[0]["label"] for categories in results]
            measured[f"{variant} {size}"] = float(np.mean(
                [a == b for a, b in zip(our_top1, their_top1, strict=True)]))
            # the model must answer differently for different pictures, else agreeing is free
            assert len(set(our_top1)) >= 3, f"{variant}: the model answers {set(our_top1)} only"
    print("MediaPipe top-1 agreement with edge-classify:",
          ", ".join(f"{k} {v:.3f}" for k, v in measured.items()))
    record_property("mediapipe_agreement", measured)
    assert min(measured.values()) >= MIN_AGREEMENT, measured


def test_mediapipe_refuses_int8_io_models(mediapipe_python, bundles, pictures):
    """MediaPipe takes uint8 or float32 images only: ``--int8-io int8`` models are not for it."""
    model = bundles["int8"] / "model_int8.tflite"
    assert Classifier(model).input_dtype.name == "int8"
    report = _mediapipe(mediapipe_python, [model], pictures["64px"][:1])["models"]
    assert "uint8/float32" in report[str(model)].get("error", ""), report


@pytest.fixture(scope="module")
def backbone_bundles(tiny_run, tmp_path_factory) -> dict[str, Path]:
    """An int8 ``export/`` of each backbone at 64 px (alpha 0.35, trained for three epochs from
    scratch, the run's ``config.json`` naming the backbone)."""
    import keras

    from train import model as model_lib

    root = tmp_path_factory.mktemp("backbones")
    found = {}
    for backbone in backbones.BACKBONES:
        run = root / backbone
        shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("export", "checkpoints"))
        _, splits, labels = load_run(run)
        images, kept = load_images(splits.paths("train"), (64, 64))
        keras.utils.set_random_seed(0)
        model = model_lib.build_model(len(labels), img_size=64, alpha=0.35, weights="none",
                                      backbone=backbone)
        model_lib.compile_model(model, 3e-3)
        model.fit(images.astype(np.float32), np.asarray(splits.labels["train"])[kept],
                  epochs=3, batch_size=16, verbose=0)
        model.save(run / "model.keras")
        config = json.loads((run / "config.json").read_text())
        (run / "config.json").write_text(json.dumps({**config, "backbone": backbone}))
        export(ExportConfig(run=str(run), formats=("int8",), calibration_samples=40,
                            max_accuracy_drop=100.0, progress=False))
        found[backbone] = run / "export"
    return found


def test_mediapipe_loads_each_backbones_int8(mediapipe_python, backbone_bundles, pictures,
                                             record_property):
    """MediaPipe runs each int8 model (its own int8 kernels) and names the classes; its scores
    are ours within ``MAX_QUANTA`` steps of the uint8 output: kernels may round differently."""
    images = pictures["64px"]  # the model's own size: both sides see the same pixels
    measured = {}
    for backbone, bundle in backbone_bundles.items():
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert manifest["model"]["backbone"] == backbone
        quantum = manifest["variants"]["int8"]["output_quantization"]["scale"]
        labels = read_labels(bundle / "labels.txt")
        model = bundle / "model_int8.tflite"
        answer = _mediapipe(mediapipe_python, [model], images)["models"][str(model)]
        assert "error" not in answer, f"MediaPipe refused {backbone}: {answer.get('error')}"
        ours = Classifier(model)
        worst = 0.0
        for image, categories in zip(images, answer["results"], strict=True):
            theirs = {c["label"]: c["score"] for c in categories}
            assert sorted(theirs) == sorted(labels), backbone
            mine = {p.label: p.score for p in ours.classify_file(image, k=len(labels))[0]}
            worst = max(worst, *(abs(theirs[label] - mine[label]) / quantum for label in labels))
        measured[backbone] = round(worst, 2)
    print("MediaPipe vs edge-classify, int8 scores, largest difference in output steps:", measured)
    record_property("mediapipe_backbone_steps", measured)
    assert max(measured.values()) <= MAX_QUANTA, measured
