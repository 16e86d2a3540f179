"""Day partitions of xray_steps created ahead: by the SQL function, the store, the collector."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread
from collector_service.store.partitions import (
    PartitionsLocked,
    create_step_partitions,
    day_partitions,
    keep_partitions_ahead,
    window,
)
from collector_service.store.postgres import PostgresStore
from tests.fix_db import PARTITION_OF_ROW

FAR = date(2040, 1, 10)  # days no other test writes


def partition_of(db: psycopg.Connection, span_id: str) -> str:
    row = db.execute(f"SELECT {PARTITION_OF_ROW} FROM xray_steps WHERE span_id = %s",
                     (span_id,)).fetchone()
    assert row is not None
    return str(row[0])


def insert_step(db: psycopg.Connection, span_id: str, at: datetime) -> None:
    db.execute("INSERT INTO xray_steps (run_id, step_name, step_type, status, started_at,"
               " ended_at, trace_id, span_id, candidates_in, candidates_out)"
               " VALUES ('r', 'f', 'filter', 'ok', %s, %s, 't', %s, 10, 1)",
               (at, at + timedelta(milliseconds=1500), span_id))


def drop_days(db: psycopg.Connection, *days: date) -> None:
    for day in days:
        db.execute(f"DROP TABLE IF EXISTS xray_steps_p{day:%Y%m%d}")


async def _create(url: str, first: date, last: date, lock_timeout_ms: int = 5000) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await create_step_partitions(conn, first, last, lock_timeout_ms)


def test_window_is_yesterday_to_a_week_ahead() -> None:
    assert window(date(2026, 3, 1)) == (date(2026, 2, 28), date(2026, 3, 8))


def test_missing_days_are_created_once_and_take_their_rows_from_default(
        db: psycopg.Connection, migrated_url: str) -> None:
    last = FAR + timedelta(days=2)
    drop_days(db, FAR, FAR + timedelta(days=1), last)
    at = datetime(FAR.year, FAR.month, FAR.day, 23, 59, 59, tzinfo=UTC)
    insert_step(db, "waiting", at)
    insert_step(db, "next-day", at + timedelta(seconds=2))
    assert partition_of(db, "waiting") == "xray_steps_default"
    before = db.execute("SELECT * FROM xray_steps ORDER BY span_id").fetchall()

    created = asyncio.run(_create(migrated_url, FAR, last))
    assert created == [f"xray_steps_p{FAR + timedelta(days=d):%Y%m%d}" for d in range(3)]
    assert partition_of(db, "waiting") == f"xray_steps_p{FAR:%Y%m%d}"
    assert partition_of(db, "next-day") == f"xray_steps_p{FAR + timedelta(days=1):%Y%m%d}"
    # Moved whole: every column, the generated ones too.
    assert db.execute("SELECT * FROM xray_steps ORDER BY span_id").fetchall() == before
    assert asyncio.run(_create(migrated_url, FAR, last)) == []
    assert [p.day for p in day_partitions(db) if FAR <= p.day <= last] == [
        FAR, FAR + timedelta(days=1), last]
    drop_days(db, FAR, FAR + timedelta(days=1), last)


def test_collectors_creating_the_same_days_at_once_create_each_once(
        db: psycopg.Connection, migrated_url: str) -> None:
    days = [FAR + timedelta(days=10 + d) for d in range(5)]
    drop_days(db, *days)
    with ThreadPoolExecutor(max_workers=4) as pool:  # four collectors at once
        results = list(pool.map(
            lambda _: asyncio.run(_create(migrated_url, days[0], days[-1])), range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 5]
    drop_days(db, *days)


def test_a_table_locked_by_a_long_query_times_out_instead_of_queueing_writes(
        db: psycopg.Connection, migrated_url: str) -> None:
    day = FAR + timedelta(days=20)
    drop_days(db, day)
    with psycopg.connect(migrated_url) as reader:
        reader.execute("SELECT count(*) FROM xray_steps")  # holds its lock until rollback
        with pytest.raises(PartitionsLocked, match="lock timeout"):
            asyncio.run(_create(migrated_url, day, day, lock_timeout_ms=200))
        reader.rollback()
    assert day not in [p.day for p in day_partitions(db)]


def test_the_background_task_retries_after_a_failure(db: psycopg.Connection,
                                                     migrated_url: str) -> None:
    day = FAR + timedelta(days=30)
    drop_days(db, day)
    calls: list[tuple[date, date]] = []
    created: list[str] = []

    async def scenario() -> None:
        store = PostgresStore(migrated_url, max_size=1)
        await store.open()

        async def create(first: date, last: date) -> list[str]:
            calls.append((first, last))
            if len(calls) == 1:
                raise psycopg.errors.UndefinedFunction("xray_create_step_partitions")
            created.extend(await store.create_step_partitions(first, last))
            return created

        task = asyncio.create_task(keep_partitions_ahead(
            create, every_s=30, retry_s=0.01, today=lambda: day - timedelta(days=7)))
        try:
            # Generous: creating nine partitions takes seconds on Citus (32 shards each).
            deadline = time.monotonic() + 60
            while not created and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await store.close()

    asyncio.run(scenario())
    assert calls[:2] == [window(day - timedelta(days=7))] * 2
    assert day in [p.day for p in day_partitions(db)]
    drop_days(db, day)


def test_a_starting_collector_creates_the_days_ahead(db: psycopg.Connection, migrated_url: str,
                                                     tmp_path: Path) -> None:
    last = window(datetime.now(UTC).date())[1]
    drop_days(db, last)
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path / "xray",
                             grpc_port=0, http_port=0)
    with CollectorThread(config):
        for _ in range(200):
            if last in [p.day for p in day_partitions(db)]:
                break
            time.sleep(0.05)
    assert last in [p.day for p in day_partitions(db)]
