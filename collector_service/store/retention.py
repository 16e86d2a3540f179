"""Retention by whole partitions: drop ``xray_steps``' old partitions, delete old runs.

Dropping a partition takes the same time whatever it holds, so old steps go in seconds;
runs (not partitioned: see ``retention.sql``), the rows of ``xray_steps_default`` and
artifact references are deleted row by row, and they are far fewer. Everything happens in
one transaction, with the table locks taken last and bounded by a lock timeout, so ingest
waits at most that long.

The cutoff asked for (a UTC midnight) moves back to the start of the partition that holds
it, if one does: a partition goes whole or not at all, and a run deleted as older than the
cutoff must not leave steps in a partition that stays. With weekly partitions, retention
keeps up to six days more than asked.

A run is kept or deleted whole: a run that started before the cutoff and ended after it
keeps its older steps, which move to ``xray_steps_default`` when their day is dropped and
go with the run once it is old itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from collector_service.store.citus import is_citus
from collector_service.store.partitions import StepPartition, step_partitions
from collector_service.store.queries import load

_QUERIES = load("retention.sql")
LOCK_TIMEOUT_MS = 10_000
"""Longest wait for the table locks that dropping partitions takes."""


class RetentionLocked(Exception):
    """``xray_steps`` stayed locked by other queries longer than the lock timeout."""


@dataclass(frozen=True)
class RetentionResult:
    """What retention removed (or, for a dry run, would remove)."""

    cutoff: datetime
    requested_cutoff: datetime
    """The UTC midnight at or before now - ``older_than``; ``cutoff`` is at or before it."""
    partitions: tuple[str, ...]
    partition_steps_estimate: int
    runs: int
    default_steps: int
    steps_kept: int
    unreferenced_artifacts: tuple[str, ...] = field(default=())


def apply_retention(conn: psycopg.Connection[Any], older_than: timedelta, dry_run: bool,
                    lock_timeout_ms: int = LOCK_TIMEOUT_MS) -> RetentionResult:
    """Remove everything older than the UTC midnight at or before now - ``older_than``, or
    than the start of the partition holding that midnight; a dry run does the same and
    rolls back. Returns what went and the artifact ids that no reference names any more
    (their payloads are the caller's to delete, after this returns: a payload is deleted
    only once its last reference is committed gone)."""
    try:
        with conn.transaction(force_rollback=dry_run):
            return _apply(conn, older_than, dry_run, lock_timeout_ms)
    except psycopg.errors.LockNotAvailable as exc:
        raise RetentionLocked(str(exc)) from exc


def _apply(conn: psycopg.Connection[Any], older_than: timedelta, dry_run: bool,
           lock_timeout_ms: int) -> RetentionResult:
    row = conn.execute(_QUERIES["cutoff"], {"older_than": older_than}).fetchone()
    assert row is not None
    requested: datetime = row[0]
    partitions = step_partitions(conn)
    cutoff = partition_cutoff(partitions, requested)
    params = {"cutoff": cutoff}
    old = [p.name for p in partitions if p.end <= cutoff]
    conn.execute(_QUERIES["keep_table"])
    runs = conn.execute(_QUERIES["delete_old_runs"], params).rowcount
    default_steps = conn.execute(_QUERIES["delete_default_steps"]).rowcount
    freed = {r[0] for r in conn.execute(_QUERIES["delete_old_artifacts"]).fetchall()}
    unreferenced = unreferenced_artifacts(conn, freed)
    estimate = conn.execute(_QUERIES["estimated_rows_citus" if is_citus(conn) else
                                     "estimated_rows"], {"partitions": old}).fetchone()
    kept = 0
    if old:
        if not dry_run:  # locked before the copy: no write can change a kept step after it
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{int(lock_timeout_ms)}ms")))
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                sql.SQL(", ").join(map(sql.Identifier, old))))
        kept = _copy_kept_steps(conn, old, params)
        if not dry_run:
            _drop(conn, old)
    return RetentionResult(cutoff, requested, tuple(old), int(estimate[0]) if estimate else 0,
                           max(runs, 0), max(default_steps, 0), kept,
                           tuple(unreferenced))


def partition_cutoff(partitions: list[StepPartition], requested: datetime) -> datetime:
    """``requested``, or the start of the partition that holds it past its first instant."""
    for partition in partitions:
        if partition.start < requested < partition.end:
            return partition.start
    return requested


def unreferenced_artifacts(conn: psycopg.Connection[Any], artifact_ids: set[str]) -> list[str]:
    """Those of ``artifact_ids`` that no reference names any more, sorted."""
    if not artifact_ids:
        return []
    referenced = {r[0] for r in conn.execute(
        _QUERIES["still_referenced"], {"artifact_ids": sorted(artifact_ids)}).fetchall()}
    return sorted(artifact_ids - referenced)


def _copy_kept_steps(conn: psycopg.Connection[Any], partitions: list[str],
                     params: dict[str, Any]) -> int:
    """Copy the steps of runs kept whole out of the day ``partitions`` about to be
    dropped, into ``xray_retention_kept``; return how many. The partitions are named, not
    found by ``tableoid`` (a Citus shard has its own), and read by index probes of the
    kept runs' ids, never scanned whole."""
    runs = [r[0] for r in conn.execute(_QUERIES["straddling_runs"], params).fetchall()]
    if not runs:
        return 0
    reads = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT * FROM {} WHERE run_id = ANY(%(run_ids)s::text[])").format(
            sql.Identifier(name)) for name in partitions)
    return conn.execute(sql.SQL("INSERT INTO xray_retention_kept {}").format(reads),
                        {"run_ids": runs}).rowcount


def _drop(conn: psycopg.Connection[Any], partitions: list[str]) -> None:
    """Detach and drop the partitions, then write the kept steps back."""
    for name in partitions:
        conn.execute(sql.SQL("ALTER TABLE xray_steps DETACH PARTITION {}").format(
            sql.Identifier(name)))
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
    columns = sql.SQL(", ").join(
        sql.Identifier(r[0]) for r in conn.execute(_QUERIES["step_columns"]).fetchall())
    conn.execute(sql.SQL("INSERT INTO xray_steps ({}) SELECT {} FROM xray_retention_kept")
                 .format(columns, columns))
