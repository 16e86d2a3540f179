"""PostgreSQL stops and starts again under a running collector.

With the spool (the default), the stock OpenTelemetry exporter delivers every span of a
30 s outage. Without it, the collector refuses at once with a retryable status: the
export gets ``UNAVAILABLE`` with a retry hint, not ``DEADLINE_EXCEEDED`` after waiting on
the database, which is how "at once" is checked without timing anything.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.fix_collector_process import CollectorProcess, SpawnCollector
from tests.fix_pg_instance import PostgresInstance
from tests.reliability.load import (
    CHANNEL_OPTIONS,
    SpanKey,
    http_get,
    http_post,
    new_batch,
    stored_keys,
    wait_stored,
)
from xray_otel import conventions as c

pytestmark = pytest.mark.slow

OUTAGE_S = 30.0
STEP_INTERVAL_S = 0.05


def emit_steadily(provider: TracerProvider, stop: threading.Event) -> list[SpanKey]:
    """One step span every ``STEP_INTERVAL_S`` until ``stop``; returns their keys."""
    tracer = provider.get_tracer("reliability")
    keys: list[SpanKey] = []
    while not stop.is_set():
        with tracer.start_as_current_span("rank", attributes={
                c.STEP_TYPE: "rank", c.STEP_CANDIDATES_IN: 10, c.STEP_CANDIDATES_OUT: 3,
                c.RUN_ID: "outage-run"}) as step:
            context = step.get_span_context()
        keys.append((f"{context.trace_id:032x}", f"{context.span_id:016x}"))
        stop.wait(STEP_INTERVAL_S)
    return keys


def test_stock_exporter_delivers_every_span_through_a_30s_outage(
        pg_instance: PostgresInstance, spawn_collector: SpawnCollector) -> None:
    collector = spawn_collector(pg_instance.url)
    exporter = OTLPSpanExporter(endpoint=collector.grpc_target, insecure=True)  # default timeout
    provider = TracerProvider(resource=Resource.create({"service.name": "outage"}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    stop = threading.Event()
    emitted: list[SpanKey] = []
    emitter = threading.Thread(target=lambda: emitted.extend(emit_steadily(provider, stop)))
    emitter.start()
    try:
        time.sleep(3)
        pg_instance.stop("fast")
        time.sleep(OUTAGE_S)
        pg_instance.start()
        time.sleep(3)
    finally:
        stop.set()
        emitter.join()
        try:
            assert provider.force_flush(60_000), "the exporter still held spans after 60 s"
        finally:
            provider.shutdown()
    stored = wait_stored(pg_instance.url, set(emitted))
    assert len(emitted) > OUTAGE_S / STEP_INTERVAL_S / 2  # steps really flowed throughout
    missing = set(emitted) - set(stored)
    assert not missing, f"{len(missing)} of {len(emitted)} spans lost:\n{collector.log[-3000:]}"
    assert len(stored) == len(set(stored)) == len(emitted)


def assert_refused_at_once(collector: CollectorProcess, stub: TraceServiceStub,
                           batch: ExportTraceServiceRequest) -> None:
    """Both transports refuse retryably, and ``/readyz`` says so, before a 3 s deadline."""
    with pytest.raises(grpc.RpcError) as caught:
        stub.Export(batch, timeout=3)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
    assert "google.rpc.retryinfo-bin" in dict(caught.value.trailing_metadata() or ())
    status, headers = http_post(collector.http_url + "/v1/traces", batch.SerializeToString(),
                                timeout_s=3)
    assert status == 503, status
    assert headers["Retry-After"].isdigit()
    assert http_get(collector.http_url + "/readyz", timeout_s=3)[0] == 503


def test_without_spool_refuses_at_once_then_recovers(
        pg_instance: PostgresInstance, spawn_collector: SpawnCollector) -> None:
    collector = spawn_collector(pg_instance.url, "--spool-max-bytes", "0")
    with grpc.insecure_channel(collector.grpc_target, CHANNEL_OPTIONS) as channel:
        stub = TraceServiceStub(channel)
        batch, keys = new_batch(5)
        stub.Export(batch, timeout=30)  # the pool is connected before the outage
        pg_instance.stop("fast")
        later, later_keys = new_batch(5)
        for _ in range(3):  # not only the request that finds the pooled connection broken
            assert_refused_at_once(collector, stub, later)
        pg_instance.start()
        for _ in range(100):  # bounded: storage comes back within a few tries
            try:
                stub.Export(later, timeout=3)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                time.sleep(0.2)
        else:
            pytest.fail(f"no export succeeded after the database came back:\n{collector.log}")
    assert http_get(collector.http_url + "/readyz", timeout_s=3)[0] == 200
    assert sorted(stored_keys(pg_instance.url)) == sorted(keys + later_keys)
