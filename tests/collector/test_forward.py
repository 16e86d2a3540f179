"""Forwarding: stored requests reach an upstream; a slow or dead one never touches storage."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from aiohttp import web
from google.protobuf import duration_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from collector_service.config import CollectorConfig
from collector_service.forward.forwarder import Forwarder, Retryable, Upstream
from collector_service.server import CollectorThread
from collector_service.store.migrate import apply_migrations
from tests.collector.test_receivers import post
from tests.fix_collector import RunningCollector
from tests.fix_db import DatabaseFactory
from tests.otlp_builders import request, span
from xray_otel import conventions as c

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def wait_for(condition: Callable[[], bool], what: str, deadline_s: float = 30) -> None:
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"never: {what}")


def step_names(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT step_name FROM xray_steps ORDER BY 1")]


@dataclass
class Sink:
    """A real gRPC server that records what it is sent; ``hold`` makes it hang."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    hold: threading.Event | None = None
    refusals: int = 0
    """How many calls to answer UNAVAILABLE with RetryInfo before accepting."""
    retry_delay_s: float = 0.01


@pytest.fixture
def sink() -> Iterator[Sink]:
    state = Sink()

    def export(payload: bytes, context: grpc.ServicerContext) -> bytes:
        state.metadata.append(dict(context.invocation_metadata()))  # type: ignore[arg-type]
        if state.refusals > 0:
            state.refusals -= 1
            _abort_with_retry_info(context, state.retry_delay_s)
        if state.hold is not None:
            state.hold.wait(30)
        state.received.append(payload)
        return b""

    server = grpc.server(ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(export)}),))
    state.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    server.stop(None)


@pytest.fixture
def forwarding(migrated_url: str, db: psycopg.Connection,
               tmp_path: Path) -> Iterator[Callable[..., RunningCollector]]:
    """Start a collector forwarding as asked; stopped at the end of the test."""
    started: list[CollectorThread] = []

    def start(**settings: Any) -> RunningCollector:
        config = CollectorConfig(database_url=migrated_url, data_dir=tmp_path / f"x{len(started)}",
                                 grpc_port=0, http_port=0, **settings)
        thread = CollectorThread(config)
        started.append(thread)
        return RunningCollector(thread.start(), config.data_dir)

    yield start
    for thread in started:
        thread.stop()


@pytest.fixture
def upstream(databases: DatabaseFactory, tmp_path: Path) -> Iterator[tuple[RunningCollector, str]]:
    """A second X-Ray collector, on a database of its own, as the upstream."""
    url = databases.create("xray_upstream")
    apply_migrations(url)
    config = CollectorConfig(database_url=url, data_dir=tmp_path / "upstream", grpc_port=0,
                             http_port=0)
    with CollectorThread(config) as endpoints:
        yield RunningCollector(endpoints, config.data_dir), url


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_stored_requests_reach_the_upstream(
        forwarding: Callable[..., RunningCollector], upstream: tuple[RunningCollector, str],
        migrated_url: str, protocol: str) -> None:
    target, upstream_url = upstream
    port = target.endpoints.grpc_port if protocol == "grpc" else target.endpoints.http_port
    collector = forwarding(forward_endpoint=f"http://127.0.0.1:{port}",
                           forward_protocol=protocol)
    TraceServiceStub(grpc.insecure_channel(collector.grpc_target)).Export(
        request(span("by-grpc", {c.STEP_TYPE: "llm"})))
    # an OTLP/JSON request is forwarded as the same request in protobuf
    as_json = json_format.MessageToJson(request(span("by-json", {c.STEP_TYPE: "rank"})))
    status, _, _ = post(collector, _hex_ids(as_json).encode(), content_type="application/json")
    assert status == 200
    assert step_names(migrated_url) == ["by-grpc", "by-json"]
    wait_for(lambda: step_names(upstream_url) == ["by-grpc", "by-json"], "forwarded rows")


def test_headers_reach_the_upstream(forwarding: Callable[..., RunningCollector],
                                    sink: Sink) -> None:
    collector = forwarding(forward_endpoint=f"127.0.0.1:{sink.port}",
                           forward_headers=(("x-scope-orgid", "team-a"),))
    batch = request(span("s", {c.STEP_TYPE: "llm"}))
    TraceServiceStub(grpc.insecure_channel(collector.grpc_target)).Export(batch)
    wait_for(lambda: len(sink.received) == 1, "the sink received the request")
    assert ExportTraceServiceRequest.FromString(sink.received[0]) == batch
    assert sink.metadata[0]["x-scope-orgid"] == "team-a"


@pytest.mark.parametrize("upstream_kind", ["dead", "black-holed"])
def test_a_dead_or_hanging_upstream_never_touches_storage(
        forwarding: Callable[..., RunningCollector], sink: Sink, closed_port: int,
        migrated_url: str, upstream_kind: str) -> None:
    if upstream_kind == "black-holed":
        sink.hold = threading.Event()
    port = closed_port if upstream_kind == "dead" else sink.port
    collector = forwarding(forward_endpoint=f"127.0.0.1:{port}", forward_queue_bytes=1024)
    stub = TraceServiceStub(grpc.insecure_channel(collector.grpc_target))
    for n in range(20):
        stub.Export(request(span(f"s{n:02}", {c.STEP_TYPE: "llm", "pad": "x" * 200})),
                    timeout=10)
    assert step_names(migrated_url) == [f"s{n:02}" for n in range(20)]
    dropped = metric(collector, "xray_forward_requests_total", {"outcome": "dropped_queue_full"})
    assert dropped and dropped > 0


