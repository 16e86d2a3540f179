"""Write mapped batches to Postgres: one transaction per export request.

Runs and artifacts are written with one statement per table (rows as JSON or arrays); steps,
the bulk, go by ``COPY`` (``store.steps``): new ones straight into ``xray_steps``, the rest
through a staging table and one ``INSERT ... SELECT`` that merges them with what is stored.
If Postgres rejects the batch because of one row's data, the batch is written again row
by row, each in a savepoint and through the staging route, so one bad span never sinks
the others. Connection failures and timeouts become :class:`StorageUnavailable`, which
the receivers turn into a retryable OTLP status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from collector_service.errors import ConfigError, StorageError, StorageUnavailable
from collector_service.store.availability import DatabaseWatch, first_line
from collector_service.store.citus import QUERIES as CITUS_QUERIES
from collector_service.store.partitions import create_step_partitions
from collector_service.store.queries import load
from collector_service.store.rows import (
    ArtifactRef,
    RejectedSpan,
    RunRow,
    StepRow,
    adjustments_json,
    compact_json,
)
from collector_service.store.steps import write_steps
from collector_service.store.tokens import ManagedTokens, read_managed_tokens

logger = logging.getLogger(__name__)

_QUERIES = load("ingest.sql")
_RETRYABLE_TX = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
_TX_ATTEMPTS = 3
_BACKGROUND: set[asyncio.Task[None]] = set()
_DATA_ERRORS = (psycopg.DataError, psycopg.IntegrityError, psycopg.errors.ProgramLimitExceeded)


@dataclass(frozen=True)
class WriteResult:
    """What a write changed: new step rows, and rows Postgres refused."""

    steps_inserted: int
    rejected: tuple[RejectedSpan, ...] = ()


@dataclass(frozen=True)
class ArtifactInfo:
    """What Postgres knows of an artifact id (from any row that references it)."""

    artifact_id: str
    size_bytes: int
    content_type: str
    stored: bool
    downgrade_reason: str | None
    preview: str


class PostgresStore:
    """Owns the connection pool and writes batches through it.

    A :class:`DatabaseWatch` guards every call: while the database is unreachable calls
    fail at once with :class:`StorageUnavailable`, and when it answers again the store
    starts over with a fresh pool.
    """

    def __init__(self, conninfo: str, max_size: int = 8, timeout_s: float = 10.0,
                 on_availability: Callable[[bool], None] = lambda up: None) -> None:
        self._conninfo = conninfo
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._pool: AsyncConnectionPool | None = None
        self._citus: bool | None = None  # found on the first write (store.citus)
        self.watch = DatabaseWatch(conninfo, on_down=self._drop_pool, on_up=self._new_pool,
                                   on_change=on_availability)

    @property
    def available(self) -> bool:
        return self.watch.up

    def connections_in_use(self) -> int:
        if self._pool is None:
            return 0
        stats = self._pool.get_stats()
        return int(stats.get("pool_size", 0)) - int(stats.get("pool_available", 0))

    async def open(self) -> None:
        await self._new_pool()
        self.watch.start()

    async def close(self) -> None:
        await self.watch.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _new_pool(self) -> None:
        pool = AsyncConnectionPool(self._conninfo, min_size=1, max_size=self._max_size,
                                   timeout=self._timeout_s, open=False,
                                   kwargs={"autocommit": True})
        await pool.open(wait=False)
        old, self._pool = self._pool, pool
        if old is not None:
            self._close_later(old)

    async def _drop_pool(self) -> None:
        """Close the pool of a database that went away: its waiters fail at once."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._close_later(pool)

    @staticmethod
    def _close_later(pool: AsyncConnectionPool) -> None:
        task = asyncio.get_running_loop().create_task(pool.close(timeout=1.0))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection; an unreachable database is :class:`StorageUnavailable`."""
        pool = self._pool
        if pool is None or not self.watch.up:
            raise StorageUnavailable(f"database unavailable: {self.watch.reason}")
        try:
            async with pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self.watch.report_failure(exc)
            raise StorageUnavailable(f"database unavailable: {first_line(exc)}") from exc

    async def check(self) -> None:
        """Raise :class:`StorageUnavailable` unless the database answers."""
        async with self._connection() as conn:
            await conn.execute("SELECT 1")

    async def check_privileges(self) -> None:
        """Raise :class:`ConfigError` if the role cannot create the temporary staging table
        that replayed steps go through: most batches never need it, so without this check
        the first replay would be the first to fail. An unreachable database is left to
        the availability watch."""
        try:
            async with self._connection() as conn:
                cur = await conn.execute(_QUERIES["role_can_stage"])
                row = await cur.fetchone()
        except StorageUnavailable:
            return
        if row is not None and not row[0]:
            raise ConfigError(
                f"the database role {row[1]!r} of the database URL lacks TEMPORARY on database"
                f" {row[2]!r}: the collector stages replayed steps in a temporary table"
                f' (GRANT TEMPORARY ON DATABASE "{row[2]}" TO "{row[1]}")')

    async def managed_tokens(self) -> ManagedTokens:
        """The tokens managed with ``xray tokens``: active hashes, revoked count."""
        async with self._connection() as conn:
            return await read_managed_tokens(conn)

    async def create_step_partitions(self, first_day: date, last_day: date) -> list[str]:
        """Create the missing partitions of ``xray_steps`` (see ``store.partitions``)."""
        async with self._connection() as conn:
            return await create_step_partitions(conn, first_day, last_day)

    async def artifact_info(self, key: str) -> ArtifactInfo | None:
        """What any row says of artifact ``key`` (a stored copy beats a summary), or None."""
        async with self._connection() as conn:
            cur = await conn.execute(_QUERIES["artifact_info"], {"artifact_id": key})
            row = await cur.fetchone()
        return None if row is None else ArtifactInfo(*row)

    async def write(self, runs: Sequence[RunRow], steps: Sequence[StepRow],
                    artifacts: Sequence[ArtifactRef] = ()) -> WriteResult:
        """Write everything in one transaction; commit before returning."""
        if not runs and not steps:
            return WriteResult(0)
        for attempt in range(1, _TX_ATTEMPTS + 1):
            try:
                return await self._write_once(runs, steps, artifacts)
            except _RETRYABLE_TX:
                if attempt == _TX_ATTEMPTS:
                    raise StorageUnavailable("write kept conflicting with others") from None
                logger.info("write conflicted with another transaction; retrying")
            except _DATA_ERRORS as exc:
                logger.warning("batch refused (%s); writing span by span", exc)
                return await self._write_isolated(runs, steps, artifacts)
        raise AssertionError("unreachable")

    async def _write_once(self, runs: Sequence[RunRow], steps: Sequence[StepRow],
                          artifacts: Sequence[ArtifactRef]) -> WriteResult:
        try:
            async with self._connection() as conn, conn.transaction():
                inserted = await _write_rows(conn, runs, steps, artifacts,
                                             citus=await self._is_citus(conn))
            return WriteResult(inserted)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StorageError(
                "the collector's database role lacks a privilege (it needs to write the"
                f" xray_* tables and TEMPORARY on the database): {exc}") from exc
        except psycopg.ProgrammingError as exc:
            raise StorageError(f"schema mismatch (run `xray migrate`?): {exc}") from exc

    async def _write_isolated(self, runs: Sequence[RunRow], steps: Sequence[StepRow],
                              artifacts: Sequence[ArtifactRef]) -> WriteResult:
        inserted, rejected = 0, []
        by_span: dict[tuple[str, str | None], list[ArtifactRef]] = defaultdict(list)
        for artifact in artifacts:
            by_span[(artifact.trace_id, artifact.span_id)].append(artifact)
        async with self._connection() as conn, conn.transaction():
            citus = await self._is_citus(conn)
            for run in runs:
                try:
                    async with conn.transaction():
                        await _write_rows(conn, [run], [], by_span[(run.trace_id, run.span_id)],
                                          copy_new=False, citus=citus)
                except _DATA_ERRORS as exc:
                    rejected.append(RejectedSpan(run.trace_id, run.span_id or "",
                                                 f"run {run.run_id!r}: {first_line(exc)}"))
            for step in steps:
                try:
                    async with conn.transaction():
                        inserted += await _write_rows(
                            conn, [], [step], by_span[(step.trace_id, step.span_id)],
                            copy_new=False, citus=citus)
                except _DATA_ERRORS as exc:
                    rejected.append(RejectedSpan(step.trace_id, step.span_id, first_line(exc)))
        return WriteResult(inserted, tuple(rejected))

    async def _is_citus(self, conn: psycopg.AsyncConnection[Any]) -> bool:
        """Whether the database is a Citus coordinator: some statements differ there."""
        if self._citus is None:
            cur = await conn.execute(CITUS_QUERIES["citus_installed"])
            row = await cur.fetchone()
            self._citus = bool(row and row[0])
        return self._citus


async def _write_rows(conn: psycopg.AsyncConnection[Any], runs: Sequence[RunRow],
                      steps: Sequence[StepRow], artifacts: Sequence[ArtifactRef],
                      *, copy_new: bool = True, citus: bool = False) -> int:
    inserted = 0
    async with conn.cursor() as cur:
        if runs:
            await cur.execute(_QUERIES["upsert_runs"], _runs_json(runs))
        if steps or any(run.from_run_span for run in runs):
            inserted = await write_steps(cur, runs, steps, copy_new=copy_new, citus=citus)
        if artifacts:
            await cur.execute(_QUERIES["insert_artifacts"], _artifact_columns(artifacts))
    return inserted


def _runs_json(runs: Sequence[RunRow]) -> dict[str, str]:
    """The ``upsert_runs`` parameter: every run as one JSON object, in one JSON array.
    Times go as ISO 8601 text with their offset, which Postgres reads back exactly."""
    return {"runs": compact_json([{
        "run_id": r.run_id, "pipeline": r.pipeline, "entity": r.entity, "status": r.status,
        "error": r.error, "started_at": _iso(r.started_at), "ended_at": _iso(r.ended_at),
        "trace_id": r.trace_id, "span_id": r.span_id, "service_name": r.service_name,
        "version": r.version, "attributes": r.encoded.column(r.attributes),
        "ingest_warnings": adjustments_json(r),
    } for r in runs])}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _artifact_columns(refs: Sequence[ArtifactRef]) -> dict[str, list[Any]]:
    return {
        "artifact_id": [a.artifact_id for a in refs],
        "trace_id": [a.trace_id for a in refs],
        "span_id": [a.span_id for a in refs],
        "run_id": [a.run_id for a in refs],
        "attribute": [a.attribute for a in refs],
        "size_bytes": [a.size_bytes for a in refs],
        "content_type": [a.content_type for a in refs],
        "storage": [a.storage for a in refs],
        "location": [a.location for a in refs],
        "preview": [a.preview for a in refs],
        "downgraded": [a.downgraded for a in refs],
        "downgrade_reason": [a.downgrade_reason for a in refs],
    }
