"""Fuzzed requests mapped and written through PostgresStore into the real test database.

Every mapped row is storable: Postgres refuses none of them (a refusal would be counted
as a rejected span, the worst allowed outcome), the stored columns are the mapped ones,
``drop_ratio`` is derived as documented, and writing the batch again changes nothing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import example, given
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from psycopg import sql

from collector_service.ingest.mapping import map_request
from collector_service.store.postgres import PostgresStore, WriteResult
from collector_service.store.rows import MappedBatch, RunRow, StepRow
from tests.fix_db import TABLES
from tests.otlp_strategies import FOUND_BY_FUZZING, ci_settings, requests

pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")
RECEIVED = datetime(2026, 1, 1, tzinfo=UTC)
STEP_COLUMNS = ("run_id", "seq", "step_name", "step_type", "candidates_in", "candidates_out",
                "why", "why_json", "input", "output", "metrics", "status", "error",
                "started_at", "ended_at", "parent_span_id", "attributes")
RUN_COLUMNS = ("pipeline", "entity", "status", "error", "started_at", "ended_at", "trace_id",
               "span_id", "service_name", "attributes")


def comparable(value: Any) -> Any:
    """``value`` with every number as a float: jsonb keeps doubles as exact decimals."""
    if isinstance(value, bool) or value is None or isinstance(value, str | datetime):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    return [comparable(item) for item in value]


async def write_twice(url: str, batch: MappedBatch) -> tuple[WriteResult, WriteResult]:
    store = PostgresStore(url, max_size=1)
    await store.open()
    try:
        first = await store.write(batch.runs, batch.steps)
        return first, await store.write(batch.runs, batch.steps)
    finally:
        await store.close()


def rows(conn: psycopg.Connection, table: str, key: tuple[str, ...],
         columns: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, Any]]:
    query = sql.SQL("SELECT {}, {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, key)),
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table))
    return {tuple(row[:len(key)]): dict(zip(columns, row[len(key):], strict=True))
            for row in conn.execute(query)}


def check_drop_ratio(conn: psycopg.Connection) -> None:
    """NULL without a usable ``candidates_in``; else ``1 - out/in``: at most 1, and in
    [0, 1] unless the step emitted more than it received."""
    for c_in, c_out, ratio in conn.execute(
            "SELECT candidates_in, candidates_out, drop_ratio FROM xray_steps"):
        if c_in is None or c_in == 0 or c_out is None:
            assert ratio is None
            continue
        assert ratio == pytest.approx(1 - c_out / c_in) and ratio <= 1
        assert ratio >= 0 or c_out > c_in


def expected(row: StepRow | RunRow, columns: tuple[str, ...]) -> dict[str, Any]:
    return {name: comparable(getattr(row, name)) for name in columns}


@ci_settings(25)
@given(requests(max_spans=3))
@example(FOUND_BY_FUZZING[0])
@example(FOUND_BY_FUZZING[1])
@example(FOUND_BY_FUZZING[2])
@example(FOUND_BY_FUZZING[3])
def test_fuzzed_rows_are_stored_as_mapped(migrated_url: str,
                                          req: ExportTraceServiceRequest) -> None:
    batch = map_request(req, RECEIVED)
    with psycopg.connect(migrated_url, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(map(sql.Identifier, TABLES))))
        first, replay = asyncio.run(write_twice(migrated_url, batch))
        assert first.rejected == () and replay.rejected == ()
        keys = Counter((s.trace_id, s.span_id) for s in batch.steps)
        assert (first.steps_inserted, replay.steps_inserted) == (len(keys), 0)
        steps = rows(conn, "xray_steps", ("trace_id", "span_id"), STEP_COLUMNS)
        assert set(steps) == set(keys)
        for step in batch.steps:
            if keys[(step.trace_id, step.span_id)] == 1:  # of duplicates, any one is kept
                stored = steps[(step.trace_id, step.span_id)]
                assert comparable(stored) == expected(step, STEP_COLUMNS)
        runs = rows(conn, "xray_runs", ("run_id",), RUN_COLUMNS)
        assert set(runs) == {(run.run_id,) for run in batch.runs}
        for run in batch.runs:
            assert comparable(runs[(run.run_id,)]) == expected(run, RUN_COLUMNS)
        check_drop_ratio(conn)
