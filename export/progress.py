"""Progress bars that stay visible while native code's output is silenced.

The converter and the interpreter print straight to file descriptors 1 and 2, so export runs
them under :func:`edge_runtime.quiet.quiet_output`, which points fd 2 at a scratch file. A bar
created there would find no terminal and switch itself off (as the calibration bar once did);
these bars write to their own copy of the terminal's fd 2, taken before any silencing starts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img") -> Iterator:
    """A ``tqdm`` bar on the current stderr terminal, closed (and cleared) when the block ends.

    Shown only when ``enabled`` and stderr is a terminal (not in logs, CI output or tests);
    otherwise a disabled bar whose ``update`` costs nothing. Create it *outside*
    ``quiet_output`` and update it inside.
    """
    from tqdm import tqdm

    stream = None
    if enabled:
        try:
            sys.stderr.flush()
            # a duplicate of fd 2 as it is now: later redirection of fd 2 does not reach it
            stream = os.fdopen(os.dup(2), "w", encoding="utf-8", errors="replace")
        except (OSError, ValueError):  # no fd 2 (a GUI launcher): no bar
            stream = None
    # disable=None: tqdm shows the bar only when its stream is a terminal
    bar = tqdm(total=total, desc=desc, unit=unit, leave=False, file=stream or sys.stderr,
               disable=None if stream is not None else True)
    try:
        yield bar
    finally:
        bar.close()
        if stream is not None:
            stream.close()
