"""Tuning: which model for this device, from latencies measured on the device itself.

The highest layer: it may use every package below it. One module per job:

- :mod:`~tune.cli` — ``edge-tune probe`` and ``edge-tune search``
- :mod:`~tune.probe` — untrained candidates converted to int8 for the device bench
  (:mod:`benchmarks.probe_bench` times them, TensorFlow-free)
- :mod:`~tune.device_report` — reading the device's report of the candidates
- :mod:`~tune.select` — the rules, as pure functions: budget, halving, choice, Pareto front
- :mod:`~tune.config` — the search's settings and the checks made before TensorFlow starts
- :mod:`~tune.steps` — the slow steps (timing here, training, int8 accuracy), replaceable in tests
- :mod:`~tune.search` — the search: rungs, resumable state, the winner's full training
- :mod:`~tune.int8` — a candidate's int8 accuracy on the validation split (export's conversion)
- :mod:`~tune.report` — report.json, report.md and the accuracy-against-latency plot
- :mod:`~tune.e2e` — the end-to-end benchmark (``python -m tune.e2e``)
"""
