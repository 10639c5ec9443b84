"""Progress bars for long work: on a terminal only, visible while native output is silenced,
and absent (not an error) where tqdm is not installed.

The converter and the interpreter print straight to file descriptors 1 and 2, so the commands
run them under :func:`common.quiet.quiet_output`, which points fd 2 at a scratch file. A
bar created there would find no terminal and switch itself off (as the calibration bar once
did); these bars write to their own copy of the terminal's fd 2, taken when the bar is made.
tqdm comes with both extras (it is pure Python): the device bench shows its bars on a Pi too.
Where it is missing all the same, the work runs without bars.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator


class _NoBar:
    """The bar when none is drawn: ``update`` costs nothing."""

    def update(self, n: int = 1) -> None:
        """Nothing to draw."""


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img",
                 bar_format: str | None = None) -> Iterator:
    """A ``tqdm`` bar on the current stderr terminal, closed (and cleared) when the block ends.

    Shown only when ``enabled``, tqdm is installed and stderr is a terminal (not in logs, CI
    output or tests). Create it *outside* ``quiet_output`` and update it inside.
    """
    if not enabled:
        yield _NoBar()
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield _NoBar()
        return
    try:
        sys.stderr.flush()
        # a duplicate of fd 2 as it is now: later redirection of fd 2 does not reach it
        stream = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
    except (OSError, ValueError):  # no fd 2 (a GUI launcher): no bar
        yield _NoBar()
        return
    # disable=None: tqdm shows the bar only when its stream is a terminal
    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream, disable=None,
               bar_format=bar_format)
    try:
        yield bar
    finally:
        bar.close()
        stream.close()


@contextlib.contextmanager
def progress_timer(desc: str, enabled: bool = True, every: float = 0.5) -> Iterator[None]:
    """For one long step with no count to show (a conversion): ``desc`` and the seconds it has
    taken so far, redrawn every ``every`` seconds until the block ends, then cleared. Shown
    where :func:`progress_bar` would be."""
    with progress_bar(0, desc, enabled, bar_format="{desc}: {elapsed}") as bar:
        if isinstance(bar, _NoBar) or bar.disable:
            yield
            return
        done = threading.Event()

        def redraw() -> None:
            while not done.wait(every):
                bar.refresh()

        thread = threading.Thread(target=redraw, name="progress-timer", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
