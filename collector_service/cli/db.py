"""The database connection the ``xray`` commands use, with errors people can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from collector_service.config import CollectorConfig
from collector_service.errors import StorageUnavailable
from collector_service.store.embedded import resolve_database


@contextmanager
def connect(config: CollectorConfig) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the configured (or embedded) database."""
    url, embedded = resolve_database(config)
    try:
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            where = ("the embedded database" if embedded
                     else "the database (--database-url / XRAY_DATABASE_URL)")
            raise StorageUnavailable(f"cannot reach {where}: {str(exc).strip()}") from exc
        with conn:
            try:
                yield conn
            except psycopg.errors.UndefinedTable as exc:
                raise StorageUnavailable(
                    "the X-Ray tables are missing: run `xray migrate` or start "
                    "`xray collector` once against this database") from exc
    finally:
        if embedded is not None:
            embedded.stop()
