"""The exceptions of :mod:`bitacora`.

Every error of a step is a :class:`BitacoraError` carrying the one-line message the binaries print
and its ``kind`` (the ``error_kind`` of their JSON reports). Subclasses tell what failed, so a caller
can, for example, fail fast on a configuration mistake and retry a storage failure::

    try:
        bitacora.extract("2026-11-02", config="bitacora.toml")
    except bitacora.ConfigError:
        raise  # fix the settings, retrying will not help
    except bitacora.StorageError:
        ...    # the lake was unreachable: worth a retry
"""

from __future__ import annotations

__all__ = [
    "BitacoraError",
    "ConfigError",
    "SourceError",
    "StorageError",
    "CatalogError",
    "QueryError",
]


class BitacoraError(Exception):
    """A Bitácora step failed. ``kind`` is the machine-readable kind of the error."""

    message: str
    kind: str

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


class ConfigError(BitacoraError, ValueError):
    """A setting (named in the message), the configuration file or a parameter such as a date is invalid."""


class SourceError(BitacoraError):
    """The log source could not be read (a file, a CloudWatch Logs time slice)."""


class StorageError(BitacoraError):
    """The lake failed: an object could not be read, written or decrypted, or a manifest is missing."""


class CatalogError(BitacoraError):
    """The catalog (local or AWS Glue) failed."""


class QueryError(BitacoraError):
    """The query engine refused or failed a statement (for example a statement that writes)."""
