"""X-Ray collector: receives OTLP spans and maps X-Ray steps and runs into Postgres tables.

Run it with ``xray collector``; embed it with :class:`CollectorThread` (synchronous
programs) or :class:`Collector` (asyncio).
"""

from __future__ import annotations

from collector_service.config import CollectorConfig
from collector_service.errors import (
    ConfigError,
    DecodeError,
    EmbeddedDatabaseError,
    MigrationError,
    Overloaded,
    StorageError,
    StorageUnavailable,
    XRayError,
)
from collector_service.migrate import apply_migrations
from collector_service.server import Collector, CollectorThread, Endpoints

__all__ = [
    "Collector",
    "CollectorConfig",
    "CollectorThread",
    "ConfigError",
    "DecodeError",
    "EmbeddedDatabaseError",
    "Endpoints",
    "MigrationError",
    "Overloaded",
    "StorageError",
    "StorageUnavailable",
    "XRayError",
    "apply_migrations",
]
