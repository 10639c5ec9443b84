"""Workstation side: image folder → splits → tf.data → two-phase MobileNetV2 fine-tuning.

TensorFlow is imported by the modules that need it (``dataset``, ``model``,
``trainer``), never here, so ``train.splits`` stays cheap to import.
"""
