"""Pictures taken on the device, for training: ``writer`` (labelled JPEGs within disk limits),
``uncertain`` (frames a model found hard, saved by a thread that never slows the camera loop),
``cli`` (``edge-capture``). TensorFlow-free."""
