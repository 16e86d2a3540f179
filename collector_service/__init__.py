"""X-Ray collector: receives OTLP spans and maps X-Ray steps and runs into Postgres tables.

Run it with ``xray collector``; embed it with :class:`CollectorThread` (synchronous
programs) or :class:`Collector` (asyncio).

The package is laid out in rooms whose imports point one way::

    cli ──▶ server ──▶ ui, forward ──▶ receive ──▶ ingest ──▶ store ──▶ telemetry, config, errors

``receive`` holds the transports (OTLP/gRPC, OTLP/HTTP, ``/events``, artifacts),
``ingest`` the pure decode-and-map path, admission and artifact offloading, ``store``
everything that touches Postgres, the outage spool or artifact storage, ``telemetry``
what the collector says about itself, ``forward`` the copy sent upstream and ``ui`` the
read-only web viewer. ``tests/collector/test_layout.py`` keeps the arrows pointing one way.
Names below are imported on first use, so ``import collector_service`` is cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from collector_service.server import Collector, CollectorThread, Endpoints
    from collector_service.store.migrate import apply_migrations

_WHERE = {
    "Collector": "collector_service.server",
    "CollectorThread": "collector_service.server",
    "Endpoints": "collector_service.server",
    "CollectorConfig": "collector_service.config",
    "apply_migrations": "collector_service.store.migrate",
    **dict.fromkeys(
        ["ConfigError", "DecodeError", "EmbeddedDatabaseError", "MigrationError",
         "Overloaded", "StorageError", "StorageUnavailable", "XRayError"],
        "collector_service.errors"),
}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'collector_service' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
