"""Keep ``xray_steps``' partitions ahead of time, and list them for retention.

``xray_steps`` is partitioned by ``started_at``: a partition a week (Monday to Sunday,
UTC) since migration 0009, or as many days as the database's ``xray.step_partition_days``
says (a day each before it). A step whose day has no partition lands in
``xray_steps_default``, which every query that does not filter on ``started_at`` reads and
which retention can only empty row by row; so collectors make sure the days from
yesterday to :data:`DAYS_AHEAD` days ahead have partitions, at start and then every
:data:`EVERY_S` seconds. The SQL function does the work (and moves rows out of DEFAULT
into a partition it creates), under an advisory lock so several collectors can do it at
once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from collector_service.errors import StorageUnavailable
from collector_service.store.queries import load

logger = logging.getLogger(__name__)

_QUERIES = load("partitions.sql")
DAYS_AHEAD = 7
"""Partitions exist up to this many days after today (UTC)."""
EVERY_S = 3600.0
"""How often a collector checks the partitions ahead."""
RETRY_S = 60.0
"""How soon it tries again after a failure (database down, lock not granted in time)."""
LOCK_TIMEOUT_MS = 5000
"""Longest wait for the table lock that creating a partition takes."""


class PartitionsLocked(Exception):
    """``xray_steps`` stayed locked by other queries longer than the lock timeout."""


def window(today: date, days_ahead: int = DAYS_AHEAD) -> tuple[date, date]:
    """The days whose partitions should exist: yesterday to ``days_ahead`` after today."""
    return today - timedelta(days=1), today + timedelta(days=days_ahead)


def utc_today() -> date:
    return datetime.now(UTC).date()


async def create_step_partitions(conn: psycopg.AsyncConnection[Any], first_day: date,
                                 last_day: date, lock_timeout_ms: int = LOCK_TIMEOUT_MS,
                                 days_per_partition: int | None = None) -> list[str]:
    """Create the partitions missing for the days ``first_day`` to ``last_day``, in one
    transaction; return their names. ``days_per_partition`` overrides the database's
    width (tests use it). Raises :class:`PartitionsLocked` when the table lock is not
    granted within ``lock_timeout_ms`` (not the driver's error: that one is an
    ``OperationalError``, which would pass for the database being down)."""
    try:
        async with conn.transaction():
            await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{int(lock_timeout_ms)}ms")))
            cur = await conn.execute(_QUERIES["create_step_partitions"],
                                     {"first_day": first_day, "last_day": last_day,
                                      "days_per_partition": days_per_partition})
            return [row[0] for row in await cur.fetchall()]
    except psycopg.errors.LockNotAvailable as exc:
        raise PartitionsLocked(str(exc)) from exc


@dataclass(frozen=True)
class StepPartition:
    """One partition of ``xray_steps``: its name and the ``started_at`` range it holds."""

    name: str
    start: datetime
    """The first instant it holds."""
    end: datetime
    """The first instant after it: every row is older than this."""

    def holds(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def step_partitions(conn: psycopg.Connection[Any]) -> list[StepPartition]:
    """The partitions of ``xray_steps``, oldest first (DEFAULT is not one)."""
    return [StepPartition(name, start, end)
            for name, start, end in conn.execute(_QUERIES["step_partitions"]).fetchall()]


async def keep_partitions_ahead(create: Callable[[date, date], Awaitable[list[str]]],
                                every_s: float = EVERY_S, retry_s: float = RETRY_S,
                                today: Callable[[], date] = utc_today) -> None:
    """Forever: create the partitions of :func:`window`, then sleep ``every_s`` (or
    ``retry_s`` after a failure). Failures are logged, never raised: steps without a
    partition still land in DEFAULT."""
    while True:
        delay = every_s
        try:
            created = await create(*window(today()))
            if created:
                logger.info("created step partitions: %s", ", ".join(created))
        except StorageUnavailable:
            delay = retry_s  # the database watch reports the outage itself
        except PartitionsLocked:
            logger.info("step partitions: xray_steps stayed locked by other queries for "
                        "%d ms; will try again in %gs", LOCK_TIMEOUT_MS, retry_s)
            delay = retry_s
        except psycopg.Error as exc:
            logger.warning("step partitions could not be created (%s); steps of days "
                           "without one go to xray_steps_default", exc)
            delay = retry_s
        await asyncio.sleep(delay)
