"""X-Ray events → rows: the pure mapping, and the write path merging starts and ends."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from google.protobuf import json_format

from collector_service.errors import DecodeError
from collector_service.ingest.decode import decode_events
from collector_service.ingest.events import map_events, run_span_id, step_span_id, trace_id_for
from collector_service.ingest.mapping import map_request
from collector_service.ingest.proto.xray.v1 import events_pb2 as pb
from collector_service.store.postgres import PostgresStore
from collector_service.store.rows import MappedBatch
from tests.otlp_builders import request, span
from xray_otel import conventions as c

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def batch(*events: dict[str, Any], service: str = "js-app") -> pb.EventBatch:
    """An EventBatch from protobuf-JSON event objects (``{"stepStart": {...}}``)."""
    return json_format.ParseDict({"serviceName": service, "events": list(events)},
                                 pb.EventBatch())


def start(step_id: str = "1", **fields: Any) -> dict[str, Any]:
    return {"stepStart": {"runId": "run-1", "stepId": step_id, "seq": 1, "name": "cat_filter",
                          "type": "filter", "time": "2026-01-01T00:00:00Z",
                          "pipeline": "competitor_search", "input": {"asin": "B0"}, **fields}}


def end(step_id: str = "1", **fields: Any) -> dict[str, Any]:
    return {"stepEnd": {"runId": "run-1", "stepId": step_id, "seq": 1, "name": "cat_filter",
                        "type": "filter", "startTime": "2026-01-01T00:00:00Z",
                        "time": "2026-01-01T00:00:01.500Z", "candidatesIn": 5000,
                        "candidatesOut": 40, "why": "dropped 99%",
                        "whyJson": {"top_reject_reasons": {"category_mismatch": 4720}},
                        "output": [1, 2.5], "metrics": {"threshold": 0.7, "pages": 3},
                        "pipeline": "competitor_search", **fields}}


def test_ids_are_derived_from_the_run_and_step_ids() -> None:
    digest = hashlib.sha256(b"xray.step:run-1\n1").hexdigest()
    assert step_span_id("run-1", "1") == digest[:16]
    assert trace_id_for("run-1") == hashlib.sha256(b"xray.run:run-1").hexdigest()[:32]
    assert run_span_id("run-1") != step_span_id("run-1", "1") != step_span_id("run-2", "1")


def test_a_start_and_its_end_in_one_batch_make_one_complete_row() -> None:
    mapped = map_events(batch(end(), start()), NOW)  # order does not matter
    (step,) = mapped.steps
    assert (step.run_id, step.seq, step.step_name, step.step_type) == (
        "run-1", 1, "cat_filter", "filter")
    assert (step.candidates_in, step.candidates_out, step.why) == (5000, 40, "dropped 99%")
    assert step.why_json == {"top_reject_reasons": {"category_mismatch": 4720}}
    assert isinstance(step.why_json["top_reject_reasons"]["category_mismatch"], int)
    assert step.input == {"asin": "B0"} and step.output == [1, 2.5]
    assert step.metrics == {"threshold": 0.7, "pages": 3}
    assert (step.status, step.error, step.service_name) == ("ok", None, "js-app")
    assert step.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert step.ended_at == datetime(2026, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert step.trace_id == trace_id_for("run-1")
    assert step.span_id == step_span_id("run-1", "1")
    assert step.parent_span_id == run_span_id("run-1")
    assert step.adjustments == () and step.attributes == {}
    (run,) = mapped.runs
    assert (run.run_id, run.status, run.pipeline, run.span_id) == (
        "run-1", "pending", "competitor_search", None)


def test_a_start_alone_is_running_and_an_end_alone_is_complete() -> None:
    (running,) = map_events(batch(start()), NOW).steps
    assert (running.status, running.ended_at, running.candidates_in) == ("running", None, None)
    assert running.input == {"asin": "B0"}
    (ended,) = map_events(batch(end()), NOW).steps
    assert (ended.status, ended.step_type, ended.seq, ended.candidates_out) == (
        "ok", "filter", 1, 40)


def test_errors_runs_parents_and_artifacts() -> None:
    mapped = map_events(batch(
        {"runStart": {"runId": "run-1", "pipeline": "p", "entity": "B0",
                      "time": "2026-01-01T00:00:00Z"}},
        {"runEnd": {"runId": "run-1", "time": "2026-01-01T00:00:09Z",
                    "status": "STATUS_ERROR", "error": "TimeoutError: slow"}},
        end("2", parentStepId="1", error="ValueError: empty",
            artifacts={"raw": {"text": "<html>"}, "blob": {"data": "AAE=",
                                                          "contentType": "image/png"}}),
    ), NOW)
    (run,) = mapped.runs
    assert (run.status, run.error, run.entity, run.span_id) == (
        "error", "TimeoutError: slow", "B0", run_span_id("run-1"))
    assert run.started_at == datetime(2026, 1, 1, tzinfo=UTC)
    (step,) = mapped.steps
    assert (step.status, step.error) == ("error", "ValueError: empty")
    assert step.parent_span_id == step_span_id("run-1", "1")
    artifacts = {a.attribute: (a.data, a.content_type) for a in step.artifacts}
    assert artifacts == {"xray.artifact.raw": (b"<html>", "text/plain; charset=utf-8"),
                         "xray.artifact.blob": (b"\x00\x01", "image/png")}


def test_events_without_identity_are_rejected_and_bad_values_adjusted() -> None:
    mapped = map_events(batch({}, {"stepEnd": {"runId": "r"}}, {"runStart": {"pipeline": "p"}},
                              end(candidatesIn=-3, type="sorting",
                                  attributes={"team": "search"})), NOW)
    reasons = [r.reason for r in mapped.rejected]
    assert reasons == ["event 0: no run_start, run_end, step_start or step_end set",
                       "event 1 (step_end): step_id is required",
                       "event 2 (run_start): run_id is required"]
    (step,) = mapped.steps
    assert step.candidates_in is None and step.step_type == "other"
    assert step.attributes == {c.STEP_CANDIDATES_IN: -3, c.STEP_TYPE: "sorting",
                               "team": "search"}
    assert {a.attribute for a in step.adjustments} == {c.STEP_CANDIDATES_IN, c.STEP_TYPE}


def test_a_non_finite_metric_from_binary_protobuf_is_refused_with_a_warning() -> None:
    raw = pb.EventBatch(events=[pb.Event(step_end=pb.StepEnd(
        run_id="r", step_id="s", type="rank", metrics={"score": float("nan"), "k": 5}))])
    (step,) = map_events(decode_events(raw.SerializeToString(), as_json=False), NOW).steps
    assert step.metrics == {"k": 5}
    assert step.attributes == {"xray.step.metric.score": "nan"}
    problems = {a.attribute for a in step.adjustments}
    assert {"xray.step.metric.score", "time", "start_time"} <= problems


@pytest.mark.parametrize("body", [b"[]", b"{", b'{"events": 3}', b"\xff"])
def test_undecodable_json_names_the_message(body: bytes) -> None:
    with pytest.raises(DecodeError, match=r"EventBatch|JSON object"):
        decode_events(body, as_json=True)


# --- the write path ----------------------------------------------------------------------


async def _write_batches(url: str, batches: Sequence[MappedBatch]) -> list[int]:
    store = PostgresStore(url, max_size=2)
    await store.open()
    try:
        return [(await store.write(b.runs, b.steps)).steps_inserted for b in batches]
    finally:
        await store.close()


def _step_row(db: psycopg.Connection) -> tuple[Any, ...]:
    rows = db.execute(
        "SELECT seq, step_name, step_type, pipeline, candidates_in, candidates_out, why,"
        " why_json, input, output, metrics, status, error, started_at, ended_at,"
        " parent_span_id, attributes FROM xray_steps").fetchall()
    assert len(rows) == 1
    return tuple(rows[0])


def _mapped(*events: dict[str, Any]) -> MappedBatch:
    return map_events(batch(*events), NOW)


def test_an_end_in_a_later_batch_completes_the_running_row(
        db: psycopg.Connection, migrated_url: str) -> None:
    asyncio.run(_write_batches(migrated_url, [_mapped(start(attributes={"a": 1}))]))
    running = _step_row(db)
    assert (running[11], running[14], running[4]) == ("running", None, None)
    bare_end = {"stepEnd": {"runId": "run-1", "stepId": "1", "time": "2026-01-01T00:00:02Z",
                            "candidatesIn": 10, "candidatesOut": 1, "attributes": {"b": 2}}}
    counts = asyncio.run(_write_batches(migrated_url, [_mapped(bare_end)]))
    assert counts == [1]
    done = _step_row(db)
    # The start's own values stay (name, type, seq, input); the end brings the outcome.
    assert done[:6] == (1, "cat_filter", "filter", "competitor_search", 10, 1)
    assert done[8] == {"asin": "B0"} and done[11] == "ok"
    assert done[13] == datetime(2026, 1, 1, tzinfo=UTC)
    assert done[14] == datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)
    assert done[16] == {"a": 1, "b": 2}
    assert db.execute("SELECT ingest_warnings FROM xray_steps").fetchone() == (None,)
    # Replaying the start, the end, or both changes nothing.
    again = asyncio.run(_write_batches(
        migrated_url, [_mapped(start()), _mapped(bare_end), _mapped(start(), bare_end)]))
    assert again == [0, 0, 0]
    assert _step_row(db) == done


def test_a_start_after_its_end_changes_nothing(db: psycopg.Connection,
                                                migrated_url: str) -> None:
    asyncio.run(_write_batches(migrated_url, [_mapped(end())]))
    complete = _step_row(db)
    assert complete[11] == "ok" and complete[4] == 5000
    assert asyncio.run(_write_batches(migrated_url, [_mapped(start())])) == [0]
    assert _step_row(db) == complete


def test_runs_go_running_then_complete(db: psycopg.Connection, migrated_url: str) -> None:
    run_start = {"runStart": {"runId": "run-1", "pipeline": "p", "entity": "B0",
                              "time": "2026-01-01T00:00:00Z"}}
    run_end = {"runEnd": {"runId": "run-1", "time": "2026-01-01T00:00:09Z"}}
    query = "SELECT status, pipeline, entity, started_at, ended_at, span_id FROM xray_runs"
    asyncio.run(_write_batches(migrated_url, [_mapped(end()), _mapped(run_start)]))
    status, pipeline, entity, *_ = db.execute(query).fetchone() or ()
    assert (status, pipeline, entity) == ("running", "competitor_search", "B0")
    asyncio.run(_write_batches(migrated_url, [_mapped(run_end), _mapped(run_start, run_end)]))
    assert db.execute(query).fetchone() == (
        "ok", "competitor_search", "B0", datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC), run_span_id("run-1"))


def test_a_span_twice_in_one_otlp_batch_is_stored_once(
        db: psycopg.Connection, migrated_url: str) -> None:
    one = span("rank", {c.STEP_TYPE: "rank", c.STEP_SEQ: 1})
    mapped = map_request(request(one, one), NOW)
    assert asyncio.run(_write_batches(migrated_url, [mapped, mapped])) == [1, 0]
    assert db.execute("SELECT count(*) FROM xray_steps").fetchone() == (1,)
