"""Generated flatbuffers code for TFLite model metadata; see README.md (do not edit by hand).

* :mod:`.metadata_schema_generated`: the published TFLite metadata schema
  (``metadata_schema.fbs``, the one tflite-support and MediaPipe Tasks read), with the
  object API used to build it.
* :mod:`.model_schema_subset_generated`: the slice of the TFLite model schema that
  locates the metadata inside a ``.tflite`` (``Model.buffers``, ``Model.metadata``).

Both import only the ``flatbuffers`` package, so the device reads metadata without TensorFlow.
"""
