"""Progress bars on stderr, with tqdm where it is installed and silently without it.

tqdm comes with the workstation extra; a device installed with only ``[edge]`` has none, and
the benchmark must run there all the same.
"""

from __future__ import annotations

import sys


class _NoBar:
    """What :func:`progress_bar` gives without tqdm or with bars switched off."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int = 1) -> None:
        """Nothing to draw."""


def progress_bar(total: int, desc: str, enabled: bool, unit: str = "inf"):
    """A context-managed bar with ``update(n)``; drawn only on a terminal and when tqdm imports."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    # disable=None: bars only on a terminal, not in logs and CI output
    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False, file=sys.stderr)
