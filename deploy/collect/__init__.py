"""Data back from the devices (``edge-collect``): TensorFlow-free, ssh and rsync.

- :mod:`~deploy.collect.pull` — per host, in parallel: the data root copied into a staging
  folder (rsync), and with ``--prune-remote`` the pictures that arrived deleted on the device,
  each checked by its sha256 there first.
- :mod:`~deploy.collect.collection` — the staged copies taken into one folder, each distinct
  picture once (by sha256, across hosts and runs), with its index and each host's monitoring
  records.
- :mod:`~deploy.collect.drift` — ``--report``: per host, how the class mix and the confidence
  moved over time (a PNG, Markdown, JSON).
- :mod:`~deploy.collect.cli` — ``edge-collect``.

The device's side of the contract is :mod:`edge_runtime.capture.data_root`.
"""
