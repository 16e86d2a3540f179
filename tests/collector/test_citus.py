"""Citus: migrating a coordinator distributes X-Ray's tables by ``run_id``; elsewhere
nothing changes.

The tests that need Citus run when ``XRAY_TEST_DATABASE_URL`` names a server that preloads
it (tests/fix_db.py then makes each test database a single-node Citus cluster, and the
whole suite runs against distributed tables; docs/scale.md says how). On plain
PostgreSQL they are skipped, and the one below checks that migrating changes nothing.
"""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format

from collector_service.cli.main import main
from collector_service.ingest.events import map_events
from collector_service.ingest.mapping import map_request
from collector_service.ingest.proto.xray.v1 import events_pb2 as pb
from collector_service.store.citus import (
    DISTRIBUTED,
    REFERENCE,
    describe_layout,
    distribute_tables,
    is_citus,
)
from collector_service.store.migrate import apply_migrations, load_migrations, migrations_dir
from collector_service.store.postgres import PostgresStore
from collector_service.store.rows import MappedBatch
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import new_trace_id, request, span
from xray_otel import conventions as c


@pytest.fixture
def citus(databases: DatabaseFactory) -> DatabaseFactory:
    if not databases.citus:
        pytest.skip("the test server does not preload Citus (XRAY_TEST_DATABASE_URL)")
    return databases


