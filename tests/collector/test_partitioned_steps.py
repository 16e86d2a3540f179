"""Migration 0007: xray_steps partitioned by day, keys that fit Citus, nothing else changed.

A database built by migrations 0001-0006 with rows in it is moved by 0007; everything an
analyst can see (rows, columns, views, comments, indexes, constraints, privileges) must be
what it was, except the unique keys, which gain run_id (and started_at on xray_steps).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format

from collector_service.ingest.events import map_events
from collector_service.ingest.proto.xray.v1 import events_pb2 as pb
from collector_service.store.migrate import apply_migrations, load_migrations
from collector_service.store.postgres import PostgresStore
from collector_service.store.rows import MappedBatch
from tests.fix_db import PARTITION_OF_ROW, DatabaseFactory

TABLES = ("xray_runs", "xray_steps", "xray_artifacts")
VIEWS = ("xray_step_funnel", "xray_reject_reasons", "xray_run_summary")
DAY1 = datetime(2025, 3, 1, 22, 30, tzinfo=UTC)


def migrations_up_to(version: str, folder: Path) -> Path:
    for migration in load_migrations():
        if migration.version <= version:
            (folder / migration.name).write_text(migration.sql)
    return folder


def fill(conn: psycopg.Connection) -> None:
    """Steps on three UTC days (one just before midnight), a running one, an artifact."""
    conn.execute(
        "INSERT INTO xray_runs (run_id, trace_id, status, started_at, ended_at)"
        " VALUES ('r1', 't1', 'ok', %s, %s)", (DAY1, DAY1 + timedelta(days=2)))
    for i, at in enumerate([DAY1, DAY1 + timedelta(hours=1), DAY1 + timedelta(days=2)]):
        conn.execute(
            "INSERT INTO xray_steps (run_id, seq, step_name, step_type, status, started_at,"
            " ended_at, trace_id, span_id, candidates_in, candidates_out, why_json)"
            " VALUES ('r1', %s, 'f', 'filter', 'ok', %s, %s, 't1', %s, 100, 3,"
            " '{\"top_reject_reasons\": {\"x\": 4}}')",
            (i + 1, at, at + timedelta(seconds=1), f"s{i}"))
    conn.execute(
        "INSERT INTO xray_steps (run_id, step_name, step_type, status, started_at, trace_id,"
        " span_id) VALUES ('r1', 'slow', 'llm', 'running', %s, 't1', 'sr')",
        (DAY1 + timedelta(minutes=5),))
    conn.execute(
        "INSERT INTO xray_artifacts (artifact_id, trace_id, span_id, run_id, attribute,"
        " size_bytes, content_type, storage) VALUES"
        " ('a1', 't1', 's0', 'r1', 'xray.artifact.page', 5, 'text/plain', 'local')")


def snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    """What analysts and the collector depend on, in comparable form."""
    one = conn.execute
    return {
        "views": one("SELECT viewname, definition FROM pg_views WHERE viewname = ANY(%s)"
                     " ORDER BY 1", (list(VIEWS),)).fetchall(),
        "comments": one(
            "SELECT c.relname, d.objsubid, d.description FROM pg_description d"
            " JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass"
            " WHERE c.relname = ANY(%s) ORDER BY 1, 2", (list(TABLES + VIEWS),)).fetchall(),
        "columns": one(
            "SELECT table_name, column_name, data_type, is_nullable, column_default,"
            " generation_expression FROM information_schema.columns"
            " WHERE table_name = ANY(%s) ORDER BY table_name, ordinal_position",
            (list(TABLES + VIEWS),)).fetchall(),
        "checks": one(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)"
            " FROM pg_constraint WHERE conrelid = ANY(%s::regclass[]) AND contype = 'c'"
            " ORDER BY 1, 2", (list(TABLES),)).fetchall(),
        "indexes": sorted((table, name, re.sub(r" ON (ONLY )?", " ON ", definition))
                          for table, name, definition in one(
            "SELECT tablename, indexname, indexdef FROM pg_indexes"
            " WHERE tablename = ANY(%s)", (list(TABLES),)).fetchall()),
        "grants": one(
            "SELECT table_name, grantee, privilege_type FROM information_schema.table_privileges"
            " WHERE table_name = ANY(%s) ORDER BY 1, 2, 3", (list(TABLES + VIEWS),)).fetchall(),
        "steps": one("SELECT * FROM xray_steps ORDER BY span_id").fetchall(),
        "funnel": one("SELECT * FROM xray_step_funnel ORDER BY run_id, position").fetchall(),
        "reasons": one("SELECT * FROM xray_reject_reasons ORDER BY position").fetchall(),
        "summary": one("SELECT * FROM xray_run_summary").fetchall(),
    }


KEY_CHANGES = {
    "xray_steps_span_key": ("UNIQUE CONSTRAINT", "(trace_id, span_id)",
                            "(run_id, trace_id, span_id, started_at)"),
}


def test_0007_moves_an_existing_database_and_changes_only_the_keys(
        databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.create()
    apply_migrations(url, migrations_up_to("0006", tmp_path))
    with psycopg.connect(url, autocommit=True) as conn:
        fill(conn)
        before = snapshot(conn)
    applied = apply_migrations(url, migrations_up_to("0007", tmp_path))
    assert applied == ["0007_partitioned_steps.sql"]
    with psycopg.connect(url, autocommit=True) as conn:
        after = snapshot(conn)
        partitions = conn.execute(
            "SELECT c.relname, count(s.part) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            f" LEFT JOIN (SELECT {PARTITION_OF_ROW} AS part FROM xray_steps) s"
            " ON s.part = c.relname"
            " WHERE i.inhparent = 'xray_steps'::regclass GROUP BY 1").fetchall()
    # Views: same definitions, same rows; data unchanged.
    for key in ("views", "columns", "checks", "grants", "steps", "funnel", "reasons",
                "summary"):
        assert after[key] == before[key], key
    # Comments: the tables' own text changed (they name the keys); nothing else.
    changed = {(rel, sub) for rel, sub, text in set(after["comments"]) ^ set(before["comments"])}
    assert changed == {("xray_steps", 0), ("xray_artifacts", 0), ("xray_steps", 20)}
    # Indexes: the same names and definitions, except the keys (and the artifacts' run_id
    # index, which the new primary key makes redundant).
    old = {name: d for _, name, d in before["indexes"]}
    new = {name: d for _, name, d in after["indexes"]}
    assert set(old) - set(new) == {"xray_artifacts_run_idx"}
    assert set(new) == set(old) - {"xray_artifacts_run_idx"}
    differing = {name for name in new if new[name] != old[name]}
    assert differing == {"xray_steps_span_key", "xray_artifacts_pkey"}
    assert "(run_id, trace_id, span_id, started_at)" in new["xray_steps_span_key"]
    assert "(run_id, trace_id, span_id, attribute)" in new["xray_artifacts_pkey"]
    # One partition per day that has rows (DAY1 is 2025-03-01 UTC; +2 days is 03-03; the
    # day in between has no rows and gets none), the days ahead, an empty DEFAULT.
    counts = dict(partitions)
    assert counts["xray_steps_p20250301"] == 3 and counts["xray_steps_p20250303"] == 1
    assert "xray_steps_p20250302" not in counts
    assert counts["xray_steps_default"] == 0
    today = datetime.now(UTC).date()
    for offset in range(-1, 8):
        assert f"xray_steps_p{(today + timedelta(days=offset)):%Y%m%d}" in counts


def test_0009_turns_empty_days_ahead_into_weeks_and_keeps_days_with_rows(
        databases: DatabaseFactory, tmp_path: Path) -> None:
    url = databases.create()
    apply_migrations(url, migrations_up_to("0008", tmp_path))
    today = datetime.now(UTC).date()
    noon = datetime(today.year, today.month, today.day, 12, tzinfo=UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO xray_steps (run_id, step_name, step_type, status,"
                     " started_at, ended_at, trace_id, span_id)"
                     " VALUES ('r', 'f', 'filter', 'ok', %s, %s, 't', 's')",
                     (noon, noon + timedelta(seconds=1)))
        before = conn.execute("SELECT * FROM xray_steps").fetchall()
    assert apply_migrations(url) == ["0009_weekly_step_partitions.sql"]
    with psycopg.connect(url, autocommit=True) as conn:
        bounds = conn.execute("SELECT partition_name, low, high FROM"
                              " xray_step_partition_bounds() ORDER BY low").fetchall()
        assert conn.execute("SELECT * FROM xray_steps").fetchall() == before
        holding = conn.execute(f"SELECT {PARTITION_OF_ROW} FROM xray_steps").fetchone()
    # Today's day partition holds a row and stays; the empty days around it became the
    # rest of their weeks, and whole weeks follow, up to a week ahead.
    assert holding == (f"xray_steps_p{today:%Y%m%d}",)
    starts = [low for _, low, _ in bounds]
    assert (f"xray_steps_p{today:%Y%m%d}", noon.replace(hour=0),
            noon.replace(hour=0) + timedelta(days=1)) in bounds
    ends = [high for _, _, high in bounds]
    assert ends[:-1] == starts[1:]  # no gap, no overlap
    assert starts[0] <= noon - timedelta(days=1) and bounds[-1][2] > noon + timedelta(days=7)
    whole_weeks = [low for _, low, high in bounds if high - low == timedelta(days=7)]
    assert whole_weeks and all(low.weekday() == 0 for low in whole_weeks)
    assert len(bounds) <= 4  # at most: the week's days before today, today, its days after, a week


def _unique_keys(conn: psycopg.Connection) -> list[tuple[str, str, list[str]]]:
    rows = conn.execute(
        "SELECT t.relname, i.relname,"
        " array_agg(a.attname ORDER BY a.attnum)"
        " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
        " JOIN pg_class t ON t.oid = x.indrelid"
        " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(x.indkey)"
        " WHERE x.indisunique AND t.relname = ANY(%s) GROUP BY 1, 2",
        (list(TABLES),)).fetchall()
    return [(table, index, list(columns)) for table, index, columns in rows]


def test_every_unique_key_fits_citus_and_partitioning(db: psycopg.Connection) -> None:
    """Citus (not installable here) requires each unique index and primary key of a table
    distributed by run_id to contain run_id; PostgreSQL requires each unique index of a
    partitioned table to contain its partition key."""
    keys = _unique_keys(db)
    assert {table for table, _, _ in keys} == set(TABLES)
    assert [index for _, index, columns in keys if "run_id" not in columns] == []
    steps = [columns for table, _, columns in keys if table == "xray_steps"]
    assert steps and all("started_at" in columns for columns in steps)
    partitioned = db.execute(
        "SELECT pg_get_partkeydef('xray_steps'::regclass)").fetchone()
    assert partitioned == ("RANGE (started_at)",)


@pytest.mark.parametrize("conflict", ["replay", "other run"])
def test_the_unique_key_refuses_only_true_duplicates(db: psycopg.Connection,
                                                     conflict: str) -> None:
    insert = ("INSERT INTO xray_steps (run_id, step_name, step_type, status, started_at,"
              " ended_at, trace_id, span_id) VALUES (%s, 'f', 'filter', 'ok', %s, %s, 't', 's')")
    now = datetime.now(UTC)
    db.execute(insert, ("r1", now, now))
    if conflict == "replay":
        with pytest.raises(psycopg.errors.UniqueViolation):
            db.execute(insert, ("r1", now, now))
    else:  # the same span ids under another run are another step
        db.execute(insert, ("r2", now, now))
        assert db.execute("SELECT count(*) FROM xray_steps").fetchone() == (2,)


# --- the write path under the new key ------------------------------------------------------

async def _write_all(url: str, batches: Sequence[MappedBatch], at_once: bool) -> list[int]:
    """Write each batch through its own store: one after another, or all at once."""
    stores = [PostgresStore(url, max_size=1) for _ in batches]
    for store in stores:
        await store.open()
    try:
        writes = [store.write(b.runs, b.steps) for store, b in zip(stores, batches, strict=True)]
        if at_once:
            results = await asyncio.gather(*writes)
        else:
            results = [await w for w in writes]
        return [r.steps_inserted for r in results]
    finally:
        for store in stores:
            await store.close()


def _events(*events: dict[str, Any]) -> MappedBatch:
    return map_events(json_format.ParseDict({"serviceName": "s", "events": list(events)},
                                            pb.EventBatch()), datetime.now(UTC))


def test_an_end_without_start_time_completes_a_start_of_the_day_before(
        db: psycopg.Connection, migrated_url: str) -> None:
    """The end's stand-in start time (its end time) falls in another partition than the
    running row's real one; the step is still one row, and a replayed end changes nothing."""
    start = {"stepStart": {"runId": "r", "stepId": "1", "name": "slow", "type": "llm",
                           "time": "2026-01-01T23:59:59Z"}}
    end = {"stepEnd": {"runId": "r", "stepId": "1", "time": "2026-01-02T00:00:03Z",
                       "candidatesIn": 10, "candidatesOut": 1}}
    db.execute("SELECT xray_create_step_partitions('2026-01-01', '2026-01-02', 1)")
    counts = asyncio.run(_write_all(migrated_url, [_events(start), _events(end),
                                                   _events(end)], at_once=False))
    assert counts == [1, 1, 0]
    rows = db.execute(f"SELECT {PARTITION_OF_ROW}, status, started_at, ended_at,"
                      " candidates_in FROM xray_steps").fetchall()
    assert rows == [("xray_steps_p20260101", "ok", datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC),
                     datetime(2026, 1, 2, 0, 0, 3, tzinfo=UTC), 10)]
    db.execute("DROP TABLE xray_steps_p20260101, xray_steps_p20260102")


