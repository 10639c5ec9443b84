"""The TensorFlow-free commands, each a thin ``main(argv)`` over the library: ``classify``
(``edge-classify``) and ``capture`` (``edge-capture``); ``camera_flags`` and ``inputs`` are the
command-line pieces they share or use. No library module imports from here
(``tests/test_layers.py``)."""
