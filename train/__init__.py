"""Workstation side: image folder → splits → tf.data → two-phase fine-tuning of a MobileNet (V2, V3).

TensorFlow is imported by the modules that need it (``dataset``, ``model``,
``trainer``), never here, so ``train.splits`` stays cheap to import.
"""
