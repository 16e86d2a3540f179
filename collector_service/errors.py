"""The collector's error tree.

    XRayError                      base of everything the collector raises on purpose
    ├── ConfigError                a bad setting; names the variable or flag
    ├── MigrationError             a migration failed or an applied file was edited
    ├── DecodeError                a payload that is not an OTLP export request
    ├── StorageError               the database cannot be written or read
    │   └── StorageUnavailable     transient: the caller should retry later
    ├── SpoolFull                  the outage spool is full, disabled, or its disk failed
    ├── Overloaded                 too many requests or bytes in flight: retry after a pause
    ├── ShuttingDown               the collector is stopping: retry (at another replica)
    ├── Unauthenticated            no accepted bearer token: not retryable as is
    ├── NotFound                   a run or artifact asked for by id does not exist
    └── EmbeddedDatabaseError      the embedded PostgreSQL could not be started

Driver errors are wrapped once, at the store boundary, with ``raise ... from exc``.
"""

from __future__ import annotations


class XRayError(Exception):
    """Base class of the collector's own errors."""


class ConfigError(XRayError):
    """A configuration value is missing or malformed."""


class MigrationError(XRayError):
    """The schema could not be brought up to date."""


class DecodeError(XRayError):
    """The payload is not a decodable OTLP ExportTraceServiceRequest."""


class StorageError(XRayError):
    """Postgres rejected an operation for a reason retrying will not fix."""


class StorageUnavailable(StorageError):
    """Postgres is unreachable or overloaded; retrying later may succeed."""


class SpoolFull(XRayError):
    """The outage spool cannot take another request: it is full, disabled, or its disk failed."""


class Overloaded(XRayError):
    """Too much in flight; the client should retry after ``retry_after_s``."""

    def __init__(self, retry_after_s: float, why: str = "too many requests in flight") -> None:
        super().__init__(f"collector overloaded ({why}); retry in {retry_after_s:g}s")
        self.retry_after_s = retry_after_s


class ShuttingDown(XRayError):
    """The collector is stopping; the client should retry, here later or at another replica."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"collector is shutting down; retry in {retry_after_s:g}s")
        self.retry_after_s = retry_after_s


class Unauthenticated(XRayError):
    """The request carries no bearer token this collector accepts."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class NotFound(XRayError):
    """The run or artifact asked for does not exist; commands exit with status 1."""


class EmbeddedDatabaseError(XRayError):
    """The embedded PostgreSQL server could not be initialised or started."""
