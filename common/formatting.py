"""How numbers are written for people in tables and reports, the same in every command."""

from __future__ import annotations


def signed(value: float, digits: int = 1) -> str:
    """``+0.7``, ``−1.3`` (a true minus sign, as people read it), and ``+0.0``, never ``−0.0``."""
    text = f"{abs(value):.{digits}f}"
    return ("−" if value < 0 and float(text) else "+") + text
