"""Keras model → TFLite flatbuffer for each format of :data:`export.formats.FORMATS`.

The converter is set up from the format's row (weight quantization, float16, full-integer
with calibration), and :func:`selective_int8` builds the int8 variant that keeps its most
damaged layers in float. Converter output is silenced; the calibration bar still shows.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from common.progress import progress_bar, progress_timer
from common.quiet import quiet_output
from export.errors import ExportError
from export.formats import SELECTIVE, ExportFormat


def io_type(int8_io: str):
    """The TensorFlow dtype of an ``--int8-io`` choice other than float32."""
    import tensorflow as tf

    return {"uint8": tf.uint8, "int8": tf.int8}[int8_io]


def representative_dataset(calibration: np.ndarray,
                           bar=None) -> Callable[[], Iterator[list[np.ndarray]]]:
    """The converter's calibration feed: each uint8 image as a float32 batch of one, as the
    Keras model takes it; ``bar`` advances per image."""

    def dataset() -> Iterator[list[np.ndarray]]:
        for image in calibration:
            yield [image[np.newaxis].astype(np.float32)]
            if bar is not None:
                bar.update()

    return dataset


@contextmanager
def saved_model(model) -> Iterator[str]:
    """``model`` written once, into a temporary folder, as the SavedModel TFLite's converter
    reads: ``from_keras_model`` writes the same one on every call (an inference endpoint,
    ``training=False``), half of each conversion's seconds. Gone after the block."""
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="edge-export-saved-model-") as folder:
        archive = keras.export.ExportArchive()
        archive.track(model)
        signature = [tf.TensorSpec(x.shape, dtype=x.dtype, name=x.name) for x in model.inputs]
        archive.add_endpoint("serve", functools.partial(model.__call__, training=False),
                             signature if len(signature) == 1 else [signature])
        with quiet_output():  # it lists every captured variable on stdout
            archive.write_out(folder)
        yield folder


def make_converter(model, fmt: ExportFormat, calibration: np.ndarray | None, int8_io: str,
                   bar=None):
    """A ``TFLiteConverter`` set up for ``fmt`` (the table in :mod:`export.formats`), from a
    Keras model or the folder :func:`saved_model` wrote for it.

    Raises:
        ExportError: a full-integer format without calibration images.
    """
    import tensorflow as tf

    if isinstance(model, str | os.PathLike):
        converter = tf.lite.TFLiteConverter.from_saved_model(str(model))
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if fmt.optimize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if fmt.float16:
        converter.target_spec.supported_types = [tf.float16]
    if fmt.full_integer:
        if calibration is None or not len(calibration):
            raise ExportError(f"{fmt.name} needs calibration images")
        converter.representative_dataset = representative_dataset(calibration, bar)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io != "float32":
            converter.inference_input_type = converter.inference_output_type = io_type(int8_io)
    return converter


def convert(model, fmt: ExportFormat, calibration: np.ndarray | None, int8_io: str,
            progress: bool = True) -> bytes:
    """The TFLite flatbuffer of ``model`` (a Keras model, or its :func:`saved_model` folder: the
    same flatbuffer, in half the time when several formats are made) in format ``fmt``.

    A failing converter raises whatever it raised (an internal error, not the user's), with
    the tail of its silenced output attached as a note.
    """
    calibrated = fmt.full_integer and calibration is not None
    if not calibrated:  # nothing to count: the seconds it has taken
        with progress_timer(f"converting {fmt.name}", progress):
            converter = make_converter(model, fmt, calibration, int8_io)
            with quiet_output():
                return converter.convert()
    with progress_bar(len(calibration), f"calibrating {fmt.name}", progress) as bar:
        converter = make_converter(model, fmt, calibration, int8_io, bar)
        with quiet_output():
            return converter.convert()


def selective_int8(model, calibration: np.ndarray, int8_io: str, keep: list[str]) -> bytes:
    """int8 with the ``keep`` tensors' ops left in float (selective quantization).

    The debugger builds the model with float32 input and output whatever the
    converter asked, so the ``int8_io`` interface is put back afterwards, as the
    converter itself does. An end left in float (the softmax, say) stays float32.
    """
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    converter = make_converter(model, SELECTIVE, calibration, "float32")
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep)
    with quiet_output():
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative_dataset(calibration),
            debug_options=options)
        flatbuffer = debugger.get_nondebug_quantized_model()
        if int8_io == "float32":
            return flatbuffer
        return modify_model_io_type(flatbuffer, io_type(int8_io), io_type(int8_io))
