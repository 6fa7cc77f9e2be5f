"""Errors users see. Each carries a one-sentence message and a hint on what to do."""

from __future__ import annotations


class ShoprecError(Exception):
    """Base class: the CLI prints ``message`` and ``hint`` without a traceback."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # shown in logs and tracebacks too
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class ConfigError(ShoprecError):
    """A config file, key or override is wrong."""


class EnvironmentProblem(ShoprecError):
    """The machine lacks something shoprec needs (Java, a package, a path)."""


class InputFormatError(ShoprecError):
    """An input file is not in the format the adapter expects at all."""


class TableError(ShoprecError):
    """A Delta table operation could not be done."""


class SchemaMismatchError(TableError):
    """Data does not match the table's schema and evolution was not asked for."""


class ConcurrentWriteError(TableError):
    """Another writer committed to the table first in a way that conflicts with this write."""


class TableNotFoundError(TableError):
    """The table does not exist (yet)."""


class DataQualityError(ShoprecError):
    """A job's own accounting check failed (for example rows in != kept + quarantined)."""
