"""How a stream of frames becomes results, and where the results go:

- :mod:`~edge_runtime.stream.loop`: the loops that feed a model (files one by one; a stream's
  capture, preprocessing and inference overlapped on three threads);
- :mod:`~edge_runtime.stream.camera_run`: a whole camera or video run (the source opened, the
  live view, window and writers started, the model switched while it runs);
- :mod:`~edge_runtime.stream.reload`: a new model loaded aside when the ``--model`` path is
  switched underneath (``edge-model activate``) or on SIGHUP;
- :mod:`~edge_runtime.stream.results`, :mod:`~edge_runtime.stream.summary`,
  :mod:`~edge_runtime.stream.window`: results as a table or JSON lines, what a run did, the
  preview window;
- :mod:`~edge_runtime.stream.sdnotify`: systemd's ready, watchdog and reload notifications.
"""
