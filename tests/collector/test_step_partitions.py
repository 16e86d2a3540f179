"""Partitions of xray_steps created ahead: by the SQL function, the store, the collector.
A week each by default (Monday to Sunday, UTC), or as many days as asked."""

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
    StepPartition,
    create_step_partitions,
    keep_partitions_ahead,
    step_partitions,
    window,
)
from collector_service.store.postgres import PostgresStore
from tests.fix_db import PARTITION_OF_ROW

FAR = date(2040, 1, 10)  # a Tuesday; days no other test writes
ELSEWHERE = date(2041, 3, 6)  # a Wednesday, far from FAR's weeks


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


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


def holding(db: psycopg.Connection, day: date) -> StepPartition | None:
    """The partition that holds ``day``'s midnight, if any."""
    return next((p for p in step_partitions(db) if p.holds(midnight(day))), None)


def drop_partitions(db: psycopg.Connection, first: date, last: date) -> None:
    """Drop every partition holding any of the days ``first`` to ``last``."""
    for partition in step_partitions(db):
        if partition.start < midnight(last + timedelta(days=1)) and partition.end > midnight(first):
            db.execute(f"DROP TABLE {partition.name}")


async def _create(url: str, first: date, last: date, lock_timeout_ms: int = 5000,
                  days_per_partition: int | None = None) -> list[str]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await create_step_partitions(conn, first, last, lock_timeout_ms,
                                            days_per_partition)


def test_window_is_yesterday_to_a_week_ahead() -> None:
    assert window(date(2026, 3, 1)) == (date(2026, 2, 28), date(2026, 3, 8))


def test_missing_days_are_created_once_and_take_their_rows_from_default(
        db: psycopg.Connection, migrated_url: str) -> None:
    last = FAR + timedelta(days=2)
    drop_partitions(db, FAR, last)
    at = datetime(FAR.year, FAR.month, FAR.day, 23, 59, 59, tzinfo=UTC)
    insert_step(db, "waiting", at)
    insert_step(db, "next-day", at + timedelta(seconds=2))
    assert partition_of(db, "waiting") == "xray_steps_default"
    before = db.execute("SELECT * FROM xray_steps ORDER BY span_id").fetchall()

    created = asyncio.run(_create(migrated_url, FAR, last, days_per_partition=1))
    assert created == [f"xray_steps_p{FAR + timedelta(days=d):%Y%m%d}" for d in range(3)]
    assert partition_of(db, "waiting") == f"xray_steps_p{FAR:%Y%m%d}"
    assert partition_of(db, "next-day") == f"xray_steps_p{FAR + timedelta(days=1):%Y%m%d}"
    # Moved whole: every column, the generated ones too.
    assert db.execute("SELECT * FROM xray_steps ORDER BY span_id").fetchall() == before
    assert asyncio.run(_create(migrated_url, FAR, last, days_per_partition=1)) == []
    assert [(p.start, p.end) for p in step_partitions(db)
            if FAR <= p.start.date() <= last] == [
        (midnight(FAR + timedelta(days=d)), midnight(FAR + timedelta(days=d + 1)))
        for d in range(3)]
    drop_partitions(db, FAR, last)


def test_by_default_a_partition_holds_a_week_from_monday(db: psycopg.Connection,
                                                         migrated_url: str) -> None:
    monday, sunday = FAR - timedelta(days=1), FAR + timedelta(days=5)
    drop_partitions(db, monday, sunday)
    insert_step(db, "monday", midnight(monday))
    insert_step(db, "sunday-night", datetime(sunday.year, sunday.month, sunday.day, 23, 59, 59,
                                             tzinfo=UTC))
    created = asyncio.run(_create(migrated_url, FAR, FAR))  # a Tuesday: its week is made
    assert created == [f"xray_steps_p{monday:%Y%m%d}"]
    week = holding(db, FAR)
    assert week is not None
    assert (week.start, week.end) == (midnight(monday), midnight(monday + timedelta(days=7)))
    assert partition_of(db, "monday") == partition_of(db, "sunday-night") == week.name
    assert asyncio.run(_create(migrated_url, monday, sunday)) == []
    drop_partitions(db, monday, sunday)


