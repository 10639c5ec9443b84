"""Errors a user can fix; the CLIs print them as one line and exit 2."""


class UserError(Exception):
    """Bad input from the user: a missing folder, an impossible setting, unusable data."""


class DataError(UserError):
    """The image folder cannot give a usable dataset."""