@pytest.mark.parametrize("pipeline", [{}, {"pipeline": "p"}], ids=["staged", "copied"])
def test_the_same_steps_sent_to_several_collectors_at_once_are_stored_once(
        db: psycopg.Connection, migrated_url: str, pipeline: dict[str, str]) -> None:
    """Ends without times take their receive time as start time, so copies received by
    different collectors differ in started_at and the unique key cannot catch them.
    Concurrent batches of one run serialise on its xray_runs row instead: the later one
    sees the earlier one's steps. Steps naming their pipeline take the COPY route for new
    steps, the others the staging route: both are covered."""
    ends = [{"stepEnd": {"runId": "shared", "stepId": str(i), "type": "rank", **pipeline}}
            for i in range(50)]
    received = datetime.now(UTC)
    for _ in range(3):
        db.execute("TRUNCATE xray_steps, xray_runs")
        copies = [map_events(json_format.ParseDict({"events": ends}, pb.EventBatch()),
                             received + timedelta(milliseconds=n)) for n in range(4)]
        assert len({b.steps[0].started_at for b in copies}) == 4
        counts = asyncio.run(_write_all(migrated_url, copies, at_once=True))
        assert sorted(counts) == [0, 0, 0, 50]
        assert db.execute("SELECT count(*) FROM xray_steps").fetchone() == (50,)
