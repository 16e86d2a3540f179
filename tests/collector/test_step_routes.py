"""Steps reach ``xray_steps`` by two routes (``store.steps``): new steps by COPY straight
into the table, the rest through the staging table. Whatever the mix of new steps,
replays, starts and ends in any order and repeated keys, both routes must store exactly
the same rows and count the same inserts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format
from hypothesis import example, given
from hypothesis import strategies as st
from psycopg.conninfo import make_conninfo

from collector_service.ingest.events import map_events
from collector_service.ingest.proto.xray.v1 import events_pb2 as pb
from collector_service.store.citus import QUERIES as CITUS_QUERIES
from collector_service.store.postgres import _write_rows
from collector_service.store.rows import MappedBatch, StepRow
from collector_service.store.steps import split_new_steps
from tests.otlp_strategies import ci_settings

RECEIVED = datetime(2026, 3, 1, 12, tzinfo=UTC)
STEP_COLUMNS = (
    "run_id, seq, step_name, step_type, pipeline, candidates_in, candidates_out, drop_ratio,"
    " why, why_json, input, output, metrics, status, error, started_at, ended_at,"
    " duration_ms, trace_id, span_id, parent_span_id, attributes, ingest_warnings")


def _step(run_id: str, span_id: str, pipeline: str | None = "p") -> StepRow:
    return StepRow(run_id=run_id, seq=1, step_name="s", step_type="rank", pipeline=pipeline,
                   entity=None, candidates_in=None, candidates_out=None, why=None,
                   why_json=None, input=None, output=None, metrics={}, status="ok",
                   error=None, started_at=RECEIVED, ended_at=RECEIVED, trace_id="t" * 32,
                   span_id=span_id, parent_span_id=None, service_name=None, attributes={})


def test_only_new_unrepeated_steps_with_a_pipeline_are_copied() -> None:
    fresh, stored, twice, no_pipeline = (_step("r", "1"), _step("r", "2"), _step("r", "3"),
                                         _step("r", "4", pipeline=None))
    other_run = _step("q", "2")  # same span id as a stored step, another run: new
    steps = [fresh, stored, twice, no_pipeline, replace(twice, why="again"), other_run]
    new, staged = split_new_steps(steps, {("r", "t" * 32, "2"): False})
    assert new == [fresh, other_run]
    assert staged == [stored, twice, no_pipeline, steps[4]]


def test_without_stored_keys_or_repeats_every_step_is_copied() -> None:
    steps = [_step("r", str(i)) for i in range(5)]
    assert split_new_steps(steps, {}) == (steps, [])


# --- both routes against the real database -----------------------------------------


_times = st.sampled_from([None, "2026-03-01T10:00:00Z", "2026-03-01T10:00:05Z",
                          "2026-03-02T00:00:01Z"])


@st.composite
def _event(draw: st.DrawFn) -> dict[str, Any]:
    """A step start or end of one of a few steps in two runs, maybe naming a pipeline."""
    run_id, step_id = draw(st.sampled_from(["r1", "r2"])), draw(st.sampled_from("abc"))
    body: dict[str, Any] = {"runId": run_id, "stepId": step_id}
    if time := draw(_times):
        body["time"] = time
    if draw(st.booleans()):
        body["pipeline"] = draw(st.sampled_from(["p", "q"]))
    if draw(st.booleans()):
        body["type"] = "filter"
        body["name"] = f"{step_id}-{draw(st.integers(0, 2))}"
        return {"stepStart": body}
    body["candidatesIn"] = draw(st.integers(0, 100))
    body["candidatesOut"] = draw(st.integers(0, 100))
    return {"stepEnd": body}


@st.composite
def _run_event(draw: st.DrawFn) -> dict[str, Any]:
    """A run end, which completes its run and may bring a pipeline for waiting steps."""
    body: dict[str, Any] = {"runId": draw(st.sampled_from(["r1", "r2"]))}
    if draw(st.booleans()):
        body["pipeline"] = "run-pipeline"
    return {"runEnd": body}


_batches = st.lists(st.lists(st.one_of(_event(), _event(), _run_event()), min_size=1,
                             max_size=5), min_size=1, max_size=4)


def _mapped(events: Sequence[dict[str, Any]]) -> MappedBatch:
    return map_events(json_format.ParseDict({"serviceName": "svc", "events": list(events)},
                                            pb.EventBatch()), RECEIVED)


async def _write_batches(url: str, batches: Sequence[MappedBatch], copy_new: bool) -> list[int]:
    counts = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(CITUS_QUERIES["citus_installed"])
        citus = bool((await cur.fetchone() or (False,))[0])
        for batch in batches:
            async with conn.transaction():
                counts.append(await _write_rows(conn, batch.runs, batch.steps, [],
                                                copy_new=copy_new, citus=citus))
    return counts


def _stored(db: psycopg.Connection) -> list[tuple[Any, ...]]:
    return db.execute(f"SELECT {STEP_COLUMNS} FROM xray_steps"
                      " ORDER BY run_id, span_id").fetchall()


@pytest.fixture(scope="module")
def route_url(databases: Any) -> str:
    from collector_service.store.migrate import apply_migrations

    url: str = databases.create()
    apply_migrations(url)
    return url


def _with_first_step_twice(batch: MappedBatch) -> MappedBatch:
    if not batch.steps:
        return batch
    first = batch.steps[0]
    later = replace(first, started_at=first.started_at + timedelta(seconds=1),
                    ended_at=None if first.ended_at is None
                    else first.ended_at + timedelta(seconds=1))
    return replace(batch, steps=(*batch.steps, later))


@ci_settings(max_examples=60)
@given(events=_batches, twice=st.booleans())
@example(events=[[{"stepStart": {"runId": "r1", "stepId": "a", "pipeline": "p"}}],
                 [{"stepEnd": {"runId": "r1", "stepId": "a", "pipeline": "p"}},
                  {"stepEnd": {"runId": "r1", "stepId": "b", "pipeline": "p"}}]], twice=False)
@example(events=[[{"stepEnd": {"runId": "r1", "stepId": "a"}},
                  {"stepEnd": {"runId": "r1", "stepId": "a", "pipeline": "p"}}],
                 [{"runEnd": {"runId": "r1", "pipeline": "run-pipeline"}}]], twice=False)
@example(events=[[{"stepEnd": {"runId": "r1", "stepId": "a", "pipeline": "p"}}]], twice=True)
def test_both_routes_store_the_same_rows(route_url: str, events: list[list[dict[str, Any]]],
                                         twice: bool) -> None:
    batches = [_mapped(batch) for batch in events]
    if twice:  # a span sent twice in one request, the copy received a second later
        batches = [_with_first_step_twice(batch) for batch in batches]
    results = []
    with psycopg.connect(route_url, autocommit=True) as db:
        for copy_new in (False, True):
            db.execute("TRUNCATE xray_steps, xray_runs")
            counts = asyncio.run(_write_batches(route_url, batches, copy_new))
            results.append((counts, _stored(db)))
    (staged_counts, staged_rows), (copied_counts, copied_rows) = results
    assert copied_rows == staged_rows
    assert copied_counts == staged_counts


def test_the_copy_route_is_taken_and_a_replay_takes_the_staging_route(
        route_url: str) -> None:
    """A guard on the test above: its batches do go both ways."""
    batch = _mapped([{"stepStart": {"runId": "r1", "stepId": "a", "pipeline": "p",
                                    "time": "2026-03-01T10:00:00Z"}}])
    with psycopg.connect(route_url, autocommit=True) as db:
        db.execute("TRUNCATE xray_steps, xray_runs")
        role = f"xray_route_probe_{uuid.uuid4().hex[:8]}"
        db.execute("REVOKE TEMPORARY ON DATABASE " + db.info.dbname + " FROM PUBLIC")
        try:
            db.execute(f"CREATE ROLE {role} LOGIN")
            db.execute(f"GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO {role}")
            role_url = make_conninfo(route_url, user=role)
            # Without TEMPORARY only the staging route can fail: the first write copies.
            assert asyncio.run(_write_batches(role_url, [batch], copy_new=True)) == [1]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                asyncio.run(_write_batches(role_url, [batch], copy_new=True))
        finally:
            db.execute(f"DROP OWNED BY {role}")
            db.execute(f"DROP ROLE {role}")
            db.execute("GRANT TEMPORARY ON DATABASE " + db.info.dbname + " TO PUBLIC")
