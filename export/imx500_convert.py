"""Runs INSIDE the IMX500 side venv (TensorFlow 2.15, tf.keras 2, Sony's MCT and converter).

    python export/imx500_convert.py WORK_DIR

It imports nothing of this project (whose modules need Keras 3): it reads what
:mod:`export.imx500` wrote into ``WORK_DIR`` — ``spec.json`` (the architecture as data),
``model.weights.h5`` (written by Keras 3), ``calibration.npy`` and ``eval.npy`` (uint8 model
pixels) — and writes there:

- ``float.npy``: the rebuilt model's probabilities (with its Rescaling layer) on the first
  evaluation images, for the check that the weights came across;
- ``quantized.npy``: the MCT-quantized sensor model's probabilities on every evaluation image,
  fed what the sensor feeds;
- ``model_mct.keras`` (MCT's export) and ``converted/`` (``imxconv-tf``'s output:
  ``packerOut.zip``, ``dnnParams.xml``, the memory report) and ``converter.log``;
- ``result.json``: timings and versions. Exit 0 when all were written; otherwise a one-line
  reason on stderr.

The sensor's model starts after the Rescaling layer: the converter refuses it, and the sensor
feeds the network itself, ``(p - 128) / 128`` for a signed input of scale 1/128 (see
``input_values``), so calibration and the measurements use exactly that.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

FLOAT_CHECK_IMAGES = 16


def input_values(pixels, spec):
    """What the sensor puts into the network for uint8 ``pixels``: ``(p + offset) * scale``."""
    import numpy as np

    return ((pixels.astype(np.float32) + spec["sensor_offset"]) * spec["sensor_scale"])


def build(spec):
    """The classifier rebuilt in tf.keras 2 with the training graph's layer names."""
    import tensorflow as tf

    h, w = spec["img_size"]
    kwargs = {"input_shape": (h, w, 3), "alpha": spec["alpha"], "include_top": False,
              "weights": None}
    if spec["include_preprocessing_arg"]:
        kwargs["include_preprocessing"] = False
    base = getattr(tf.keras.applications, spec["application"])(**kwargs)
    base._name = spec["backbone_layer"]  # noqa: SLF001 - the name Keras 3 saved it under
    inputs = tf.keras.Input(shape=(h, w, 3), name="image")
    x = tf.keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")(inputs)
    x = base(x, training=False)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = tf.keras.layers.Dropout(spec["dropout"], name="dropout")(x)
    outputs = tf.keras.layers.Dense(spec["classes"], activation="softmax",
                                    name="predictions")(x)
    model = tf.keras.Model(inputs, outputs, name=spec["model_name"])
    return model


def sensor_model(model, spec):
    """``model`` without its Rescaling layer: the network the sensor runs, same layers."""
    import tensorflow as tf

    h, w = spec["img_size"]
    inputs = tf.keras.Input(shape=(h, w, 3), name="image")
    x = model.get_layer(spec["backbone_layer"])(inputs, training=False)
    for name in ("pool", "dropout", "predictions"):
        x = model.get_layer(name)(x)
    return tf.keras.Model(inputs, x, name=spec["model_name"])


def main(work: Path) -> int:
    import numpy as np

    spec = json.loads((work / "spec.json").read_text())
    started = time.time()
    import model_compression_toolkit as mct
    import tensorflow as tf
    from edgemdt_tpc import get_target_platform_capabilities

    model = build(spec)
    model.load_weights(str(work / spec["weights"]))
    evaluation = np.load(work / "eval.npy")
    probs = model.predict(evaluation[:FLOAT_CHECK_IMAGES].astype(np.float32), verbose=0)
    np.save(work / "float.npy", probs.astype(np.float32))

    net = sensor_model(model, spec)
    calibration = input_values(np.load(work / "calibration.npy"), spec)
    batch = spec["calibration_batch"]

    def representative():
        for i in range(0, len(calibration), batch):
            yield [calibration[i:i + batch]]

    tpc = get_target_platform_capabilities(tpc_version=spec["tpc_version"], device_type="imx500")
    t0 = time.time()
    quantized, _ = mct.ptq.keras_post_training_quantization(
        net, representative, target_platform_capabilities=tpc)
    quantize_seconds = time.time() - t0
    outputs = [quantized.predict(input_values(evaluation[i:i + 64], spec), verbose=0)
               for i in range(0, len(evaluation), 64)]
    np.save(work / "quantized.npy", np.concatenate(outputs).astype(np.float32))

    exported = work / "model_mct.keras"
    mct.exporter.keras_export_model(model=quantized, save_model_path=str(exported))
    t0 = time.time()
    converter = [sys.executable, str(Path(sys.executable).parent / "imxconv-tf"),
                 "-i", str(exported), "-o", str(work / "converted"), "--overwrite-output"]
    with open(work / "converter.log", "w") as log:
        done = subprocess.run(converter, stdout=log, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if done.returncode != 0:
        lines = (work / "converter.log").read_text(errors="replace").strip().splitlines()
        print(f"imxconv-tf failed (exit {done.returncode}): "
              f"{lines[-1] if lines else 'no output'}", file=sys.stderr)
        return 1
    versions = {"tensorflow": tf.__version__, "model_compression_toolkit": mct.__version__}
    (work / "result.json").write_text(json.dumps({
        "quantize_seconds": round(quantize_seconds, 2),
        "convert_seconds": round(time.time() - t0, 2),
        "seconds": round(time.time() - started, 2), "versions": versions}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
