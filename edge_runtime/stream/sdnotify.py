"""systemd's notification protocol (sd_notify(3)), standard library only.

The service (``deploy/edge-classify.service``: ``Type=notify``, ``WatchdogSec=``) is started once
the first frame is classified (``READY=1``), and restarted by systemd when ``WATCHDOG=1`` stops
coming for ``WatchdogSec``. ``WATCHDOG=1`` is sent from the loop that classifies frames, never
from a timer: a camera hung in a capture call (libcamera can) stops the frames, so it stops
the notifications, and systemd restarts the service. Frames the AI Camera gives before its
sensor's first answer feed it too, as the camera is alive. The one wait without frames is the
AI Camera's network upload, inside ``Picamera2.start()`` (at the first start and after each model
switch): :class:`~edge_runtime.stream.upload_watch.UploadWatch` keeps systemd informed
meanwhile (:meth:`Notifier.busy`), up to a bound. Outside systemd (no ``NOTIFY_SOCKET``) nothing
is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Datagrams to the socket ``NOTIFY_SOCKET`` names (``@name``: the abstract namespace).

    Args:
        environ: where ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are read.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec, pid = environ.get("WATCHDOG_USEC", ""), environ.get("WATCHDOG_PID", "")
        ours = not pid or pid == str(os.getpid())
        self.watchdog_s = int(usec) / 1e6 if usec.isdigit() and ours and self.address else 0.0
        """systemd's watchdog timeout; 0: no watchdog."""
        self._every_s = self.watchdog_s / 4  # well within the timeout, not a datagram a frame
        self._last = float("-inf")
        self._ready = False
        self._socket: socket.socket | None = None
        self._failed = False

    def send(self, state: str, warn: bool = True) -> bool:
        """Send ``state`` (``KEY=VALUE`` lines); False when there is no socket or it failed
        (said once in the log, unless not ``warn``)."""
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX,
                                             socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # never blocking: a message that finds systemd's queue full is dropped, not waited on
            self._socket.sendto(state.encode(), socket.MSG_DONTWAIT, self.address)
            return True
        except OSError as exc:
            if warn and not self._failed:  # once, not a line a frame
                self._failed = True
                log.warning(f"cannot notify systemd at NOTIFY_SOCKET ({exc.strerror or exc})")
            return False

    def frame_classified(self) -> None:
        """A frame was classified: ``READY=1`` the first time, then ``WATCHDOG=1`` at most
        four times per watchdog period."""
        if not self._ready:
            self._ready = True
            self.send("READY=1")
        self.camera_alive()

    def camera_alive(self) -> None:
        """A frame came but is not classified yet (the AI Camera's first frames after its start
        come without the sensor's answer): ``WATCHDOG=1`` as for a classified frame, never
        ``READY=1``."""
        if self.watchdog_s:
            now = time.monotonic()
            if now - self._last >= self._every_s:
                self._last = now
                self.send("WATCHDOG=1")

    def busy(self, seconds: float, status: str, warn: bool = True) -> None:
        """Alive but busy, with no frame to show for it (the AI Camera uploading its network):
        ``WATCHDOG=1`` (with a watchdog), ``EXTEND_TIMEOUT_USEC=`` so that neither the start
        (``TimeoutStartSec=``) nor a reload times out within ``seconds`` of this, and
        ``STATUS=status``, in one message. ``warn``: see :meth:`send`."""
        lines = [f"EXTEND_TIMEOUT_USEC={int(seconds * 1e6)}", f"STATUS={status}"]
        self.send("\n".join((["WATCHDOG=1"] if self.watchdog_s else []) + lines), warn)

    def status(self, text: str) -> None:
        """``STATUS=text`` (what ``systemctl status`` shows; empty: none)."""
        self.send(f"STATUS={text}")

    def stopping(self) -> None:
        """The run is ending (``STOPPING=1``)."""
        self.send("STOPPING=1")

    def reloading(self) -> None:
        """The camera opens again for a new model (``RELOADING=1``; the first frame classified
        after it sends ``READY=1`` again)."""
        self._ready = False
        self.send("RELOADING=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
