"""The Postgres writer: one row the database refuses never sinks the rest of its batch."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from collector_service.errors import ConfigError, StorageError
from collector_service.ingest.mapping import map_request
from collector_service.store.migrate import apply_migrations
from collector_service.store.postgres import PostgresStore, WriteResult
from collector_service.store.rows import RunRow, StepRow
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import request, span
from xray_otel import conventions as c


async def _write(url: str, runs: Sequence[RunRow], steps: Sequence[StepRow]) -> WriteResult:
    store = PostgresStore(url, max_size=2)
    await store.open()
    try:
        return await store.write(runs, steps)
    finally:
        await store.close()


async def _check_privileges(url: str) -> None:
    store = PostgresStore(url, max_size=1)
    await store.open()
    try:
        await store.check_privileges()
    finally:
        await store.close()


def test_refused_row_is_isolated_and_reported(db: psycopg.Connection, migrated_url: str) -> None:
    batch = map_request(request(*(span(f"s{i}", {c.STEP_TYPE: "rank", c.STEP_SEQ: i + 1})
                                  for i in range(3))), datetime.now(UTC))
    # seq 0 passes the mapping only because it is built by hand; the CHECK refuses it.
    steps = [batch.steps[0], replace(batch.steps[1], seq=0), batch.steps[2]]

    result = asyncio.run(_write(migrated_url, batch.runs, steps))
    inserted, rejected = result.steps_inserted, [r.span_id for r in result.rejected]
    assert inserted == 2 and rejected == [steps[1].span_id]
    names = db.execute("SELECT step_name FROM xray_steps ORDER BY seq").fetchall()
    assert names == [("s0",), ("s2",)]
    assert db.execute("SELECT count(*) FROM xray_runs").fetchone() == (3,)


def test_a_role_without_the_temporary_privilege_gets_an_error_naming_it(
    databases: DatabaseFactory,
) -> None:
    url = databases.create()
    apply_migrations(url)
    role_name = f"xray_no_temp_{uuid.uuid4().hex[:8]}"
    role = sql.Identifier(role_name)
    with psycopg.connect(url, autocommit=True) as admin:
        database = sql.Identifier(admin.info.dbname)
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
        admin.execute(sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(database))
        admin.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public"
                              " TO {}").format(role))
        try:
            batch = map_request(request(span("s", {c.STEP_TYPE: "rank"})), datetime.now(UTC))
            role_url = make_conninfo(url, user=role_name)
            with pytest.raises(StorageError, match="TEMPORARY on the database"):
                asyncio.run(_write(role_url, batch.runs, batch.steps))
            counts = admin.execute("SELECT (SELECT count(*) FROM xray_runs),"
                                   " (SELECT count(*) FROM xray_steps)").fetchone()
            assert counts == (0, 0)  # the transaction left nothing half-written
            # Most batches skip the staging table, so the collector checks at start.
            with pytest.raises(ConfigError, match=f"role '{role_name}'.* lacks TEMPORARY"):
                asyncio.run(_check_privileges(role_url))
        finally:
            admin.execute(sql.SQL("DROP OWNED BY {}").format(role))
            admin.execute(sql.SQL("DROP ROLE {}").format(role))
