"""Labelling what came back from the devices, in a browser (``edge-label``): TensorFlow-free.

- :mod:`~deploy.label.dhash` — a picture's difference hash, for grouping near-duplicates.
- :mod:`~deploy.label.pending` — the pictures of an edge-collect folder still to label: the
  model's guess and scores, most uncertain first, near-duplicates grouped; the classes and
  their keys.
- :mod:`~deploy.label.journal` — labelling, discarding and undoing as moves of files
  (linked into place, never overwriting), each journalled first, so a crash or a restart
  loses nothing and undo still works.
- :mod:`~deploy.label.server` — the page and its endpoints (the live view's address and token
  rules: :mod:`edge_runtime.live.network`); ``static/index.html``, the page.
- :mod:`~deploy.label.cli` — ``edge-label``.
"""
