"""The AI Camera's network upload, watched: systemd kept informed and the progress shown while
``Picamera2.start()`` blocks.

The network reaches the sensor inside ``Picamera2.start()``: libcamera's ``Camera::start()``
streams the sensor on, and the kernel driver uploads loader, main firmware and network before
the first frame. That takes seconds, or minutes for a first upload after boot, with no frame to
feed systemd's watchdog. And libcamera's Python binding calls ``Camera::start()`` without
releasing the GIL (``src/py/libcamera/py_main.cpp``: no ``gil_scoped_release``), so no thread
of this process runs until it returns: the watch is a child process, forked as the upload
begins and killed when ``start()`` returns or raises (Picamera2's own progress bar is a child
process too), which systemd hears only with ``NotifyAccess=all`` (the unit has it). It stops by
itself when this process is gone, and after ``--upload-wait`` seconds: then it says so and stops
telling systemd the service is alive, for systemd to restart it.

The child writes to stderr with ``os.write``, never through a lock another thread of the parent
may have held at the fork (``logging``'s, ``sys.stderr``'s).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator

from edge_runtime.stream.sdnotify import Notifier

DEFAULT_UPLOAD_WAIT_S = 600.0
"""``--upload-wait``'s default: a first upload after boot takes minutes (Raspberry Pi: "may take
several minutes if the neural network model firmware has not been previously cached")."""
UPLOADING = "uploading the network to the AI Camera"
NOTE_AFTER_S = 1.0
"""An upload shorter than this (a network the camera has already) is not mentioned."""

log = logging.getLogger(__name__)


class UploadWatch:
    """What :class:`~edge_runtime.sources.ai_camera.Imx500Source` wraps ``Picamera2.start()``
    in: ``with watch(progress): camera.start()``, ``progress()`` telling how far the upload is
    (0 to 1, None when Picamera2 cannot tell).

    Every ``every_s`` (a quarter of systemd's watchdog period, 0.1 to 1 s) the child sends
    ``WATCHDOG=1``, ``EXTEND_TIMEOUT_USEC=`` (so neither ``TimeoutStartSec=`` at the first start
    nor a reload's timeout applies) and ``STATUS=uploading the network to the AI Camera (N %)``,
    and on a terminal it updates a line saying the same.

    Args:
        notifier: the run's systemd notifier.
        wait_s: the longest upload systemd is told about (``--upload-wait``).
    """

    def __init__(self, notifier: Notifier, wait_s: float = DEFAULT_UPLOAD_WAIT_S) -> None:
        self.notifier = notifier
        self.wait_s = wait_s
        self.every_s = min(1.0, max(0.1, notifier.watchdog_s / 4)) if notifier.watchdog_s else 1.0
        self.extend_s = max(10 * self.every_s, 10.0)
        """How long each message holds off systemd's timeouts: many ticks' worth."""

    @contextlib.contextmanager
    def __call__(self, progress: Callable[[], float | None]) -> Iterator[None]:
        started = time.monotonic()
        log.info("starting the AI Camera: its network is uploaded first unless the camera has it "
                 "(minutes, the first time after boot)")
        self.notifier.busy(self.extend_s, UPLOADING)  # from here: the child takes a moment
        tty = sys.stderr.isatty()
        sys.stdout.flush()
        sys.stderr.flush()
        parent = os.getpid()
        child = os.fork()
        if child == 0:  # the child never returns from here
            try:
                self._keep(progress, started, parent, tty)
            finally:
                os._exit(0)
        try:
            yield
        finally:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            if tty:  # the child's line, cut wherever it was
                print("\r\033[K", end="", file=sys.stderr, flush=True)
        seconds = time.monotonic() - started
        self.notifier.status("")
        if seconds > self.wait_s:
            log.warning(f"the AI Camera's network upload took {seconds:.0f} s, longer than "
                        f"--upload-wait {self.wait_s:g}")
        elif seconds >= NOTE_AFTER_S:
            log.info(f"the AI Camera's network is uploaded ({seconds:.0f} s)")

    def _keep(self, progress: Callable[[], float | None], started: float, parent: int,
              tty: bool) -> None:
        """The child: tell systemd and the terminal until killed, orphaned, or ``wait_s``."""
        asking = True
        while True:
            time.sleep(self.every_s)  # the parent has just told systemd; start() comes first
            if os.getppid() != parent:
                return
            elapsed = time.monotonic() - started
            if elapsed > self.wait_s:
                to_whom = ("no longer telling systemd the service is alive, for it to restart "
                           "the service" if self.notifier.address else "still waiting for it")
                os.write(2, f"{chr(10) if tty else ''}error: the AI Camera's network upload has "
                            f"gone on for {elapsed:.0f} s (--upload-wait {self.wait_s:g}): "
                            f"{to_whom}\n".encode())
                return
            fraction = None
            if asking:
                try:
                    fraction = progress()
                except Exception:  # Picamera2 reads debugfs, or runs sudo -n: either may fail
                    asking = False  # and is not tried again every tick
            status = (f"{UPLOADING} ({min(100, max(0, int(fraction * 100)))} %)"
                      if fraction is not None else f"{UPLOADING} ({elapsed:.0f} s)")
            self.notifier.busy(self.extend_s, status, warn=False)
            if tty:
                os.write(2, f"\r{status}\033[K".encode())
