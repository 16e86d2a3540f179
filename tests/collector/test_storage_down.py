"""Storage failures answer with retryable statuses, and standard exporters retry through them."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from psycopg import sql

from collector_service.config import CollectorConfig
from collector_service.server import CollectorThread, Endpoints
from collector_service.store.migrate import apply_migrations
from tests.collector.test_receivers import post
from tests.fix_collector import RunningCollector
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import request, span
from xray_otel import conventions as c


class Switch:
    """Cuts and restores access to one database, as an outage would."""

    def __init__(self, admin_url: str, url: str) -> None:
        self.admin_url = admin_url
        self.name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]

    def _set(self, allow: bool) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(self.name)), sql.SQL("true" if allow else "false")))
            if not allow:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE datname = %s", (self.name,))

    def cut(self) -> None:
        self._set(False)

    def restore(self) -> None:
        self._set(True)


@pytest.fixture
def outage(databases: DatabaseFactory, pg_admin_url: str,
           tmp_path: Path) -> Iterator[tuple[Endpoints, Switch, str]]:
    url = databases.create("xray_outage")
    apply_migrations(url)
    # The pool would wait db_timeout for a connection; the breaker must answer long before.
    config = CollectorConfig(database_url=url, data_dir=tmp_path, grpc_port=0, http_port=0,
                             db_timeout=30.0, spool_max_bytes=0)
    switch = Switch(pg_admin_url, url)
    with CollectorThread(config) as endpoints:
        yield endpoints, switch, url
    switch.restore()


def export_retrying(stub: TraceServiceStub, batch: ExportTraceServiceRequest,
                    attempts: int = 40) -> None:
    """Export as a standard exporter does: retry UNAVAILABLE after a pause."""
    for _ in range(attempts):
        try:
            stub.Export(batch, timeout=30)
            return
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(0.1)  # the breaker closes within a probe interval of the restore
    pytest.fail("the collector never recovered from the outage")


def test_storage_down_is_unavailable_then_recovers(
        outage: tuple[Endpoints, Switch, str]) -> None:
    endpoints, switch, url = outage
    batch = request(span("s", {c.STEP_TYPE: "llm"}))
    stub = TraceServiceStub(grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}"))
    switch.cut()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Export(batch, timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    trailers = dict(caught.value.trailing_metadata())
    assert "google.rpc.retryinfo-bin" in trailers
    status, headers, _ = post(RunningCollector(endpoints, Path()), batch.SerializeToString())
    assert status == 503 and headers["Retry-After"].isdigit()
    switch.restore()
    export_retrying(stub, batch)
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM xray_steps").fetchone() == (1,)


def test_outage_is_answered_at_once_and_health_follows(
        outage: tuple[Endpoints, Switch, str]) -> None:
    """Refusals come before a 3 s client deadline although the pool would wait 30 s."""
    endpoints, switch, _ = outage
    channel = grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}")
    stub, health = TraceServiceStub(channel), health_pb2_grpc.HealthStub(channel)
    batch = request(span("s", {c.STEP_TYPE: "llm"}))
    switch.cut()
    for _ in range(5):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Export(batch, timeout=3)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # not DEADLINE_EXCEEDED
    with pytest.raises(urllib.error.HTTPError) as not_ready:
        urllib.request.urlopen(f"http://127.0.0.1:{endpoints.http_port}/readyz", timeout=3)
    with not_ready.value:
        assert not_ready.value.code == 503
        assert json.loads(not_ready.value.read())["status"] == "unavailable"
    wait_for_health(health, health_pb2.HealthCheckResponse.NOT_SERVING)
    switch.restore()
    wait_for_health(health, health_pb2.HealthCheckResponse.SERVING)
    stub.Export(batch, timeout=10)


def wait_for_health(health: health_pb2_grpc.HealthStub, status: int,
                    deadline_s: float = 30) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        answer = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=3)
        if answer.status == status:
            return
        time.sleep(0.1)
    pytest.fail(f"gRPC health never became {status}")


def test_standard_exporter_retries_until_storage_returns(
        outage: tuple[Endpoints, Switch, str]) -> None:
    endpoints, switch, url = outage
    provider = TracerProvider()
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{endpoints.grpc_port}", insecure=True,
                                timeout=30)
    finished = provider.get_tracer("t").start_span("x", attributes={c.STEP_TYPE: "rank"})
    finished.end()
    switch.cut()
    threading.Timer(2.0, switch.restore).start()
    result = exporter.export([finished])  # type: ignore[list-item]
    assert result == SpanExportResult.SUCCESS
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT step_name FROM xray_steps").fetchall() == [("x",)]
    exporter.shutdown()


@pytest.fixture
def spooling(databases: DatabaseFactory, pg_admin_url: str,
             tmp_path: Path) -> Iterator[tuple[Endpoints, Switch, str]]:
    url = databases.create("xray_spool")
    apply_migrations(url)
    config = CollectorConfig(database_url=url, data_dir=tmp_path, grpc_port=0, http_port=0,
                             spool_max_bytes=64 * 1024)
    switch = Switch(pg_admin_url, url)
    with CollectorThread(config) as endpoints:
        yield endpoints, switch, url
    switch.restore()


def test_outage_requests_are_spooled_then_replayed(
        spooling: tuple[Endpoints, Switch, str]) -> None:
    """Acknowledged while the database is down, stored once it is back; past the spool's
    size, refused as retryable."""
    endpoints, switch, url = spooling
    channel = grpc.insecure_channel(f"127.0.0.1:{endpoints.grpc_port}")
    stub = TraceServiceStub(channel)
    switch.cut()
    for n in range(3):
        stub.Export(request(span(f"spooled-{n}", {c.STEP_TYPE: "llm"})), timeout=10)
    # still taking work: spooling counts as serving
    wait_for_health(health_pb2_grpc.HealthStub(channel), health_pb2.HealthCheckResponse.SERVING)
    with urllib.request.urlopen(f"http://127.0.0.1:{endpoints.http_port}/readyz",
                                timeout=3) as ready:
        assert json.loads(ready.read())["status"] == "spooling"
    too_big = request(span("big", {c.STEP_TYPE: "llm", "blob": "x" * 80_000}))
    with pytest.raises(grpc.RpcError) as caught:
        stub.Export(too_big, timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "spool" in (caught.value.details() or "")
    switch.restore()
    give_up = time.monotonic() + 30
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < give_up:
            names = conn.execute("SELECT step_name FROM xray_steps ORDER BY 1").fetchall()
            if len(names) == 3:
                break
            time.sleep(0.1)
    assert names == [("spooled-0",), ("spooled-1",), ("spooled-2",)]
