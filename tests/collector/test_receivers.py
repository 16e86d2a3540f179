"""End to end over loopback: real OTLP exporters → gRPC/HTTP receivers → Postgres."""

from __future__ import annotations

import gzip
import json
import re
import urllib.error
import urllib.request
from typing import Any

import grpc
import psycopg
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.collector.test_otlp import SPAN_HEX, TRACE_HEX, otlp_json
from tests.fix_collector import RunningCollector
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import new_trace_id, request, span
from xray_otel import conventions as c

SEED_QUERY = """
SELECT run_id, step_name, candidates_in, candidates_out, drop_ratio
FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9
ORDER BY drop_ratio DESC;
"""


def exporters(collector: RunningCollector) -> dict[str, SpanExporter]:
    return {
        "grpc": GrpcExporter(endpoint=collector.grpc_target, insecure=True),
        "http": HttpExporter(endpoint=collector.http_url + "/v1/traces"),
    }


def run_pipeline(exporter: SpanExporter, entity: str) -> None:
    """A small pipeline traced by the plain OpenTelemetry SDK: one request per span."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("competitor_search", attributes={
            c.RUN_PIPELINE: "competitor_search", c.RUN_ENTITY: entity, c.RUN_ID: entity}):
        with tracer.start_as_current_span("keywords", attributes={
                c.STEP_TYPE: "llm", c.STEP_SEQ: 1, c.RUN_ID: entity}):
            pass
        with tracer.start_as_current_span("filter_candidates", attributes={
                c.STEP_TYPE: "filter", c.STEP_SEQ: 2, c.RUN_ID: entity,
                c.STEP_CANDIDATES_IN: 5000, c.STEP_CANDIDATES_OUT: 40,
                c.STEP_WHY: "Dropped 99%",
                c.STEP_WHY_JSON: json.dumps({"top_reject_reasons": {"category_mismatch": 4720}}),
                c.metric_attribute("threshold"): 0.7}):
            pass
        with tracer.start_as_current_span("pick", attributes={
                c.STEP_TYPE: "llm", c.STEP_SEQ: 3, c.RUN_ID: entity}) as pick:
            pick.set_status(Status(StatusCode.ERROR, "no candidate left"))
    provider.shutdown()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_sdk_exporter_spans_land_in_tables(protocol: str, collector: RunningCollector,
                                           db: psycopg.Connection) -> None:
    run_pipeline(exporters(collector)[protocol], entity=f"B0-{protocol}")
    steps = db.execute(
        "SELECT seq, step_name, step_type, pipeline, candidates_in, candidates_out, drop_ratio,"
        " why, why_json, metrics, status, error, parent_span_id IS NOT NULL, duration_ms >= 0"
        " FROM xray_steps WHERE run_id = %s ORDER BY seq", (f"B0-{protocol}",)).fetchall()
    assert [s[:4] for s in steps] == [
        (1, "keywords", "llm", "competitor_search"),
        (2, "filter_candidates", "filter", "competitor_search"),
        (3, "pick", "llm", "competitor_search"),
    ]
    assert steps[1][4:10] == (5000, 40, pytest.approx(0.992), "Dropped 99%",
                              {"top_reject_reasons": {"category_mismatch": 4720}},
                              {"threshold": 0.7})
    assert steps[2][10:12] == ("error", "no candidate left")
    assert all(s[12] and s[13] for s in steps)
    run = db.execute("SELECT pipeline, entity, status, service_name, started_at <= ended_at"
                     " FROM xray_runs WHERE run_id = %s", (f"B0-{protocol}",)).fetchone()
    assert run is not None
    assert run[:3] == ("competitor_search", f"B0-{protocol}", "ok") and run[4]
    assert run[3].startswith("unknown_service")


def test_steps_first_in_separate_requests_then_run_span(collector: RunningCollector,
                                                        db: psycopg.Connection) -> None:
    trace_id = new_trace_id()
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    step = span("filter", {c.STEP_TYPE: "filter", c.STEP_CANDIDATES_IN: 10,
                           c.STEP_CANDIDATES_OUT: 1}, trace_id=trace_id)
    stub.Export(request(step))
    row = db.execute("SELECT run_id, pipeline, status FROM xray_runs").fetchone()
    assert row == (trace_id.hex(), None, "pending")
    later = span("rank", {c.STEP_TYPE: "rank"}, trace_id=trace_id)
    stub.Export(request(later))
    run = span("run", {c.RUN_PIPELINE: "p", c.RUN_ENTITY: "e"}, trace_id=trace_id,
               start_ns=step.start_time_unix_nano - 10**6, duration_ns=10**9)
    stub.Export(request(run))
    assert db.execute("SELECT run_id, pipeline, entity, status, span_id FROM xray_runs"
                      ).fetchall() == [(trace_id.hex(), "p", "e", "ok", run.span_id.hex())]
    assert db.execute("SELECT array_agg(pipeline) FROM xray_steps").fetchone() == (["p", "p"],)
    # A step arriving after its run span takes the run's pipeline and leaves the run as is.
    stub.Export(request(span("late", {c.STEP_TYPE: "other"}, trace_id=trace_id)))
    assert db.execute("SELECT pipeline FROM xray_steps WHERE step_name = 'late'"
                      ).fetchone() == ("p",)
    assert db.execute("SELECT status, span_id FROM xray_runs").fetchone() == (
        "ok", run.span_id.hex())


def snapshot(db: psycopg.Connection) -> list[Any]:
    runs = db.execute("SELECT run_id, pipeline, entity, status, error, started_at, ended_at,"
                      " span_id, attributes, updated_at FROM xray_runs ORDER BY run_id").fetchall()
    steps = db.execute("SELECT * FROM xray_steps ORDER BY trace_id, span_id").fetchall()
    return [runs, steps]


def test_replayed_request_changes_nothing(collector: RunningCollector,
                                         db: psycopg.Connection) -> None:
    trace_id = new_trace_id()
    batch = request(
        span("a", {c.STEP_TYPE: "filter", c.STEP_CANDIDATES_IN: 5}, trace_id=trace_id),
        span("b", {c.STEP_TYPE: "rank"}, trace_id=trace_id),
        span("run", {c.RUN_PIPELINE: "p"}, trace_id=trace_id),
    )
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    stub.Export(batch)
    before = snapshot(db)
    stub.Export(batch)
    post(collector, batch.SerializeToString())
    assert snapshot(db) == before
    assert db.execute("SELECT count(*) FROM xray_steps").fetchone() == (2,)


def post(collector: RunningCollector, body: bytes, content_type: str = "application/x-protobuf",
         encoding: str | None = None) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(collector.http_url + "/v1/traces", data=body, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_otlp_json_with_gzip_over_http(collector: RunningCollector,
                                       db: psycopg.Connection) -> None:
    body = gzip.compress(json.dumps(otlp_json()).encode())
    status, headers, payload = post(collector, body, "application/json", "gzip")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert json.loads(payload) == {}
    row = db.execute("SELECT trace_id, span_id, candidates_in, candidates_out, status, error,"
                     " metrics FROM xray_steps").fetchone()
    assert row == (TRACE_HEX, SPAN_HEX, 5000, 50, "error", "bad", {"score": 0.5})


def test_bad_values_are_stored_and_reported_in_partial_success(
        collector: RunningCollector, db: psycopg.Connection) -> None:
    bad = span("filter", {c.STEP_TYPE: "filter", c.STEP_CANDIDATES_IN: "many",
                          c.STEP_CANDIDATES_OUT: -1, c.STEP_WHY_JSON: "[]",
                          c.STEP_WHY: "nul\x00here", c.metric_attribute("m"): float("inf")})
    unusable = span("x", {c.STEP_TYPE: "llm"}, trace_id=bytes(16))
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    response = stub.Export(request(bad, unusable))
    assert response.partial_success.rejected_spans == 1
    message = response.partial_success.error_message
    assert "1 span(s) rejected" in message and "trace_id" in message
    assert f"span {bad.span_id.hex()}" in message and c.STEP_CANDIDATES_IN in message
    row = db.execute("SELECT candidates_in, candidates_out, why_json, why, metrics,"
                     " jsonb_array_length(ingest_warnings), attributes FROM xray_steps"
                     ).fetchone()
    assert row is not None
    assert row[:5] == (None, None, None, "nul\ufffdhere", {})
    assert row[5] == 5
    assert row[6][c.STEP_CANDIDATES_IN] == "many" and row[6][c.STEP_WHY_JSON] == "[]"


def test_undecodable_payloads_are_invalid_argument(collector: RunningCollector,
                                                   db: psycopg.Connection) -> None:
    channel = grpc.insecure_channel(collector.grpc_target)
    raw_export = channel.unary_unary(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export")
    with pytest.raises(grpc.RpcError) as caught:
        raw_export(b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not an OTLP" in caught.value.details()

    status, _, payload = post(collector, b"\x0a\xff\xff\xff\xff\x0f garbage")
    assert status == 400
    assert "not an OTLP" in status_pb2.Status.FromString(payload).message
    status, _, payload = post(collector, b"{oops", "application/json")
    assert status == 400 and "not valid JSON" in json.loads(payload)["message"]
    status, _, _ = post(collector, b"hello", "text/plain")
    assert status == 415
    status, _, payload = post(collector, b"not gzip", encoding="gzip")
    assert status == 400 and b"gzip" in payload
    assert db.execute("SELECT count(*) FROM xray_steps").fetchone() == (0,)


def test_non_xray_spans_are_accepted_and_ignored(collector: RunningCollector,
                                                 db: psycopg.Connection) -> None:
    response = ExportTraceServiceResponse.FromString(post(
        collector, request(span("GET /", {"http.method": "GET"})).SerializeToString())[2])
    assert not response.HasField("partial_success")
    assert db.execute("SELECT count(*) FROM xray_runs").fetchone() == (0,)


def test_seed_query_runs_as_written(collector: RunningCollector, db: psycopg.Connection,
                                    databases: DatabaseFactory) -> None:
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    spans = [
        span(name, {c.STEP_TYPE: step_type, c.RUN_ID: f"run-{name}",
                    c.STEP_CANDIDATES_IN: n_in, c.STEP_CANDIDATES_OUT: n_out})
        for name, step_type, n_in, n_out in [
            ("f95", "filter", 100, 5), ("f99", "filter", 5000, 50), ("f50", "filter", 10, 5),
            ("r99", "rank", 100, 1), ("f_empty", "filter", 0, 0), ("f_none", "filter", 10, None),
        ]
    ]
    stub.Export(request(*spans))
    rows = db.execute(SEED_QUERY).fetchall()
    assert rows == [("run-f99", "f99", 5000, 50, pytest.approx(0.99)),
                    ("run-f95", "f95", 100, 5, pytest.approx(0.95))]
    if databases.citus:
        return  # the plan below is PostgreSQL's; on Citus each shard plans its part
    with db.transaction():
        db.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in db.execute("EXPLAIN " + SEED_QUERY).fetchall())
    # xray_steps is partitioned: the plan names each partition's copy of the index.
    used = set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using (\w+)", plan))
    parents = {db.execute("SELECT COALESCE((SELECT inhparent::regclass::text FROM pg_inherits"
                          " WHERE inhrelid = %s::regclass), %s)", (name, name)).fetchone()
               for name in used}
    assert ("xray_steps_type_drop_ratio_idx",) in parents
