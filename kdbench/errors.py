"""The user-facing error classes: printed without a traceback, exit status 2. Imports nothing heavy."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (a missing file, a bad option)."""


class DataError(Exception):
    """A data set that is missing or malformed on disk: a user-facing message, no traceback."""
