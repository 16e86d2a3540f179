"""Write a batch's steps into ``xray_steps``, inside the caller's transaction.

Two routes. A step whose key (run_id, trace_id, span_id) is not stored yet, appears once
in the batch and names its pipeline goes by binary ``COPY`` straight into ``xray_steps``:
nearly every step. The others (replays, the end of a step stored as ``running``, a key
twice in one batch, a step waiting for its run's pipeline) go through the staging table
and ``INSERT … SELECT`` of ``ingest.sql``, which merges them with what is stored. The
staging route costs PostgreSQL about twice what a plain ``COPY`` does per row
(docs/performance.md), so it is kept for the steps that need it.

The split is safe against concurrent batches because ``upsert_runs`` has locked the row
of every run of the batch before the stored keys are read, and those locks last until
commit: no other batch can store a step of these runs in between (see ``ingest.sql``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.adapt import PyFormat

from collector_service.store.queries import load
from collector_service.store.rows import RunRow, StepRow, adjustments_json

_QUERIES = load("ingest.sql")

StepKey = tuple[str, str, str]


async def write_steps(cur: psycopg.AsyncCursor[Any], runs: Sequence[RunRow],
                      steps: Sequence[StepRow], *, copy_new: bool = True,
                      citus: bool = False) -> int:
    """Store ``steps`` (after ``upsert_runs`` of ``runs`` in the same transaction) and give
    the stored steps of completed runs their pipeline; return the step rows inserted or
    completed. ``copy_new=False`` sends every step through the staging table. ``citus``:
    the database is a Citus coordinator, which refuses the lateral probes PostgreSQL
    needs (ingest.sql, ``stored_step_keys_citus``)."""
    completed = {run.run_id for run in runs if run.from_run_span}
    stored = await _stored_keys(cur, {step.run_id for step in steps} | completed, citus)
    new, staged = split_new_steps(steps, stored) if copy_new else ([], list(steps))
    inserted = 0
    if new:
        cur.adapters.register_dumper(bytes, _BYTES_DUMPER)
        async with cur.copy(_QUERIES["copy_new_steps"]) as copy:
            copy.set_types(_NEW_TYPES)
            for step in new:
                await copy.write_row(_new_step_values(step))
        inserted += len(new)
    if staged:
        inserted += await _write_staged(cur, staged, stored)
    waiting = sorted({key[0] for key, no_pipeline in stored.items() if no_pipeline} & completed)
    if waiting:
        await cur.execute(_QUERIES["backfill_step_pipelines"], {"run_ids": waiting})
    return inserted


def split_new_steps(steps: Sequence[StepRow], stored: dict[StepKey, bool]
                    ) -> tuple[list[StepRow], list[StepRow]]:
    """The steps that can be copied as new rows, and those that need the staging route."""
    keys = [(step.run_id, step.trace_id, step.span_id) for step in steps]
    repeated = {key for key, n in Counter(keys).items() if n > 1} if len(set(keys)) < len(keys) \
        else set()
    new: list[StepRow] = []
    staged: list[StepRow] = []
    for step, key in zip(steps, keys, strict=True):
        if step.pipeline is None or key in stored or key in repeated:
            staged.append(step)
        else:
            new.append(step)
    return new, staged


async def _stored_keys(cur: psycopg.AsyncCursor[Any], run_ids: set[str],
                       citus: bool) -> dict[StepKey, bool]:
    """The stored steps of ``run_ids``: key → whether the row still lacks a pipeline."""
    if not run_ids:
        return {}
    await cur.execute(_QUERIES["stored_step_keys_citus" if citus else "stored_step_keys"],
                      {"run_ids": sorted(run_ids)})
    return {(run_id, trace_id, span_id): no_pipeline
            for run_id, trace_id, span_id, no_pipeline in await cur.fetchall()}


async def _write_staged(cur: psycopg.AsyncCursor[Any], steps: Sequence[StepRow],
                        stored: dict[StepKey, bool]) -> int:
    await cur.execute(_QUERIES["stage_steps_table"])
    async with cur.copy(_QUERIES["copy_steps"]) as copy:
        copy.set_types(_STAGED_TYPES)
        for step in steps:
            await copy.write_row(_staged_step_values(step))
    # After upsert_runs: its row locks make the two statements below safe
    # against concurrent batches of the same runs (see ingest.sql).
    await cur.execute(_QUERIES["complete_running_steps"])
    inserted = max(cur.rowcount, 0)
    already = sorted({(s.run_id, s.trace_id, s.span_id) for s in steps} & stored.keys())
    await cur.execute(_QUERIES["insert_steps"], {
        "stored_run_ids": [key[0] for key in already],
        "stored_trace_ids": [key[1] for key in already],
        "stored_span_ids": [key[2] for key in already],
    })
    return inserted + max(cur.rowcount, 0)


_STAGED_TYPES = (
    "text", "int4", "text", "text", "text", "int8", "int8", "text", "text", "text", "text",
    "text", "text", "text", "timestamptz", "timestamptz", "text", "text", "text", "text",
    "text",
)
"""The column types of ``xray_steps_incoming``, in order: a binary ``COPY`` must name
them (each value is sent in its column's own binary form)."""

_JSONB_COLUMNS = {8, 9, 10, 11, 19, 20}
"""Positions of why_json, input, output, metrics, attributes and ingest_warnings."""
_NEW_TYPES = tuple("bytea" if column in _JSONB_COLUMNS else kind
                   for column, kind in enumerate(_STAGED_TYPES))
"""The same columns of ``xray_steps`` itself, where the JSON ones are ``jsonb``. The
binary form of ``jsonb`` is a version byte (1) and the JSON text: the row carries those
bytes, which psycopg's ``bytea`` dumper sends as they are."""


def _staged_step_values(s: StepRow) -> tuple[Any, ...]:
    """One row for ``COPY xray_steps_incoming``, in that table's column order. JSON
    values come from the row's cache: the artifact plan already encoded most of them."""
    text = s.encoded.column
    return (
        s.run_id, s.seq, s.step_name, s.step_type, s.pipeline, s.candidates_in,
        s.candidates_out, s.why, text(s.why_json), text(s.input), text(s.output),
        text(s.metrics) if s.metrics else "{}", s.status, s.error, s.started_at, s.ended_at,
        s.trace_id, s.span_id, s.parent_span_id, text(s.attributes) if s.attributes else "{}",
        adjustments_json(s),
    )


def _new_step_values(s: StepRow) -> tuple[Any, ...]:
    """One row for ``copy_new_steps``: :func:`_staged_step_values` with each JSON value
    in ``jsonb``'s binary form."""
    text = s.encoded.column
    adjustments = adjustments_json(s)
    return (
        s.run_id, s.seq, s.step_name, s.step_type, s.pipeline, s.candidates_in,
        s.candidates_out, s.why, _jsonb(text(s.why_json)), _jsonb(text(s.input)),
        _jsonb(text(s.output)), _jsonb(text(s.metrics)) if s.metrics else _EMPTY_OBJECT,
        s.status, s.error, s.started_at, s.ended_at, s.trace_id, s.span_id, s.parent_span_id,
        _jsonb(text(s.attributes)) if s.attributes else _EMPTY_OBJECT,
        None if adjustments is None else _jsonb(adjustments),
    )


_BYTES_DUMPER = psycopg.adapters.get_dumper(bytes, PyFormat.BINARY)
"""psycopg's dumper of ``bytes``, compiled where its C extension is installed. Asked for
a ``bytea`` column by name, psycopg would pick the dumper of the DB-API ``Binary``
wrapper, written in Python: registered on the cursor, this one dumps the ``jsonb``
columns in a quarter of the time."""

_EMPTY_OBJECT = b"\x01{}"


def _jsonb(text: str | None) -> bytes | None:
    return None if text is None else b"\x01" + text.encode()