def citus_tables(url: str) -> dict[str, tuple[str, str | None, int]]:
    """Each table Citus knows: (kind, distribution column, co-location group)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name::text, citus_table_type, distribution_column, colocation_id"
            " FROM citus_tables").fetchall()
    return {name: (kind, None if column == "<none>" else column, group)
            for name, kind, column, group in rows}


def test_plain_postgresql_is_left_alone(databases: DatabaseFactory) -> None:
    if databases.citus:
        pytest.skip("the test server preloads Citus")
    url = databases.create()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        assert not is_citus(conn)
        assert distribute_tables(conn) == []
        assert describe_layout(conn) == []
        assert conn.execute(
            "SELECT count(*) FROM pg_extension WHERE extname = 'citus'").fetchone() == (0,)


def test_migrating_a_coordinator_distributes_the_tables_by_run_id(
        citus: DatabaseFactory) -> None:
    url = citus.create()
    apply_migrations(url)
    tables = citus_tables(url)
    groups = {tables[name][2] for name in DISTRIBUTED}
    for name in DISTRIBUTED:
        assert tables[name][:2] == ("distributed", "run_id"), name
    assert len(groups) == 1, "runs, steps and artifacts must be co-located"
    for name in REFERENCE:
        assert tables[name][0] == "reference", name
    # The day partitions are distributed with their parent, in the same group.
    partitions = [name for name in tables if name.startswith("xray_steps_p")]
    assert partitions and all(tables[p][2] in groups for p in partitions)
    # Migrating again finds everything distributed.
    with psycopg.connect(url, autocommit=True) as conn:
        assert distribute_tables(conn) == []
    assert apply_migrations(url) == []


def test_migrate_says_how_the_tables_are_laid_out(citus: DatabaseFactory,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = citus.create()
    assert main(["migrate", "--database-url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("applied: 0001_")
    layout = sorted(line for line in lines if line.startswith("citus: "))
    assert [line.split(",")[0] for line in layout] == [
        "citus: xray_artifacts: distributed by run_id",
        "citus: xray_auth_tokens: reference",
        "citus: xray_runs: distributed by run_id",
        "citus: xray_steps: distributed by run_id",
    ]
    assert all(line.endswith(" shards") or line.endswith(" 1 shard") for line in layout)
    # Again: nothing to apply, the same layout.
    assert main(["migrate", "--database-url", url]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[0] == "schema is up to date"
    assert sorted(again[1:]) == layout


def test_partitions_created_later_are_distributed(citus: DatabaseFactory) -> None:
    url = citus.create()
    apply_migrations(url)
    day = date(2031, 1, 15)
    with psycopg.connect(url, autocommit=True) as conn:
        created = conn.execute("SELECT xray_create_step_partitions(%s, %s, 1)",
                               (day, day)).fetchall()
    assert created == [("xray_steps_p20310115",)]
    assert citus_tables(url)["xray_steps_p20310115"][:2] == ("distributed", "run_id")


def test_a_schema_before_0007_is_not_distributed(citus: DatabaseFactory,
                                                 tmp_path: Path) -> None:
    """Its step key lacks run_id, which Citus refuses; migrating on to 0007 distributes."""
    early = tmp_path / "early"
    early.mkdir()
    for migration in load_migrations():
        if migration.version < "0007":
            shutil.copy(migrations_dir() / migration.name, early / migration.name)
    url = citus.create()
    apply_migrations(url, early)
    assert citus_tables(url) == {}
    apply_migrations(url)
    assert citus_tables(url)["xray_steps"][:2] == ("distributed", "run_id")


def _batches() -> list[MappedBatch]:
    """Every route a step takes: new steps copied, steps before their run span (no
    pipeline yet, staged), a replay, a step started and ended apart, its end replayed."""
    now = datetime.now(UTC)
    trace = new_trace_id()
    steps = [span(f"s{i}", {c.STEP_TYPE: "filter", c.RUN_ID: "r1", c.STEP_SEQ: i + 1,
                            c.STEP_CANDIDATES_IN: 100, c.STEP_CANDIDATES_OUT: 10 - i},
                  trace_id=trace) for i in range(3)]
    run = span("run", {c.RUN_PIPELINE: "p", c.RUN_ID: "r1"}, trace_id=trace)
    with_pipeline = span("t", {c.STEP_TYPE: "rank", c.RUN_ID: "r2", c.RUN_PIPELINE: "q"})

    def events(*items: dict[str, Any]) -> MappedBatch:
        return map_events(json_format.ParseDict({"serviceName": "s", "events": list(items)},
                                                pb.EventBatch()), now)

    # The end carries no start time: its stand-in one (its end time) differs from the
    # stored start's, so only the match on (run_id, trace_id, span_id) keeps it one row.
    start = {"stepStart": {"runId": "r3", "stepId": "1", "name": "slow", "type": "llm",
                           "time": (now - timedelta(seconds=5)).isoformat()}}
    end = {"stepEnd": {"runId": "r3", "stepId": "1", "time": now.isoformat(),
                       "candidatesIn": 7, "candidatesOut": 2}}
    return [map_request(request(*steps, with_pipeline), now),
            map_request(request(run, *steps[:2]), now),
            map_request(request(*steps, with_pipeline), now),
            events(start), events(end), events(end)]


async def _write(url: str, citus: bool) -> list[int]:
    store = PostgresStore(url, max_size=1)
    store._citus = citus  # the statements chosen for a Citus coordinator, on PostgreSQL
    await store.open()
    try:
        return [(await store.write(b.runs, b.steps)).steps_inserted for b in _batches()]
    finally:
        await store.close()


def _stored(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT run_id, step_name, step_type, pipeline, seq, candidates_in,"
            " candidates_out, status, ingest_warnings FROM xray_steps"
            " ORDER BY run_id, step_name").fetchall()


def test_the_citus_statements_store_what_the_postgresql_ones_do(
        databases: DatabaseFactory) -> None:
    """Run on plain PostgreSQL too, so the statements chosen on Citus are checked there."""
    if databases.citus:
        pytest.skip("PostgreSQL's own statements are refused on Citus")
    plain, as_citus = databases.create(), databases.create()
    apply_migrations(plain)
    apply_migrations(as_citus)
    counts = asyncio.run(_write(plain, citus=False))
    assert asyncio.run(_write(as_citus, citus=True)) == counts == [4, 0, 0, 1, 1, 0]
    rows = _stored(plain)
    assert rows == _stored(as_citus)
    assert [(r[0], r[1], r[3], r[7]) for r in rows] == [
        ("r1", "s0", "p", "ok"), ("r1", "s1", "p", "ok"), ("r1", "s2", "p", "ok"),
        ("r2", "t", "q", "ok"), ("r3", "slow", None, "ok")]