def metric(collector: RunningCollector, name: str, labels: dict[str, str]) -> float | None:
    """One sample of the collector's /metrics."""
    with urllib.request.urlopen(f"{collector.http_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


def test_endpoints_are_read_as_exporters_read_them() -> None:
    assert Upstream.parse("tempo:4317", "grpc") == Upstream("grpc", "tempo:4317", False)
    assert Upstream.parse("https://otel.example:4317", "grpc").tls
    assert Upstream.parse("http://jaeger:4318", "http/protobuf").target == (
        "http://jaeger:4318/v1/traces")
    assert Upstream.parse("https://c:4318/custom", "http/protobuf").target == (
        "https://c:4318/custom")


def _hex_ids(document: str) -> str:
    """Protobuf's JSON has base64 ids; OTLP/JSON wants hex."""
    data = json.loads(document)
    for resource in data["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for item in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in item:
                        item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(data)


def _abort_with_retry_info(context: grpc.ServicerContext, delay_s: float) -> None:
    """Refuse as X-Ray does when it is busy: UNAVAILABLE, RetryInfo in the details."""
    delay = duration_pb2.Duration()
    delay.FromTimedelta(timedelta(seconds=delay_s))
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message="busy")
    status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(grpc.StatusCode.UNAVAILABLE, "busy")


def outcomes(registry: CollectorRegistry) -> dict[str, float]:
    return {outcome: registry.get_sample_value("xray_forward_requests_total",
                                               {"outcome": outcome}) or 0.0
            for outcome in ("sent", "failed", "dropped_queue_full", "dropped_at_stop")}


def test_grpc_retry_info_is_read_and_retries_deliver(sink: Sink) -> None:
    sink.refusals, sink.retry_delay_s = 1, 1.5
    registry = CollectorRegistry()
    forwarder = Forwarder(f"127.0.0.1:{sink.port}", "grpc", (), 1 << 20, registry)

    async def scenario() -> float | None:
        forwarder.start()
        try:
            await forwarder._send(b"")  # the refusal, as the sender sees it
        except Retryable as exc:
            delay = exc.delay_s
        else:
            pytest.fail("a refusal was taken for a delivery")
        sink.refusals, sink.retry_delay_s = 2, 0.01
        forwarder.offer(request(span("s", {c.STEP_TYPE: "llm"})).SerializeToString())
        while outcomes(registry)["sent"] == 0 and outcomes(registry)["failed"] == 0:
            await asyncio.sleep(0.02)
        await forwarder.stop(5)
        return delay

    assert asyncio.run(scenario()) == 1.5
    assert outcomes(registry) == {"sent": 1, "failed": 0, "dropped_queue_full": 0,
                                  "dropped_at_stop": 0}
    assert len(sink.received) == 1 and len(sink.metadata) == 4


def test_stop_counts_what_it_could_not_send(sink: Sink) -> None:
    sink.hold = threading.Event()
    registry = CollectorRegistry()
    forwarder = Forwarder(f"http://127.0.0.1:{sink.port}", "grpc", (), 1 << 20, registry)

    async def scenario() -> None:
        forwarder.start()
        for _ in range(5):
            forwarder.offer(b"")
        while len(sink.metadata) < 2:  # both senders are waiting on the upstream
            await asyncio.sleep(0.02)
        await forwarder.stop(0.1)

    asyncio.run(scenario())
    assert outcomes(registry) == {"sent": 0, "failed": 0, "dropped_queue_full": 0,
                                  "dropped_at_stop": 5}
    assert registry.get_sample_value("xray_forward_queue_bytes") == 0


def test_http_upstream_gets_headers_and_retry_after_is_honoured() -> None:
    seen: list[tuple[str, str | None, bytes]] = []

    async def traces(http_request: web.Request) -> web.Response:
        seen.append((http_request.path, http_request.headers.get("X-Scope-OrgID"),
                     await http_request.read()))
        if len(seen) == 1:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(body=b"", content_type="application/x-protobuf")

    registry = CollectorRegistry()
    payload = request(span("s", {c.STEP_TYPE: "llm"})).SerializeToString()

    async def scenario() -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        forwarder = Forwarder(f"http://127.0.0.1:{port}", "http/protobuf",
                              (("X-Scope-OrgID", "team-b"),), 1 << 20, registry)
        forwarder.start()
        forwarder.offer(payload)
        while outcomes(registry)["sent"] == 0 and outcomes(registry)["failed"] == 0:
            await asyncio.sleep(0.02)
        await forwarder.stop(5)
        await runner.cleanup()

    asyncio.run(scenario())
    assert outcomes(registry)["sent"] == 1
    assert seen == [("/v1/traces", "team-b", payload)] * 2
