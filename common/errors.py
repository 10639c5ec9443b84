"""The errors a user can act on, and the exit code each kind of ending gives.

Every command exits with one of the codes below (the README's table is this one):

====  =================================================================================
code  meaning
====  =================================================================================
0     success
1     the work finished but a check failed: a variant lost more accuracy than allowed,
      some inputs could not be read (each one reported); or the output's reader went
      away (a broken pipe, e.g. ``| head``): stopped quietly
2     bad usage or unreadable input: a flag, a missing or broken data folder, run
      directory, model, labels file or camera
3     an unexpected internal error: one line, the traceback saved to a file (or shown
      with ``--verbose``) — a bug to report
130   interrupted (Ctrl-C or SIGTERM); what was kept is said
====  =================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """Bad input the user can fix (exit code 2): a flag, a path, unusable data or model."""


class UsageError(UserError):
    """The command line asks for something that cannot be done."""


class DataError(UserError):
    """The image folder cannot give a usable dataset."""
