"""Errors a user can act on. The CLI prints them without a traceback and exits 2."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """Something the user can fix: a bad config key, a missing file, a malformed line."""


class ConfigError(UserError):
    """A config key that is unknown, of the wrong type, or out of range (names the key)."""


class DataError(UserError):
    """Bad input data; names the file and, where known, the line/row and the field."""

    def __init__(self, path: str | Path, reason: str, *, row: int | None = None, field: str | None = None):
        self.path, self.reason, self.row, self.field = Path(path), reason, row, field
        where = str(path)
        if row is not None:
            where += f", line {row}"
        if field is not None:
            where += f", field {field!r}"
        super().__init__(f"{where}: {reason}")


class MissingDataError(UserError):
    """The data directory (or a dataset inside it) is not there; says how to get it."""
