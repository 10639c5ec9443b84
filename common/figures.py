"""Figures without pyplot: a bare matplotlib ``Figure`` on an Agg canvas (no GUI backend, no
global state to close), saved as PNG atomically. matplotlib is imported only when a figure is
drawn: the ``[edge]`` extra leaves it out, so a caller asks :func:`missing` first."""

from __future__ import annotations

import os

from common.fileio import atomic_write


def missing() -> str | None:
    """Why figures cannot be drawn here (matplotlib does not import), or None."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return "matplotlib is not installed"
    return None


def new_figure(width: float, height: float):
    """An empty figure of ``width`` × ``height`` inches with constrained layout."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plain_numbers():
    """A tick formatter writing 0.5 and 10 rather than 10^0 on log axes."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: f"{value:g}")


def save(figure, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write ``figure`` to ``path`` as PNG, atomically."""
    atomic_write(path, lambda tmp: figure.savefig(tmp, dpi=dpi, format="png"))
