"""Pictures taken on the device, for training: ``writer`` (labelled JPEGs within disk limits),
``uncertain`` (frames a model found hard, saved by a thread that never slows the camera loop).
The command is :mod:`edge_runtime.commands.capture` (``edge-capture``). TensorFlow-free."""