def test_a_week_beside_day_partitions_takes_only_the_days_left(db: psycopg.Connection,
                                                              migrated_url: str) -> None:
    """A database moving from days to weeks: its last day partitions stay, the week they
    fall in gets partitions for the days around them, and the next week is whole."""
    monday = ELSEWHERE - timedelta(days=2)
    drop_partitions(db, monday, monday + timedelta(days=13))
    asyncio.run(_create(migrated_url, ELSEWHERE, ELSEWHERE + timedelta(days=1),
                        days_per_partition=1))  # Wednesday and Thursday
    created = asyncio.run(_create(migrated_url, monday, monday + timedelta(days=7)))
    bounds = [(p.name, p.start.date(), (p.end - p.start).days) for p in step_partitions(db)
              if monday <= p.start.date() <= monday + timedelta(days=13)]
    assert bounds == [
        (f"xray_steps_p{monday:%Y%m%d}", monday, 2),  # Monday, Tuesday
        (f"xray_steps_p{ELSEWHERE:%Y%m%d}", ELSEWHERE, 1),
        (f"xray_steps_p{ELSEWHERE + timedelta(days=1):%Y%m%d}", ELSEWHERE + timedelta(days=1), 1),
        (f"xray_steps_p{ELSEWHERE + timedelta(days=2):%Y%m%d}", ELSEWHERE + timedelta(days=2),
         3),  # Friday to Sunday
        (f"xray_steps_p{monday + timedelta(days=7):%Y%m%d}", monday + timedelta(days=7), 7),
    ]
    assert sorted(created) == sorted(name for name, _, days in bounds if days != 1)
    drop_partitions(db, monday, monday + timedelta(days=13))


def test_the_databases_setting_sets_the_width_and_a_bad_one_is_named(
        db: psycopg.Connection) -> None:
    first = ELSEWHERE + timedelta(days=60)
    drop_partitions(db, first, first + timedelta(days=3))
    db.execute("SET xray.step_partition_days = 2")  # this session only
    try:
        created = db.execute("SELECT xray_create_step_partitions(%s, %s)",
                             (first, first + timedelta(days=3))).fetchall()
        widths = {(p.end - p.start).days for p in step_partitions(db)
                  if p.name in {name for (name,) in created}}
        assert len(created) in (2, 3) and widths <= {1, 2} and 2 in widths
        for day in range(4):
            assert holding(db, first + timedelta(days=day)) is not None
        for bad in ("0", "29"):
            db.execute(f"SET xray.step_partition_days = {bad}")
            with pytest.raises(psycopg.errors.RaiseException,
                               match=f"days per partition must be 1 to 28, not {bad}"):
                db.execute("SELECT xray_create_step_partitions(%s, %s)",
                           (first + timedelta(days=30), first + timedelta(days=30)))
    finally:
        db.execute("RESET xray.step_partition_days")
        drop_partitions(db, first, first + timedelta(days=3))


def test_collectors_creating_the_same_days_at_once_create_each_once(
        db: psycopg.Connection, migrated_url: str) -> None:
    days = [FAR + timedelta(days=10 + d) for d in range(5)]  # Friday to Tuesday: two weeks
    drop_partitions(db, days[0], days[-1])
    with ThreadPoolExecutor(max_workers=4) as pool:  # four collectors at once
        results = list(pool.map(
            lambda _: asyncio.run(_create(migrated_url, days[0], days[-1])), range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, 2]
    assert all(holding(db, day) is not None for day in days)
    drop_partitions(db, days[0], days[-1])


def test_a_table_locked_by_a_long_query_times_out_instead_of_queueing_writes(
        db: psycopg.Connection, migrated_url: str) -> None:
    day = FAR + timedelta(days=20)
    drop_partitions(db, day, day)
    with psycopg.connect(migrated_url) as reader:
        reader.execute("SELECT count(*) FROM xray_steps")  # holds its lock until rollback
        with pytest.raises(PartitionsLocked, match="lock timeout"):
            asyncio.run(_create(migrated_url, day, day, lock_timeout_ms=200))
        reader.rollback()
    assert holding(db, day) is None


def test_the_background_task_retries_after_a_failure(db: psycopg.Connection,
                                                     migrated_url: str) -> None:
    day = FAR + timedelta(days=30)
    drop_partitions(db, day - timedelta(days=8), day)
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
    assert holding(db, day) is not None
    drop_partitions(db, day - timedelta(days=8), day)


def test_a_starting_collector_creates_the_days_ahead(db: psycopg.Connection, migrated_url: str,
                                                     tmp_path: Path) -> None:
    last = window(datetime.now(UTC).date())[1]
    drop_partitions(db, last, last)
    config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path / "xray",
                             grpc_port=0, http_port=0)
    with CollectorThread(config):
        for _ in range(200):
            if holding(db, last) is not None:
                break
            time.sleep(0.05)
    assert holding(db, last) is not None
