"""The Postgres writer: one row the database refuses never sinks the rest of its batch."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import psycopg

from collector_service.mapping import map_request
from collector_service.pg_store import PostgresStore
from tests.otlp_builders import request, span
from xray_otel import conventions as c


def test_refused_row_is_isolated_and_reported(db: psycopg.Connection, migrated_url: str) -> None:
    batch = map_request(request(*(span(f"s{i}", {c.STEP_TYPE: "rank", c.STEP_SEQ: i + 1})
                                  for i in range(3))), datetime.now(UTC))
    # seq 0 passes the mapping only because it is built by hand; the CHECK refuses it.
    steps = [batch.steps[0], replace(batch.steps[1], seq=0), batch.steps[2]]

    async def write() -> tuple[int, list[str]]:
        store = PostgresStore(migrated_url, max_size=2)
        await store.open()
        try:
            result = await store.write(batch.runs, steps)
        finally:
            await store.close()
        return result.steps_inserted, [r.span_id for r in result.rejected]

    inserted, rejected = asyncio.run(write())
    assert inserted == 2 and rejected == [steps[1].span_id]
    names = db.execute("SELECT step_name FROM xray_steps ORDER BY seq").fetchall()
    assert names == [("s0",), ("s2",)]
    assert db.execute("SELECT count(*) FROM xray_runs").fetchone() == (3,)
