"""Benchmarks: exported models measured on the machine they run on, saved as a report.

``edge-bench RUN`` (workstation, TensorFlow) times the Keras model against every TFLite
variant; ``edge-bench BUNDLE`` (device, ``[edge]`` extra only) times the variants alone on the
evaluation set the bundle carries. One module per job:

- :mod:`~benchmarks.cli` — the command; what the path holds decides which benchmark runs
- :mod:`~benchmarks.bench` — the workstation benchmark of a run (``benchmark``)
- :mod:`~benchmarks.device_bench` — the TensorFlow-free benchmark of a bundle (``bench_bundle``)
- :mod:`~benchmarks.probe_bench` — the same for ``edge-tune probe``'s untrained candidates
  (``bench_probe``)
- :mod:`~benchmarks.config` — settings, their checks, the error and result types
- :mod:`~benchmarks.bundle_reader` — a bundle's manifest, file and sha256 checks, its variants
- :mod:`~benchmarks.runners` — Keras ``predict``, compiled Keras and TFLite behind one interface
- :mod:`~benchmarks.accuracy` — accuracy and agreement with Keras, in batches of uint8 images
- :mod:`~benchmarks.timing` — warm-up, interleaved rounds, per-round medians
- :mod:`~benchmarks.memory` / :mod:`~benchmarks.memprobe` — peak memory, one process per model
- :mod:`~benchmarks.machine` — CPU, board, cores, load, versions, GPUs
- :mod:`~benchmarks.thermal` — SoC temperature and throttle flags, before and after
- :mod:`~benchmarks.report` / :mod:`~benchmarks.plots` — rows, verdicts, report.md/json, plots
- :mod:`~benchmarks.demo` — building the demo run for ``--demo``
- :mod:`~benchmarks.gpu_check` — ``make gpu-check``: the demo on an NVIDIA GPU, images/s per phase
- :mod:`~benchmarks.camera_loop` — the camera loop's stages, timed (``python -m``)
- :mod:`~benchmarks.calibration_study` — int8 against the number of calibration images, on val (``python -m``)
- :mod:`~benchmarks.feature_cache` — phase 1 on cached backbone features against end to end (``python -m``)
- :mod:`~benchmarks.soak` — a long ``--camera --loop --serve`` run with a client: RSS and open
  descriptors sampled, their slope (``python -m``)
"""
