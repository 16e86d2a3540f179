"""The collector's public names are a promise: changing them is a deliberate act."""

from __future__ import annotations

import collector_service


def test_exported_members() -> None:
    assert sorted(collector_service.__all__) == [
        "Collector", "CollectorConfig", "CollectorThread", "ConfigError", "DecodeError",
        "EmbeddedDatabaseError", "Endpoints", "MigrationError", "Overloaded", "StorageError",
        "StorageUnavailable", "XRayError", "apply_migrations",
    ]
    for name in collector_service.__all__:
        assert getattr(collector_service, name) is not None


def test_errors_share_one_base() -> None:
    errors = [getattr(collector_service, n) for n in collector_service.__all__
              if n.endswith("Error") or n in ("Overloaded", "StorageUnavailable")]
    assert all(issubclass(e, collector_service.XRayError) for e in errors)
