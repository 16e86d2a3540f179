"""A real PostgreSQL for the tests.

``XRAY_TEST_DATABASE_URL`` names a server to use (any database on it; the tests create
their own). Without it the embedded PostgreSQL starts in a temporary directory, so the
suite passes on a machine with no database set up.

A server that preloads Citus is used as a single-node Citus cluster: each database the
tests create gets the extension, with the coordinator holding the shards, so migrating
it distributes X-Ray's tables (``collector_service.store.citus``) and every test runs
against distributed tables (docs/scale.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from collector_service.store.citus import make_single_node, server_preloads_citus
from collector_service.store.embedded import EmbeddedPostgres
from collector_service.store.migrate import apply_migrations

TABLES = ("xray_artifacts", "xray_steps", "xray_runs")
PARTITION_OF_ROW = "regexp_replace(tableoid::regclass::text, '_[0-9]+$', '')"
"""SQL: the name of the partition a row of ``xray_steps`` is in. On Citus a row's
``tableoid`` names its shard, the partition's name followed by ``_<shard id>``."""


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A URL on the test server with rights to create databases."""
    configured = os.environ.get("XRAY_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    # Not under pytest's basetemp: pytest resets its folders to mode 0700, which would
    # lock out the unprivileged user the server runs as when the tests run as root.
    data_dir = Path(tempfile.mkdtemp(prefix="xray-test-pg-"))
    data_dir.chmod(0o755)
    server = EmbeddedPostgres(data_dir)
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


class DatabaseFactory:
    """Creates empty databases on the test server and drops them at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._created: list[str] = []
        with psycopg.connect(admin_url, autocommit=True) as conn:
            self.citus = server_preloads_citus(conn)

    def create(self, prefix: str = "xray_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self._created.append(name)
        url = str(psycopg.conninfo.make_conninfo(self.admin_url, dbname=name))
        if self.citus:
            make_single_node(url)
        return url

    def drop_all(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            for name in self._created:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))


@pytest.fixture(scope="session")
def databases(pg_admin_url: str) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(pg_admin_url)
    yield factory
    factory.drop_all()


@pytest.fixture(scope="session")
def migrated_url(databases: DatabaseFactory) -> str:
    """One migrated database shared by the session; ``db`` empties it for each test."""
    url = databases.create()
    apply_migrations(url)
    return url


@pytest.fixture
def db(migrated_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the migrated database, emptied before the test."""
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)))
        yield conn
