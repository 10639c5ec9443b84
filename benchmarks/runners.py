"""The models the benchmark times, behind one interface: Keras ``predict``, compiled Keras, TFLite.

Only :meth:`Runner.run` is on the clock; handing an image to the model (:meth:`Runner.prepare`)
and reading its answer (:meth:`Runner.output`) are not, for every kind alike. Images arrive as
uint8 (H, W, 3) model pixels; outside the clock, Keras gets them as float32 and TFLite through
the edge runtime's own feed (:meth:`Classifier.tensor_from_pixels`), each as export verified it.
TensorFlow is imported only by the Keras runners, when one is created.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class Runner(ABC):
    """One model behind the steps the benchmark times: only :meth:`run` is on the clock."""

    @abstractmethod
    def prepare(self, pixels: np.ndarray) -> None:
        """Hand one image's model pixels, uint8 (H, W, 3), to the model."""

    @abstractmethod
    def run(self) -> None:
        """One inference on the prepared image (timed); the result is complete on return."""

    @abstractmethod
    def output(self) -> np.ndarray:
        """Probabilities of the last run, float32 (num_classes,) (not timed)."""

    def predict_all(self, images: np.ndarray, bar) -> np.ndarray:
        """Probabilities (N, num_classes) for a batch, through the same steps that are timed."""
        probs = []
        for pixels in images:
            self.prepare(pixels)
            self.run()
            probs.append(self.output())
            bar.update()
        return np.stack(probs)


class KerasPredict(Runner):
    """``model.predict`` on one image, the way users call it."""

    def __init__(self, model) -> None:
        self.model = model

    def prepare(self, pixels: np.ndarray) -> None:
        self._batch = np.asarray(pixels, np.float32)[np.newaxis]

    def run(self) -> None:
        # predict() returns numpy arrays: the result has left the device when it returns
        self._out = self.model.predict(self._batch, verbose=0)

    def output(self) -> np.ndarray:
        return np.asarray(self._out[0], np.float32)

    def predict_all(self, images: np.ndarray, bar) -> np.ndarray:
        # the same predict(), batched: one call per image costs ~0.1 s of overhead each,
        # minutes on a real test split, for the same probabilities
        probs = self.model.predict(np.asarray(images, np.float32), batch_size=32, verbose=0)
        bar.update(len(images))
        return np.asarray(probs, np.float32)


def gpu_present() -> bool:
    """Whether TensorFlow sees a GPU (and so runs the Keras model on it)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))


class KerasCompiled(Runner):
    """A traced ``tf.function`` around the model: Keras without predict()'s per-call overhead.

    Args:
        synchronise: wait for the device inside :meth:`run` (default: when a GPU is present).
    """

    def __init__(self, model, synchronise: bool | None = None) -> None:
        import tensorflow as tf

        self._tf = tf
        self._fn = tf.function(lambda x: model(x, training=False))
        self.synchronise = gpu_present() if synchronise is None else synchronise

    def prepare(self, pixels: np.ndarray) -> None:
        # converting to a tensor is the analogue of TFLite's set_input_tensor: not timed
        self._tensor = self._tf.constant(np.asarray(pixels, np.float32)[np.newaxis])

    def run(self) -> None:
        self._out = self._fn(self._tensor)
        if self.synchronise:
            # A GPU runs kernels asynchronously: the call returns once they are queued, so
            # the clock would stop before the work is done and Keras would look faster than
            # it is. sync_devices() blocks until every pending op has finished (TF's own
            # advice for benchmarks). On a CPU the call already returns a computed tensor,
            # and syncing would only add its overhead to the clock.
            self._tf.test.experimental.sync_devices()

    def output(self) -> np.ndarray:
        return np.asarray(self._out.numpy()[0], np.float32)


class TFLiteRunner(Runner):
    """A variant through the edge runtime's :class:`~edge_runtime.classifier.Classifier`."""

    def __init__(self, classifier) -> None:
        self.classifier = classifier

    def prepare(self, pixels: np.ndarray) -> None:
        self.classifier.set_input_tensor(self.classifier.tensor_from_pixels(pixels))

    def run(self) -> None:
        self.classifier.invoke()

    def output(self) -> np.ndarray:
        return self.classifier.output()
