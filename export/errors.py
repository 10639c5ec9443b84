"""The error export raises for a run it cannot export as asked (exit code 2)."""

from __future__ import annotations

from common.errors import UserError


class ExportError(UserError):
    """Bad export settings or an untrustworthy calibration set: something the user can fix.

    A run that is missing or damaged raises :class:`common.rundir.RunError` instead.
    """
