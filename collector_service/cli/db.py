"""The database the ``xray`` commands use: a connection, ``xray sql`` and ``xray db url``."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.types.json import set_json_loads

from collector_service.config import CollectorConfig
from collector_service.errors import StorageUnavailable, XRayError
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
        set_json_loads(_json_loads, conn)
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


_JSON = json.JSONDecoder()


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """jsonb values decoded as text first: the same objects as psycopg's default, a third
    faster (``xray show`` of a long run decodes some 60,000 of them)."""
    return _JSON.decode(data if isinstance(data, str) else str(data, "utf-8"))


def cmd_sql(args: argparse.Namespace, config: CollectorConfig) -> int:
    """Run psql on the configured database, or on the embedded one while psql runs."""
    psql = shutil.which("psql")
    if psql is None:
        raise XRayError("psql is not installed (PostgreSQL's client, e.g. apt install "
                        "postgresql-client); `xray db url` prints the URL for other tools")
    url, embedded = resolve_database(config)
    try:
        return subprocess.run([psql, url, *args.psql_args], check=False).returncode
    finally:
        if embedded is not None:
            embedded.stop()


def cmd_db_url(args: argparse.Namespace, config: CollectorConfig) -> int:
    """Print the database URL; for the embedded database, say when it answers."""
    if config.database_url:
        print(config.database_url)
        return 0
    url, embedded = resolve_database(config)
    try:
        print(url)
    finally:
        if embedded is not None:
            embedded.stop()
    print("xray: the embedded database answers at this URL (a Unix socket on this machine) "
          "while `xray collector` runs, or use `xray sql`", file=sys.stderr)
    return 0
